//! The server's modules keep to the rooms in `docs/architecture.md`: no two modules use each
//! other, directly or around a circle. Read from the source: every `crate::`, `super::` and
//! child-module path outside `#[cfg(test)]` code is an edge from the file that names it to the
//! file that defines that module. A module and its own parents are one room (a parent's
//! `mod.rs` routes to its children, and children use what the parent shares), so edges
//! between them do not count; any other circle fails, and so does one between the top rooms
//! (`web`, `services`, `config`, `db`, `storage`, ...).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`web::ui::cache::pages`, `""` for the crate root) -> its source.
fn modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "main")) {
                parts.pop();
            }
            let source = std::fs::read_to_string(&path).unwrap();
            found.insert(parts.join("::"), without_tests(&source));
        }
    }
    found
}

/// The source before its unit tests (they may use anything).
fn without_tests(source: &str) -> String {
    match source.find("#[cfg(test)]\nmod tests") {
        Some(cut) => source[..cut].to_string(),
        None => source.to_string(),
    }
}

/// Every path the source names, with `use` groups (`a::{b, c::d}`) spread out and comments
/// dropped.
fn named_paths(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut paths = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
        if starts_word && (bytes[i].is_alphabetic() || bytes[i] == '_') {
            let (found, end) = read_path(&bytes, i);
            paths.extend(found);
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    paths
}

/// Reads `a::b::{c, d::e}` starting at `start`; returns the paths it spells and where it ends.
fn read_path(chars: &[char], start: usize) -> (Vec<String>, usize) {
    let mut i = start;
    let mut prefix = String::new();
    loop {
        let word_start = i;
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        prefix.push_str(&chars[word_start..i].iter().collect::<String>());
        if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
            i += 2;
            prefix.push_str("::");
            if chars.get(i) == Some(&'{') {
                // A group: each member continues the prefix.
                let mut paths = Vec::new();
                i += 1;
                loop {
                    while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                        i += 1;
                    }
                    if i >= chars.len() || chars[i] == '}' {
                        return (paths, i + 1);
                    }
                    let (members, end) = read_path(chars, i);
                    paths.extend(members.into_iter().map(|m| format!("{prefix}{m}")));
                    i = end.max(i + 1);
                    // Skip `as alias` and anything else up to the next member.
                    while i < chars.len() && chars[i] != ',' && chars[i] != '}' {
                        i += 1;
                    }
                }
            }
            continue;
        }
        return (vec![prefix], i);
    }
}

/// The module a path leads to, seen from `from`: the longest known module it names.
fn target(path: &str, from: &str, modules: &BTreeMap<String, String>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<&str> = if from.is_empty() { vec![] } else { from.split("::").collect() };
    match segments.first().copied() {
        Some("crate") => {
            base.clear();
            segments.remove(0);
        }
        Some("super") => {
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop()?;
            }
        }
        Some("self") => {
            segments.remove(0);
        }
        // A child module of this one, named directly (`ui::routes` in `web/mod.rs`).
        Some(first) if modules.contains_key(&join(&base, &[first])) => {}
        _ => return None,
    }
    (0..=segments.len())
        .rev()
        .map(|n| join(&base, &segments[..n]))
        .find(|candidate| modules.contains_key(candidate) && !candidate.is_empty())
}

fn join(base: &[&str], rest: &[&str]) -> String {
    base.iter().chain(rest).copied().collect::<Vec<_>>().join("::")
}

/// `a` is `b`, or one of them contains the other.
fn same_line_of_descent(a: &str, b: &str) -> bool {
    a == b || a.is_empty() || b.is_empty() || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

fn edges(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    modules
        .iter()
        .map(|(from, source)| {
            let to: BTreeSet<String> = named_paths(source)
                .iter()
                .filter_map(|path| target(path, from, modules))
                .filter(|to| !same_line_of_descent(from, to))
                .collect();
            (from.clone(), to)
        })
        .collect()
}

/// The circles of a graph: its strongly connected parts of more than one node (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Search<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, node: &'a str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut part = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    part.push(top.to_string());
                    if top == node {
                        break;
                    }
                }
                if part.len() > 1 {
                    part.sort();
                    self.found.push(part);
                }
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !search.index.contains_key(node.as_str()) {
            search.visit(node);
        }
    }
    search.found
}

/// What ties a circle: its edges, for the failure message.
fn describe(circle: &[String], graph: &BTreeMap<String, BTreeSet<String>>) -> String {
    let mut lines = Vec::new();
    for from in circle {
        for to in graph.get(from).into_iter().flatten().filter(|to| circle.contains(to)) {
            lines.push(format!("  {from} -> {to}"));
        }
    }
    lines.join("\n")
}

#[test]
fn no_two_modules_use_each_other() {
    let modules = modules();
    assert!(modules.contains_key("web::ui::cache::pages"), "the walk found {:?}", modules.keys());
    let graph = edges(&modules);
    let found = circles(&graph);
    let report: Vec<String> = found.iter().map(|c| describe(c, &graph)).collect();
    assert!(found.is_empty(), "modules in a circle:\n{}", report.join("\n\n"));
}

#[test]
fn the_top_rooms_point_one_way() {
    let modules = modules();
    let room = |module: &str| module.split("::").next().unwrap_or_default().to_string();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in edges(&modules) {
        for to in targets {
            if !from.is_empty() && room(&from) != room(&to) {
                graph.entry(room(&from)).or_default().insert(room(&to));
            }
        }
    }
    assert!(!graph.get("db").is_some_and(|t| t.contains("web")), "{graph:?}");
    assert!(graph.get("web").is_some_and(|t| t.contains("services")), "the reading found no edges: {graph:?}");
    let found = circles(&graph);
    let report: Vec<String> = found.iter().map(|c| describe(c, &graph)).collect();
    assert!(found.is_empty(), "rooms in a circle:\n{}", report.join("\n\n"));
}

#[test]
fn the_reading_sees_a_circle_when_there_is_one() {
    let modules: BTreeMap<String, String> = [
        ("a".to_string(), "use crate::b::thing;".to_string()),
        ("b".to_string(), "use crate::{c::{self, other}};".to_string()),
        ("c".to_string(), "fn f() { super::a::g() }".to_string()),
        ("d".to_string(), "// crate::a::not_code\nfn f() { crate::a::h() }".to_string()),
    ]
    .into();
    let graph = edges(&modules);
    assert_eq!(circles(&graph), vec![vec!["a".to_string(), "b".into(), "c".into()]], "{graph:?}");
}

/// Handlers parse, call services and render: none opens a database transaction (or picks
/// one) itself, so a service call is one unit of work.
#[test]
fn the_web_layer_opens_no_transactions() {
    let opened: Vec<String> = modules()
        .into_iter()
        .filter(|(module, _)| module == "web" || module.starts_with("web::"))
        .flat_map(|(module, source)| {
            source
                .lines()
                .filter(|line| {
                    ["db.read(", "db.write(", "write_retrying(", "_blocking("].iter().any(|s| line.contains(s))
                })
                .filter(|line| !line.trim_start().starts_with("//"))
                .map(|line| format!("{module}: {}", line.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(opened.is_empty(), "the web layer reaches into the database:\n{}", opened.join("\n"));
}
