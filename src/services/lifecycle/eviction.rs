//! Making room in a cache without breaking a closure: eviction when a push would take the
//! cache over its quota (in the order of the cache's policy), and retention (paths unused for
//! longer than the cache keeps them).
//!
//! Both remove whole closures. Choosing a path means removing it with everything in the
//! cache that references it; since a closure that references a path ranks no earlier than the
//! path's, the candidates are the paths nothing references (roots), each with the paths only
//! it needs (its dependencies that no path outside it references): removing a root never
//! leaves a path that nothing references unless it was pushed alone. A candidate's rank is
//! computed over everything it would remove (lru: its latest use; lfu: its most downloads,
//! then its latest use; oldest: its latest push), so a recently used path never goes because
//! something it depends on is old. Candidates go in that order until enough is freed; a root
//! that goes may leave a shared dependency needed only by another root, which then joins that
//! root's candidate (and can only move it later in the order).
//!
//! Pinned closures, paths pushed within `EVICTION_MIN_AGE` (a push in progress needs its paths)
//! and the paths a push references are never removed, nor is anything they reference. The
//! choice is made on a snapshot of the cache's graph, read outside any write; each chosen
//! closure is then removed in a write transaction that checks every path again (a path that
//! something committed since references stays, and so does what it references). NARs no
//! path uses any more are left for garbage collection, after its grace period.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::NaiveDateTime;

use crate::db::lifecycle::{self, CacheGraph, NewReclaim};
use crate::db::models::{Cache, QuotaPolicy};
use crate::db::{Db, DbResult, browse, now};

/// Paths removed per write transaction (a closure larger than that is removed in one).
const PATHS_PER_TRANSACTION: usize = 500;
/// How many times an eviction chooses again when paths it chose could not go (something
/// committed since references them): the next choice sees that.
const CHOICES: usize = 3;

/// Paths pushed at or after this are too young to evict (`min_age`: EVICTION_MIN_AGE).
pub fn pushed_before(min_age: chrono::Duration) -> NaiveDateTime {
    now() - min_age
}

/// What a run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub paths: i64,
    pub bytes: i64,
}

/// Serialises evictions within this process (two pushes at the quota at once would both
/// evict); replicas may overlap, which at worst frees a little more than needed.
static EVICTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Removes whole closures in the cache's policy order until `needed` bytes are freed or
/// nothing more may go. Paths pushed after `pushed_before` stay, and so do the paths named
/// in `needed_by_push` (base names: the references of the path being pushed).
pub async fn evict(
    db: &Db,
    cache: &Cache,
    needed: i64,
    pushed_before: NaiveDateTime,
    needed_by_push: &[String],
) -> DbResult<Removed> {
    let _one_at_a_time = EVICTING.lock().await;
    let mut removed = Removed::default();
    for _ in 0..CHOICES {
        if removed.bytes >= needed {
            break;
        }
        let goal = Goal::Free(needed - removed.bytes);
        let closures = choose(db, cache.id, cache.policy(), goal, pushed_before, needed_by_push.to_vec()).await?;
        let chosen: i64 = closures.iter().map(|c| c.ids.len() as i64).sum();
        let round = remove(db, cache.id, closures).await?;
        removed.paths += round.paths;
        removed.bytes += round.bytes;
        if round.paths == chosen {
            break;
        }
    }
    record(db, cache, "eviction", removed).await;
    Ok(removed)
}

/// Evicts what takes the cache over its quota, when its policy evicts; paths pushed within
/// `min_age` stay.
pub async fn fit_quota(db: &Db, cache: &Cache, min_age: chrono::Duration) -> DbResult<Removed> {
    let Some(quota) = cache.quota_bytes.filter(|_| cache.policy().evicts()) else { return Ok(Removed::default()) };
    let used = used_bytes(db, cache.id).await?;
    if used <= quota {
        return Ok(Removed::default());
    }
    evict(db, cache, used - quota, pushed_before(min_age), &[]).await
}

