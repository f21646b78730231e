//! Packaging: the Containerfile names what CI builds, compose.yaml and action.yml are valid and
//! documented, default.nix parses, and the action's login step really logs in (or fails the
//! step), and the docs cite tests that exist.

mod support;

use std::path::Path;
use std::process::Command;

use support::nix::{nix, run_ok};
use support::{Backend, Cli, Closure, Keys, Server, binary, free_port, output_text};

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

fn yaml(name: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&repo_file(name)).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

#[test]
fn the_containerfile_names_the_ci_build_command_an_unprivileged_user_and_the_data_volume() {
    let containerfile = repo_file("Containerfile");
    let build_command = "scripts/build";
    assert!(repo_file("scripts/test").lines().any(|l| l.trim() == build_command), "CI builds with {build_command}");
    let runs: Vec<&str> = containerfile.lines().filter(|l| l.starts_with("RUN ")).collect();
    assert!(runs[0].starts_with(&format!("RUN {build_command}")), "the image builds with {build_command}: {runs:?}");
    assert_eq!(containerfile.lines().filter(|l| l.starts_with("FROM ")).count(), 2, "multi-stage");
    for line in [
        "USER hibernation",
        "VOLUME [\"/data\"]",
        "ENV DB_URL=\"sqlite:/data/hibernation.db?mode=rwc\" \\",
        "    STORAGE_PATH=\"/data/storage\" \\",
        "EXPOSE 8000",
        "ENTRYPOINT [\"hibernation-server\"]",
    ] {
        assert!(containerfile.lines().any(|l| l == line), "the Containerfile has {line:?}");
    }
    assert!(repo_file(".containerignore").lines().any(|l| l == "target/"));
}

/// What git ignores (build output, fuzzing runs, node_modules, databases) never goes into
/// the image's build context.
#[test]
fn the_build_context_leaves_out_what_git_ignores() {
    let context_ignores = repo_file(".containerignore");
    for (gitignore, folder) in [(".gitignore", ""), ("fuzz/.gitignore", "fuzz/")] {
        for pattern in repo_file(gitignore).lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let path = format!("{folder}{}", pattern.trim_start_matches('/'));
            let wanted = if path.contains('*') { format!("**/{path}") } else { format!("{path}/") };
            assert!(
                context_ignores.lines().any(|l| l.trim() == wanted),
                ".containerignore lacks {wanted} ({gitignore})"
            );
        }
    }
}

#[test]
fn the_health_command_checks_the_local_server() {
    let server = Server::start(Backend::Sqlite);
    let healthy = server.command(Some(&["health"])).output().unwrap();
    assert!(healthy.status.success(), "{}", output_text(&healthy));
    let nothing = Command::new(binary("hibernation-server"))
        .arg("health")
        .env("PORT", free_port().to_string())
        .env("DB_URL", "postgres://never-opened")
        .output()
        .unwrap();
    assert!(!nothing.status.success());
    assert!(output_text(&nothing).contains("nothing answers on port"), "{}", output_text(&nothing));
}

#[test]
fn compose_runs_the_image_with_a_volume_and_has_a_postgres_s3_profile() {
    let compose = yaml("compose.yaml");
    let services = &compose["services"];
    let server = &services["hibernation"];
    assert_eq!(server["build"]["dockerfile"], "Containerfile");
    assert!(server["volumes"][0].as_str().unwrap().ends_with(":/data"));
    let full = &services["hibernation-pg-s3"];
    assert_eq!(full["profiles"][0], "pg-s3");
    assert!(full["environment"]["DB_URL"].as_str().unwrap().starts_with("postgres://"));
    assert_eq!(full["environment"]["S3_HOST"], "http://minio:9000");
    for server in [server, full] {
        let check = &server["healthcheck"]["test"];
        assert_eq!(check[1], "hibernation-server", "compose checks health itself (podman-compose drops HEALTHCHECK)");
        assert_eq!(check[2], "health");
    }
    for name in ["postgres", "minio", "minio-bucket"] {
        assert_eq!(services[name]["profiles"][0], "pg-s3", "{name} runs only in the profile");
    }
}