/// Removes the closures nothing in which was used (downloaded, or pushed when never
/// downloaded) since `unused_since`: a path something used more recently needs stays.
pub async fn apply_retention(
    db: &Db,
    cache: &Cache,
    unused_since: NaiveDateTime,
    pushed_before: NaiveDateTime,
) -> DbResult<Removed> {
    let goal = Goal::UnusedBefore(micros(unused_since));
    let closures = choose(db, cache.id, QuotaPolicy::Lru, goal, pushed_before, Vec::new()).await?;
    let removed = remove(db, cache.id, closures).await?;
    record(db, cache, "retention", removed).await;
    Ok(removed)
}

/// Reads the cache's graph and what it must keep, and chooses what to remove.
async fn choose(
    db: &Db,
    cache_id: i64,
    order: QuotaPolicy,
    goal: Goal,
    pushed_before: NaiveDateTime,
    needed_by_push: Vec<String>,
) -> DbResult<Vec<Chosen>> {
    let (graph, kept) = db
        .read(move |c| {
            let graph = lifecycle::cache_graph(c, cache_id)?;
            let mut kept = lifecycle::pinned_closure(c, cache_id, now())?;
            kept.extend(lifecycle::path_ids(c, cache_id, &needed_by_push)?);
            Ok((graph, kept))
        })
        .await?;
    // The search is CPU work on up to every path of the cache: off the async runtime.
    tokio::task::spawn_blocking(move || {
        let protected: Vec<bool> =
            graph.paths.iter().map(|p| p.created_at >= pushed_before || kept.contains(&p.id)).collect();
        plan(&graph, &protected, order, goal)
    })
    .await
    .map_err(|e| crate::db::DbError::Task(e.to_string()))
}

/// Removes the chosen closures, in order, several per write transaction; each path is checked
/// again there (see [`lifecycle::remove_closure`]), pins read anew in each transaction.
async fn remove(db: &Db, cache_id: i64, closures: Vec<Chosen>) -> DbResult<Removed> {
    let mut removed = Removed::default();
    let mut closures = closures.into_iter().peekable();
    while closures.peek().is_some() {
        let mut batch = Vec::new();
        let mut size = 0;
        while let Some(next) = closures.next_if(|c| batch.is_empty() || size + c.ids.len() <= PATHS_PER_TRANSACTION) {
            size += next.ids.len();
            batch.push(next.ids);
        }
        let batch = std::sync::Arc::new(batch);
        // Chosen to end a deadlock with a concurrent commit: the transaction runs again.
        let round = db
            .write_retrying(
                |_| false,
                move |c| {
                    let keep = lifecycle::pinned_closure(c, cache_id, now())?;
                    let mut round = Removed::default();
                    for ids in batch.iter() {
                        let (paths, bytes) = lifecycle::remove_closure(c, cache_id, ids, &keep, now())?;
                        round.paths += paths;
                        round.bytes += bytes;
                    }
                    Ok(round)
                },
            )
            .await?;
        removed.paths += round.paths;
        removed.bytes += round.bytes;
    }
    Ok(removed)
}

async fn record(db: &Db, cache: &Cache, kind: &'static str, removed: Removed) {
    if removed.paths == 0 {
        return;
    }
    let (cache_id, name) = (cache.id, &cache.name);
    tracing::info!("{kind} removed {} paths ({} bytes) from cache {name}", removed.paths, removed.bytes);
    crate::services::metrics::reclaimed(name, kind, removed.paths as u64, removed.bytes as u64);
    let reclaim = move |c: &mut crate::db::AnyConnection| {
        let entry =
            NewReclaim { cache_id: Some(cache_id), kind, paths: removed.paths, bytes: removed.bytes, objects: 0 };
        lifecycle::record_reclaim(c, &entry, now())
    };
    if let Err(e) = db.write(reclaim).await {
        tracing::warn!("could not record the {kind} of cache {name}: {e}");
    }
}

/// Bytes of NARs the cache holds and NARs uploaded to it that wait for their narinfo.
pub async fn used_bytes(db: &Db, cache_id: i64) -> DbResult<i64> {
    db.read(move |c| {
        let (_, stored) = browse::cache_sizes(c, cache_id)?;
        Ok(stored + crate::db::uploads::pending_bytes(c, cache_id)?)
    })
    .await
}

/// When to stop choosing.
#[derive(Debug, Clone, Copy)]
enum Goal {
    /// Once this many bytes are chosen (eviction).
    Free(i64),
    /// At the first closure used at or after this time, in microseconds (retention).
    UnusedBefore(i64),
}

/// A closure to remove: its paths' ids, each after those among them that reference it.
#[derive(Debug)]
struct Chosen {
    ids: Vec<i64>,
}

/// No root's closure: the path is kept, or several roots (or a kept path) need it.
const SHARED: u32 = u32::MAX;

fn micros(at: NaiveDateTime) -> i64 {
    at.and_utc().timestamp_micros()
}

/// A closure's rank: lower goes first. Each part is a maximum over the closure's paths, so a
/// closure that grows can only move later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank(i64, i64);

fn path_rank(order: QuotaPolicy, path: &lifecycle::GraphPath) -> Rank {
    let last_used = micros(path.last_accessed_at.unwrap_or(path.created_at));
    match order {
        QuotaPolicy::Lru | QuotaPolicy::Refuse => Rank(last_used, 0),
        QuotaPolicy::Lfu => Rank(path.access_count, last_used),
        QuotaPolicy::Oldest => Rank(micros(path.created_at), 0),
    }
}

/// Adjacency lists in one array: the neighbours of node `i` are `items[start[i]..start[i + 1]]`.
struct Lists {
    start: Vec<u32>,
    items: Vec<u32>,
}

impl Lists {
    fn new(nodes: usize, edges: impl Iterator<Item = (u32, u32)> + Clone) -> Self {
        let mut start = vec![0u32; nodes + 1];
        for (from, _) in edges.clone() {
            start[from as usize + 1] += 1;
        }
        for i in 0..nodes {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut items = vec![0u32; start[nodes] as usize];
        for (from, to) in edges {
            items[fill[from as usize] as usize] = to;
            fill[from as usize] += 1;
        }
        Self { start, items }
    }

    fn of(&self, node: usize) -> &[u32] {
        &self.items[self.start[node] as usize..self.start[node + 1] as usize]
    }
}

/// Chooses the closures to remove, first to go first (see the module's description).
///
/// Each path belongs to the closure of the one root that needs it (its "owner"), or to none
/// (`SHARED`): kept paths, paths several roots need, and what they reference. Owners are
/// found in one pass over the graph in reference order. When a closure is chosen, the paths
/// it referenced that other closures share are looked at again: one that only one remaining
/// root needs joins that root's closure (and what only it referenced follows). A closure only
/// grows, so its rank only rises: a queue with stale entries skipped gives the order.
fn plan(graph: &CacheGraph, protected: &[bool], order: QuotaPolicy, goal: Goal) -> Vec<Chosen> {
    let n = graph.paths.len();
    let children = Lists::new(n, graph.references.iter().copied());
    let mut parents = Lists::new(n, graph.references.iter().map(|&(from, to)| (to, from)));
    // Parents not yet removed sit first in each node's list; this many of them.
    let mut live_parents: Vec<u32> = (0..n).map(|i| parents.start[i + 1] - parents.start[i]).collect();
    let mut owner = vec![SHARED; n];
    // Each closure as a list through `next`, from its root (`last`: its tail, for appending).
    let mut next = vec![SHARED; n];
    let mut last: Vec<u32> = (0..n as u32).collect();
    let mut rank: Vec<Rank> = graph.paths.iter().map(|p| path_rank(order, p)).collect();
    let mut version = vec![0u32; n];
    let mut removed = vec![false; n];

    // Owners, parents before children (Kahn's order; a path on a reference cycle, which no
    // push can make, is never reached and stays shared).
    let mut waiting = live_parents.clone();
    let mut ready: Vec<u32> = (0..n as u32).filter(|&i| waiting[i as usize] == 0).collect();
    let mut queue = BinaryHeap::new();
    while let Some(node) = ready.pop() {
        let i = node as usize;
        if !protected[i] {
            let mut owners = parents.of(i).iter().map(|&p| owner[p as usize]);
            match owners.next() {
                None => {
                    owner[i] = node;
                }
                Some(first) if first != SHARED && owners.all(|o| o == first) => {
                    owner[i] = first;
                    let root = first as usize;
                    next[last[root] as usize] = node;
                    last[root] = node;
                    rank[root] = rank[root].max(rank[i]);
                }
                Some(_) => {}
            }
        }
        for &child in children.of(i) {
            waiting[child as usize] -= 1;
            if waiting[child as usize] == 0 {
                ready.push(child);
            }
        }
    }
    for i in 0..n {
        if owner[i] == i as u32 {
            queue.push(Reverse((rank[i], graph.paths[i].id, i as u32, 0u32)));
        }
    }

    let mut chosen = Vec::new();
    let mut freed = 0;
    let mut look_again: Vec<u32> = Vec::new();
    while let Some(Reverse((closure_rank, _, root, seen))) = queue.pop() {
        let root = root as usize;
        if removed[root] || seen != version[root] {
            continue;
        }
        match goal {
            Goal::Free(bytes) if freed >= bytes => break,
            Goal::UnusedBefore(cutoff) if closure_rank.0 >= cutoff => break,
            _ => {}
        }
        let mut ids = Vec::new();
        let mut node = root as u32;
        while node != SHARED {
            let i = node as usize;
            removed[i] = true;
            ids.push(graph.paths[i].id);
            freed += graph.paths[i].file_size;
            look_again.extend(children.of(i).iter().copied().filter(|&c| owner[c as usize] == SHARED));
            node = next[i];
        }
        chosen.push(Chosen { ids });
        // Shared paths whose parents are now all in one remaining closure join it.
        while let Some(node) = look_again.pop() {
            let i = node as usize;
            if owner[i] != SHARED || protected[i] {
                continue;
            }
            let Some(joined) = sole_owner(&mut parents, &mut live_parents[i], i, &owner, &removed) else { continue };
            owner[i] = joined;
            let to = joined as usize;
            next[last[to] as usize] = node;
            last[to] = node;
            rank[to] = rank[to].max(rank[i]);
            version[to] += 1;
            queue.push(Reverse((rank[to], graph.paths[to].id, joined, version[to])));
            look_again.extend(children.of(i).iter().copied().filter(|&c| owner[c as usize] == SHARED));
        }
    }
    chosen
}

/// The one closure every remaining parent of node `i` belongs to, if there is one. Removed
/// parents are moved out of the live part of the list as they are met, and two parents that
/// disagree are moved to its front, so that asking again is quick.
fn sole_owner(parents: &mut Lists, live: &mut u32, i: usize, owner: &[u32], removed: &[bool]) -> Option<u32> {
    let list = &mut parents.items[parents.start[i] as usize..parents.start[i + 1] as usize];
    let mut first: Option<(u32, usize)> = None;
    let mut k = 0;
    while k < *live as usize {
        let parent = list[k] as usize;
        if removed[parent] {
            *live -= 1;
            list.swap(k, *live as usize);
            continue;
        }
        let o = owner[parent];
        if o == SHARED {
            list.swap(0, k);
            return None;
        }
        match first {
            None => first = Some((o, k)),
            Some((f, at)) if f != o => {
                list.swap(0, at);
                list.swap(1, k);
                return None;
            }
            Some(_) => {}
        }
        k += 1;
    }
    first.map(|(o, _)| o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifecycle::GraphPath;

    /// A time `s` seconds into a day long ago.
    fn at(s: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_600_000_000 + s, 0).unwrap().naive_utc()
    }

    fn path(id: i64, created: i64, accessed: Option<i64>, count: i64, size: i64) -> GraphPath {
        GraphPath {
            id,
            file_size: size,
            created_at: at(created),
            last_accessed_at: accessed.map(at),
            access_count: count,
        }
    }

    fn ids(chosen: &[Chosen]) -> Vec<Vec<i64>> {
        chosen.iter().map(|c| c.ids.clone()).collect()
    }

    fn plan_all(graph: &CacheGraph, protected: &[i64], order: QuotaPolicy, goal: Goal) -> Vec<Vec<i64>> {
        let protected: Vec<bool> = graph.paths.iter().map(|p| protected.contains(&p.id)).collect();
        ids(&plan(graph, &protected, order, goal))
    }

    /// Three closures root -> mid -> leaf (ids 10i+1, 10i+2, 10i+3, pushed leaf first), the
    /// leaf 300 KB, with the given downloads (time, count) of each closure.
    fn three_chains(downloads: [(Option<i64>, i64); 3]) -> CacheGraph {
        let mut graph = CacheGraph::default();
        for (i, (accessed, count)) in downloads.into_iter().enumerate() {
            let base = 10 * (i as i64 + 1);
            let pushed = 10 * i as i64;
            graph.paths.push(path(base + 1, pushed + 2, accessed, count, 3_000));
            graph.paths.push(path(base + 2, pushed + 1, accessed, count, 3_000));
            graph.paths.push(path(base + 3, pushed, accessed, count, 300_000));
            let root = 3 * i as u32;
            graph.references.extend([(root, root + 1), (root + 1, root + 2)]);
        }
        graph
    }

    #[test]
    fn each_policy_takes_one_closure_whole() {
        // lru: 1 and 3 downloaded, 2 not: 2 goes (root, mid, leaf), and only 2.
        let lru = three_chains([(Some(100), 1), (None, 0), (Some(101), 1)]);
        assert_eq!(plan_all(&lru, &[], QuotaPolicy::Lru, Goal::Free(146_000)), vec![vec![21, 22, 23]]);
        // lfu: 1 and 3 twice, 2 once but last: 2 goes.
        let lfu = three_chains([(Some(100), 2), (Some(200), 1), (Some(101), 2)]);
        assert_eq!(plan_all(&lfu, &[], QuotaPolicy::Lfu, Goal::Free(146_000)), vec![vec![21, 22, 23]]);
        // oldest: 1 was pushed first; its downloads do not matter.
        assert_eq!(plan_all(&lru, &[], QuotaPolicy::Oldest, Goal::Free(146_000)), vec![vec![11, 12, 13]]);
        // More room: the next closure in order, whole.
        assert_eq!(
            plan_all(&lru, &[], QuotaPolicy::Lru, Goal::Free(400_000)),
            vec![vec![21, 22, 23], vec![11, 12, 13]]
        );
        // Nothing needed, nothing chosen.
        assert!(plan_all(&lru, &[], QuotaPolicy::Lru, Goal::Free(0)).is_empty());
    }

    #[test]
    fn a_closure_ranks_by_its_most_recent_path() {
        // Closure 1's root is old and never downloaded, but its leaf was downloaded last (on
        // its own): closure 1 is the most recently used, so 3 goes.
        let mut graph = three_chains([(None, 0), (Some(100), 1), (Some(50), 1)]);
        graph.paths[2].last_accessed_at = Some(at(500));
        assert_eq!(plan_all(&graph, &[], QuotaPolicy::Lru, Goal::Free(1)), vec![vec![31, 32, 33]]);
    }

    #[test]
    fn kept_paths_and_what_they_reference_stay() {
        let graph = three_chains([(None, 0), (None, 0), (None, 0)]);
        // A kept root (pinned, too young): its closure is not a candidate.
        assert_eq!(plan_all(&graph, &[11], QuotaPolicy::Oldest, Goal::Free(1)), vec![vec![21, 22, 23]]);
        // A kept mid (a push in progress references it): the root may go, not the mid or what
        // it references.
        assert_eq!(plan_all(&graph, &[12], QuotaPolicy::Oldest, Goal::Free(1)), vec![vec![11]]);
        // Everything kept: nothing to choose, however much is needed.
        assert!(plan_all(&graph, &[11, 21, 31], QuotaPolicy::Lru, Goal::Free(1 << 40)).is_empty());
    }

    #[test]
    fn a_shared_dependency_goes_with_the_last_root_that_needs_it() {
        // a (1) and b (2) reference s (3, 300 KB); c (4) -> d (5) was downloaded.
        let graph = CacheGraph {
            paths: vec![
                path(1, 10, None, 0, 3_000),
                path(2, 11, None, 0, 3_000),
                path(3, 5, None, 0, 300_000),
                path(4, 12, Some(100), 1, 3_000),
                path(5, 12, Some(100), 1, 300_000),
            ],
            references: vec![(0, 2), (1, 2), (3, 4)],
        };
        // a alone is not enough: then b, which alone needs s now.
        assert_eq!(plan_all(&graph, &[], QuotaPolicy::Lru, Goal::Free(100_000)), vec![vec![1], vec![2, 3]]);
        // a downloaded after c: a's closure (a and s, once b is gone) ranks after c's.
        let mut used = graph;
        used.paths[0].last_accessed_at = Some(at(200));
        used.paths[2].last_accessed_at = Some(at(200));
        assert_eq!(plan_all(&used, &[], QuotaPolicy::Lru, Goal::Free(100_000)), vec![vec![2], vec![4, 5]]);
        // Everything: s goes last, after a.
        assert_eq!(plan_all(&used, &[], QuotaPolicy::Lru, Goal::Free(1 << 40)), vec![vec![2], vec![4, 5], vec![1, 3]]);
        // b kept: a goes alone, s stays for b.
        assert_eq!(plan_all(&used, &[2], QuotaPolicy::Lru, Goal::Free(1 << 40)), vec![vec![4, 5], vec![1]]);
    }

    #[test]
    fn retention_takes_the_closures_unused_since_the_cutoff() {
        let graph = three_chains([(Some(100), 1), (None, 0), (Some(300), 1)]);
        let unused_before = |s| Goal::UnusedBefore(micros(at(s)));
        assert_eq!(
            plan_all(&graph, &[], QuotaPolicy::Lru, unused_before(200)),
            vec![vec![21, 22, 23], vec![11, 12, 13]]
        );
        assert!(plan_all(&graph, &[], QuotaPolicy::Lru, unused_before(0)).is_empty());
    }

    /// `closures` closures root -> mid -> leaf, every mid also referencing one shared path
    /// (index 0, like a C library), and a path pushed alone, downloaded last: 3 * closures + 2
    /// paths. Closure `victim` was never downloaded; the others were, in a shuffled order.
    fn synthetic(closures: usize, victim: usize) -> CacheGraph {
        let mut graph = CacheGraph::default();
        graph.paths.push(path(1, 0, None, 0, 1_000_000));
        for k in 0..closures {
            let accessed = (k != victim).then_some(1_000 + (k as i64 * 7_919) % closures as i64);
            let id = 3 * k as i64 + 2;
            graph.paths.push(path(id, 1, accessed, 1, 3_000));
            graph.paths.push(path(id + 1, 1, accessed, 1, 3_000));
            graph.paths.push(path(id + 2, 1, accessed, 1, 300_000));
            let root = 3 * k as u32 + 1;
            graph.references.extend([(root, root + 1), (root + 1, root + 2), (root + 1, 0)]);
        }
        graph.paths.push(path(3 * closures as i64 + 2, 1, Some(1_000_000), 1, 3_000));
        graph
    }

    #[test]
    fn chooses_among_two_hundred_thousand_paths() {
        let (closures, victim) = (66_666, 12_345);
        let graph = synthetic(closures, victim);
        let protected = vec![false; graph.paths.len()];
        let started = std::time::Instant::now();
        let one = plan(&graph, &protected, QuotaPolicy::Lru, Goal::Free(100_000));
        let first = started.elapsed();
        let id = 3 * victim as i64 + 2;
        assert_eq!(ids(&one), vec![vec![id, id + 1, id + 2]], "the closure never downloaded, whole");
        // Everything: each closure goes whole, the shared path with the last one.
        let started = std::time::Instant::now();
        let all = plan(&graph, &protected, QuotaPolicy::Lru, Goal::Free(i64::MAX));
        let everything = started.elapsed();
        assert_eq!(graph.paths.len(), 200_000);
        assert_eq!(all.len(), closures + 1);
        assert!(all[..closures - 1].iter().all(|c| c.ids.len() == 3));
        assert_eq!(all[closures - 1].ids.len(), 4);
        assert_eq!(*all[closures - 1].ids.last().unwrap(), 1);
        assert_eq!(all[closures].ids, vec![3 * closures as i64 + 2]);
        eprintln!("choosing among {} paths: one closure {first:?}, all of them {everything:?}", graph.paths.len());
    }
    /// `synthetic`'s shape stored in SQLite (200,000 paths, 199,998 references): evicting for 100 KB takes the closure never downloaded, whole, and nothing
    /// else. Prints how long reading the graph, choosing and the whole eviction took.
    #[tokio::test]
    async fn evicts_one_closure_among_two_hundred_thousand_stored_paths() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite:{}/db.sqlite?mode=rwc", dir.path().display()), false).unwrap();
        let victim = 12_345;
        let paths = 200_000;
        let numbers = |from: i64, to: i64| {
            format!("WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {to})")
        };
        // Ids: 1 is shared; closure k is 3k + 2 (root), 3k + 3 (mid), 3k + 4 (leaf).
        let statements = [
            "INSERT INTO caches (id, name) VALUES (1, 'main')".to_string(),
            format!(
                "{} INSERT INTO nars (id, nar_hash, nar_size, compression, file_hash, file_size, storage_key) \
                 SELECT i, 'n' || i, 1, 'none', 'f' || i, \
                 CASE WHEN i = 1 THEN 1000000 WHEN i % 3 = 1 THEN 300000 ELSE 3000 END, 'k' || i FROM n",
                numbers(1, paths)
            ),
            format!(
                "{} INSERT INTO store_paths (id, cache_id, nar_id, hash_part, name, signatures, created_at, \
                 last_accessed_at, access_count) \
                 SELECT i, 1, i, printf('%032d', i), 'p', '', '2020-01-01 00:00:00', \
                 CASE WHEN i > 1 AND (i - 2) / 3 = {victim} THEN NULL \
                 ELSE datetime('2025-01-01', '+' || ((i - 2) / 3 * 7919 % 66666) || ' seconds') END, 1 FROM n",
                numbers(1, paths)
            ),
            format!(
                "{} INSERT INTO path_references (store_path_id, reference) \
                 SELECT i, printf('%032d', i + 1) || '-p' FROM n WHERE i % 3 IN (0, 2) \
                 UNION ALL SELECT i, printf('%032d', 1) || '-p' FROM n WHERE i % 3 = 0",
                numbers(2, paths - 1)
            ),
        ];
        db.write_blocking(move |c| {
            use diesel::RunQueryDsl;
            for statement in &statements {
                diesel::sql_query(statement).execute(c)?;
            }
            Ok(())
        })
        .unwrap();
        let cache = db.read(|c| lifecycle::current_cache(c, 1)).await.unwrap().unwrap();
        let memory = |field: &str| -> String {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            status
                .lines()
                .find(|l| l.starts_with(field))
                .map(|l| l[field.len()..].trim().to_string())
                .unwrap_or_default()
        };
        let before = memory("VmRSS:");
        // Resets VmHWM (Linux): the peak printed below is that of the eviction.
        let _ = std::fs::write("/proc/self/clear_refs", "5");

        let started = std::time::Instant::now();
        let graph = db.read(|c| lifecycle::cache_graph(c, 1)).await.unwrap();
        let read = started.elapsed();
        assert_eq!((graph.paths.len(), graph.references.len()), (200_000, 199_998));
        let started = std::time::Instant::now();
        let chosen = plan(&graph, &vec![false; graph.paths.len()], QuotaPolicy::Lru, Goal::Free(100_000));
        let chose = started.elapsed();
        let id = 3 * victim + 2;
        assert_eq!(ids(&chosen), vec![vec![id, id + 1, id + 2]]);
        drop(graph);
        let peak_choosing = memory("VmHWM:");
        let _ = std::fs::write("/proc/self/clear_refs", "5");

        let started = std::time::Instant::now();
        let removed = evict(&db, &cache, 100_000, now(), &[]).await.unwrap();
        let evicted = started.elapsed();
        let peak_evicting = memory("VmHWM:");
        assert_eq!(removed, Removed { paths: 3, bytes: 306_000 });
        let victims: Vec<String> = (id..id + 3).map(|i| format!("{i:032}-p")).collect();
        let (left, found) =
            db.read(move |c| Ok((browse::cache_sizes(c, 1)?, lifecycle::path_ids(c, 1, &victims)?))).await.unwrap();
        assert_eq!(left, (199_997, 200_000 * 3_000 + 66_666 * 297_000 + 997_000 - 306_000));
        assert!(found.is_empty(), "the victim's closure is gone");
        eprintln!(
            "200,000 paths: graph read in {read:?}, chosen in {chose:?} (resident before {before}, peak \
             {peak_choosing}); eviction in {evicted:?} (peak {peak_evicting})"
        );
    }
}