#[test]
fn default_nix_parses_and_defines_both_programs_and_the_nixos_module() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("default.nix");
    run_ok(nix(&["nix-instantiate", "--parse", file.to_str().unwrap()]));
    let text = repo_file("default.nix");
    for needle in
        ["pname = \"hibernation-server\"", "pname = \"hibernation\"", "options.services.hibernation", "nixosModule"]
    {
        assert!(text.contains(needle), "default.nix has {needle}");
    }
}

#[test]
fn the_action_documents_its_inputs_and_fails_on_errors() {
    let action = yaml("action.yml");
    let page = repo_file("docs/deployment.md");
    for (input, required) in [("url", true), ("token", false), ("signing-key", false)] {
        let spec = &action["inputs"][input];
        assert!(spec["description"].as_str().is_some_and(|d| d.len() > 20), "{input} is described");
        assert_eq!(spec["required"].as_bool(), Some(required), "{input}");
        assert!(page.contains(&format!("`{input}`")), "docs/deployment.md documents {input}");
    }
    assert_eq!(action["runs"]["using"], "composite");
    for step in action["runs"]["steps"].as_sequence().unwrap() {
        assert_eq!(step["shell"], "bash");
        assert!(step["run"].as_str().unwrap().starts_with("set -euo pipefail"), "every step stops at an error");
    }
}

/// Runs the action's login step as GitHub would, with our freshly built CLI on PATH.
fn run_login_step(cli: &Cli, url: &str, token: &str, key: &str, github_env: &Path) -> std::process::Output {
    let action = yaml("action.yml");
    let script = action["runs"]["steps"][1]["run"].as_str().unwrap().to_string();
    let bin_dir = binary("hibernation").parent().unwrap().to_path_buf();
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("PATH", format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()))
        .env("HIBERNATION_CONFIG", cli.dir.path().join("config.json"))
        .env("HIBERNATION_ACTION_URL", url)
        .env("HIBERNATION_ACTION_TOKEN", token)
        .env("HIBERNATION_ACTION_SIGNING_KEY", key)
        .env("GITHUB_ENV", github_env)
        .output()
        .unwrap()
}

#[test]
fn the_action_logs_in_exports_the_key_and_pushes_work_afterwards() {
    let keys = Keys::generate("action-1");
    let closure = Closure::build("action");
    let server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    let cli = Cli::new();
    let github_env = cli.dir.path().join("github-env");
    let secret = std::fs::read_to_string(&keys.secret_file).unwrap();

    let out = run_login_step(&cli, &server.url(), &token, &format!("{secret}\n"), &github_env);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("::add-mask::{token}")), "the token is masked in the log");
    let exported = std::fs::read_to_string(&github_env).unwrap();
    assert_eq!(exported, format!("HIBERNATION_SIGNING_KEY={}\n", secret.trim()));

    // A later step: the saved login and the exported key are all a push needs.
    let out = cli
        .command(&["push", "main", &closure.app])
        .env("HIBERNATION_SIGNING_KEY", exported.trim().trim_start_matches("HIBERNATION_SIGNING_KEY="))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));

    // A wrong token fails the step and exports nothing.
    let other = Cli::new();
    let other_env = other.dir.path().join("github-env");
    let out = run_login_step(&other, &server.url(), "hib_wrong", &secret, &other_env);
    assert!(!out.status.success());
    assert!(output_text(&out).contains("the server rejected the token"), "{}", output_text(&out));
    assert!(!other_env.exists(), "nothing exported after a failure");
}

/// Without a token the action logs in by trusted publishing, with the ID token GitHub's
/// token service gives the job.
#[test]
fn the_action_logs_in_by_trusted_publishing_without_a_token() {
    use support::oidc::IdentityProvider;
    let keys = Keys::generate("action-oidc");
    let server = Server::start(Backend::Sqlite);
    let actions = serde_json::json!({"request_token": "job-request-token", "claims": {"repository": "acme/app"}});
    let provider = IdentityProvider::start_with_actions(
        IdentityProvider::reserve_port(),
        &server.url(),
        serde_json::json!({}),
        actions,
    );
    server.admin(&["create-cache", "main", "--no-upstream", "--public-key", &keys.public]);
    server.admin(&["trust", "main", "--issuer", &provider.issuer(), "--claim", "repository=acme/app", "--push"]);
    let cli = Cli::new();
    let github_env = cli.dir.path().join("github-env");
    let action = yaml("action.yml");
    let script = action["runs"]["steps"][1]["run"].as_str().unwrap().to_string();
    let bin_dir = binary("hibernation").parent().unwrap().to_path_buf();
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("PATH", format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()))
        .env("HIBERNATION_CONFIG", cli.dir.path().join("config.json"))
        .env("HIBERNATION_ACTION_URL", server.url())
        .env("HIBERNATION_ACTION_TOKEN", "")
        .env("HIBERNATION_ACTION_SIGNING_KEY", "")
        .env("GITHUB_ENV", &github_env)
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", format!("{}/actions/id-token?api-version=2.0", provider.issuer()))
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "job-request-token")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("by trusted publishing: may push to main"), "{text}");
    assert!(cli.run_ok(&["whoami"]).contains("Trusted publishing"));
}

/// The settings the server reads (`src/config.rs`, and `src/main.rs` for what must be set
/// before anything else runs): the names its readers (`var`, `var_os`, `flag`, `size`,
/// `duration`, `required`, `parse_bool`, `parse_size`) are called with.
fn settings_the_code_reads() -> std::collections::BTreeSet<String> {
    // Without their unit tests, which parse made-up names.
    let code = |file: &str| repo_file(file).split("#[cfg(test)]").next().unwrap().to_string();
    let source = code("src/config.rs") + &code("src/main.rs");
    let is_name =
        |name: &str| !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    let mut names = std::collections::BTreeSet::new();
    // Names read in a loop over a list (`const REQUIRED: [&str; 4] = ["S3_HOST", ...]`).
    for line in source.lines().filter(|l| l.contains(": [&str;")) {
        names.extend(line.split('"').skip(1).step_by(2).filter(|n| is_name(n)).map(str::to_string));
    }
    for reader in ["var(", "var_os(", "flag(", "size(", "duration(", "required(", "parse_bool(", "parse_size("] {
        for after in source.split(reader).skip(1) {
            let Some(literal) = after.strip_prefix('"') else { continue };
            let name = literal.split('"').next().unwrap();
            if is_name(name) {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[test]
fn the_configuration_page_documents_every_setting_and_only_those() {
    let read = settings_the_code_reads();
    assert!(read.len() > 30 && read.contains("DB_URL") && read.contains("S3_HOST"), "the code was read: {read:?}");
    // The first cell of each row of the settings table: one or more `NAME`s.
    let page = repo_file("docs/configuration.md");
    let documented: std::collections::BTreeSet<String> = page
        .lines()
        .filter(|line| line.starts_with("| `"))
        .flat_map(|line| {
            let cell = line.split('|').nth(1).unwrap().to_string();
            cell.split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    let undocumented: Vec<&String> = read.difference(&documented).collect();
    assert!(undocumented.is_empty(), "settings docs/configuration.md does not document: {undocumented:?}");
    let unread: Vec<&String> = documented.difference(&read).collect();
    assert!(unread.is_empty(), "docs/configuration.md documents settings the code does not read: {unread:?}");
}

/// Every test RELIABILITY.md and BENCHMARKS.md name as their proof exists, in the file they
/// name (a renamed or moved test would leave the table pointing at nothing).
#[test]
fn the_tests_the_reliability_tables_cite_exist() {
    let mut cited = 0;
    for doc in ["RELIABILITY.md", "BENCHMARKS.md"] {
        let text = repo_file(doc);
        for (at, _) in text.match_indices("`tests/") {
            let reference = &text[at + 1..];
            let Some(end) = reference.find('`') else { continue };
            let Some((file, test)) = reference[..end].split_once(".rs::") else { continue };
            let source = repo_file(&format!("{file}.rs"));
            // A long name may be cut short with "...".
            let defined = match test.strip_suffix("...") {
                Some(start) => source.contains(&format!("fn {start}")),
                None => source.contains(&format!("fn {test}(")) || source.contains(&format!("{test},")),
            };
            assert!(defined, "{doc} cites {file}.rs::{test}, which does not exist");
            cited += 1;
        }
    }
    assert!(cited > 100, "only {cited} citations found: is the reading right?");
}
