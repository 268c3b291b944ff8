//! Retention of hosted content: mark and sweep over the hosted records in the index.
//!
//! Mark: the roots are the tags kept (`keep_tags` newest per name), manifests pushed within
//! `untagged_after` (all of them when it is not set) and anything pushed within [`GRACE_MS`] (a push in
//! progress uploads its blobs before its manifest). From the roots, a manifest's references (config, layers,
//! an index's manifests) and the manifests whose `subject` is kept are kept too. When the kept bytes are
//! over `max_size`, untagged manifests lose their protection and then the oldest tags go, one at a time.
//! Sweep: manifests and records that are not kept are removed, and so are the blobs no kept manifest needs,
//! unless pushed within the grace period or since the oldest open upload started. What is kept is pinned
//! against the store's LRU eviction.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use wharf_store::{Digest, Store, StoreError};

use super::config::Retention;
use super::manifest::refs_from_header;

/// Content pushed this recently is never swept.
pub(crate) const GRACE_MS: u64 = 60 * 60 * 1000;
/// Most records read per kind in one pass.
const MAX_RECORDS: usize = 1_000_000;

/// What one pass did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    /// When it ran (ms since the epoch, by the hosted clock).
    pub at_ms: u64,
    pub tags_removed: u64,
    pub manifests_removed: u64,
    pub blobs_removed: u64,
    pub bytes_removed: u64,
    /// Bytes of hosted content kept.
    pub kept_bytes: u64,
    /// Index keys removed (the caller removes them from the shared tier too).
    #[serde(skip)]
    pub removed_keys: Vec<String>,
}

struct Manifest {
    key: String,
    name: String,
    hex: String,
    pushed: u64,
    refs: Vec<String>,
    subject: Option<String>,
}

struct Tag {
    key: String,
    name: String,
    hex: String,
    pushed: u64,
}

struct Records {
    manifests: Vec<Manifest>,
    tags: Vec<Tag>,
    /// hex → (size, pushed)
    blobs: HashMap<String, (u64, u64)>,
    referrers: Vec<(String, String)>,
}

fn read(store: &Store, repo: &str) -> Result<Records, StoreError> {
    let manifests = store
        .list_entries(repo, "hosted/manifests/", MAX_RECORDS)?
        .into_iter()
        .filter_map(|(key, e)| {
            let rest = key.strip_prefix("hosted/manifests/")?;
            let (name, hex) = rest.rsplit_once('@')?;
            Some(Manifest {
                name: name.to_string(),
                hex: hex.to_string(),
                pushed: e.fetched_at,
                refs: e
                    .header("refs")
                    .map(refs_from_header)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| r.hex)
                    .collect(),
                subject: e.header("subject").map(str::to_string),
                key,
            })
        })
        .collect();
    let tags = store
        .list_entries(repo, "hosted/tags/", MAX_RECORDS)?
        .into_iter()
        .filter_map(|(key, e)| {
            let rest = key.strip_prefix("hosted/tags/")?;
            let (name, _) = rest.rsplit_once(':')?;
            Some(Tag {
                name: name.to_string(),
                hex: e.digest.clone()?,
                pushed: e.fetched_at,
                key,
            })
        })
        .collect();
    let blobs = store
        .list_entries(repo, "hosted/blobs/", MAX_RECORDS)?
        .into_iter()
        .filter_map(|(key, e)| {
            let hex = key.strip_prefix("hosted/blobs/")?.to_string();
            Some((hex, (e.size, e.fetched_at)))
        })
        .collect();
    let referrers = store
        .list_entries(repo, "hosted/referrers/", MAX_RECORDS)?
        .into_iter()
        .filter_map(|(key, e)| Some((key, e.digest?)))
        .collect();
    Ok(Records {
        manifests,
        tags,
        blobs,
        referrers,
    })
}

/// The manifests (indexes into `records.manifests`) and blob hexes kept from `roots`.
fn mark(records: &Records, roots: &[usize]) -> (HashSet<usize>, HashSet<String>) {
    let mut by_name_hex: HashMap<(&str, &str), usize> = HashMap::new();
    let mut by_subject: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, m) in records.manifests.iter().enumerate() {
        by_name_hex.insert((&m.name, &m.hex), i);
        if let Some(s) = &m.subject {
            by_subject.entry((&m.name, s)).or_default().push(i);
        }
    }
    let mut kept: HashSet<usize> = HashSet::new();
    let mut blobs: HashSet<String> = HashSet::new();
    let mut todo: Vec<usize> = roots.to_vec();
    while let Some(i) = todo.pop() {
        if !kept.insert(i) {
            continue;
        }
        let m = &records.manifests[i];
        blobs.insert(m.hex.clone());
        for r in &m.refs {
            blobs.insert(r.clone());
            if let Some(&child) = by_name_hex.get(&(m.name.as_str(), r.as_str())) {
                todo.push(child);
            }
        }
        if let Some(referrers) = by_subject.get(&(m.name.as_str(), m.hex.as_str())) {
            todo.extend(referrers.iter().copied());
        }
    }
    (kept, blobs)
}

fn kept_bytes(records: &Records, blobs: &HashSet<String>) -> u64 {
    blobs
        .iter()
        .filter_map(|hex| records.blobs.get(hex).map(|(size, _)| *size))
        .sum()
}

/// One retention pass at `now`; `oldest_open` is when the oldest open upload started.
pub(crate) fn sweep(
    store: &Store,
    repo: &str,
    retention: &Retention,
    now: u64,
    oldest_open: Option<u64>,
) -> Result<SweepReport, StoreError> {
    let records = read(store, repo)?;
    let mut report = SweepReport {
        at_ms: now,
        ..SweepReport::default()
    };
    let grace_from = now
        .saturating_sub(GRACE_MS)
        .min(oldest_open.unwrap_or(u64::MAX));
    // Tags: the newest `keep_tags` per name.
    let mut tags_by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, t) in records.tags.iter().enumerate() {
        tags_by_name.entry(&t.name).or_default().push(i);
    }
    let mut live_tags: Vec<usize> = Vec::new();
    let mut dropped_tags: Vec<usize> = Vec::new();
    for list in tags_by_name.values_mut() {
        list.sort_by_key(|&i| {
            std::cmp::Reverse((records.tags[i].pushed, records.tags[i].key.clone()))
        });
        let keep = retention.keep_tags.map_or(usize::MAX, |k| k as usize);
        for (n, &i) in list.iter().enumerate() {
            if n < keep {
                live_tags.push(i);
            } else {
                dropped_tags.push(i);
            }
        }
    }
    let index: HashMap<(&str, &str), usize> = records
        .manifests
        .iter()
        .enumerate()
        .map(|(i, m)| ((m.name.as_str(), m.hex.as_str()), i))
        .collect();
    let roots = |tags: &[usize], untagged: bool| -> Vec<usize> {
        let mut roots: Vec<usize> = tags
            .iter()
            .filter_map(|&t| {
                let tag = &records.tags[t];
                index.get(&(tag.name.as_str(), tag.hex.as_str())).copied()
            })
            .collect();
        for (i, m) in records.manifests.iter().enumerate() {
            let recent = m.pushed >= grace_from;
            let young = match retention.untagged_after {
                None => true,
                Some(after) => now.saturating_sub(m.pushed) < after.as_millis() as u64,
            };
            if recent || (untagged && young) {
                roots.push(i);
            }
        }
        roots
    };
    let (mut kept, mut blobs) = mark(&records, &roots(&live_tags, true));
    if let Some(max) = retention.max_size {
        if kept_bytes(&records, &blobs) > max {
            (kept, blobs) = mark(&records, &roots(&live_tags, false));
            // Oldest tags go first while still over.
            live_tags.sort_by_key(|&i| std::cmp::Reverse(records.tags[i].pushed));
            while kept_bytes(&records, &blobs) > max {
                let Some(oldest) = live_tags.pop() else { break };
                dropped_tags.push(oldest);
                (kept, blobs) = mark(&records, &roots(&live_tags, false));
            }
        }
    }
    let mut removed_keys: Vec<String> = Vec::new();
    for &i in &dropped_tags {
        removed_keys.push(records.tags[i].key.clone());
        report.tags_removed += 1;
    }
    let mut gone_manifests: HashSet<(&str, &str)> = HashSet::new();
    for (i, m) in records.manifests.iter().enumerate() {
        if !kept.contains(&i) {
            removed_keys.push(m.key.clone());
            gone_manifests.insert((&m.name, &m.hex));
            report.manifests_removed += 1;
            // Tags naming a removed manifest go with it (possible only after a tag was dropped above).
            for t in &records.tags {
                if t.name == m.name && t.hex == m.hex && !removed_keys.contains(&t.key) {
                    removed_keys.push(t.key.clone());
                    report.tags_removed += 1;
                }
            }
        }
    }
    for (key, hex) in &records.referrers {
        let name = key
            .strip_prefix("hosted/referrers/")
            .and_then(|r| r.split_once('@'))
            .map(|(n, _)| n)
            .unwrap_or("");
        if gone_manifests.contains(&(name, hex.as_str())) {
            removed_keys.push(key.clone());
        }
    }
    for key in &removed_keys {
        store.remove_entry(repo, key)?;
    }
    let mut doomed: Vec<Digest> = Vec::new();
    let mut pins: std::collections::HashSet<Digest> = std::collections::HashSet::new();
    for (hex, (size, pushed)) in &records.blobs {
        let Some(digest) = Digest::from_hex(hex) else {
            continue;
        };
        if blobs.contains(hex) || *pushed >= grace_from {
            pins.insert(digest);
            if blobs.contains(hex) {
                report.kept_bytes += size;
            }
        } else {
            doomed.push(digest);
            removed_keys.push(super::hosted_blob_key(hex));
            removed_keys.push(super::blob_key(hex));
        }
    }
    // Unpin first, so nothing still pinned is deleted, then delete.
    store.set_pins(repo, pins);
    let gone = store.remove_blobs(&doomed)?;
    report.blobs_removed = gone.blobs;
    report.bytes_removed = gone.bytes;
    report.removed_keys = removed_keys;
    if report.tags_removed + report.manifests_removed + report.blobs_removed > 0 {
        tracing::info!(
            repo,
            tags = report.tags_removed,
            manifests = report.manifests_removed,
            blobs = report.blobs_removed,
            bytes = report.bytes_removed,
            "hosted retention removed content"
        );
    }
    Ok(report)
}

/// Pins every blob recorded as hosted (at start-up, before any sweep).
pub(crate) fn pin_all(store: &Store, repo: &str) -> Result<(), StoreError> {
    let pins = store
        .list_entries(repo, "hosted/blobs/", MAX_RECORDS)?
        .into_iter()
        .filter_map(|(key, _)| Digest::from_hex(key.strip_prefix("hosted/blobs/")?))
        .collect();
    store.set_pins(repo, pins);
    Ok(())
}

/// Per namespace: bytes of the content its manifests reference, manifests, tags, last push.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NsUsage {
    pub bytes: u64,
    pub manifests: u64,
    pub tags: u64,
    pub last_push_ms: u64,
}

pub(crate) fn usage(store: &Store, repo: &str, namespaces: &[String]) -> HashMap<String, NsUsage> {
    let Ok(records) = read(store, repo) else {
        return HashMap::new();
    };
    let ns_of = |name: &str| name.split('/').next().unwrap_or(name).to_string();
    let mut out: HashMap<String, NsUsage> = namespaces
        .iter()
        .map(|n| (n.clone(), NsUsage::default()))
        .collect();
    let mut seen: HashMap<String, HashSet<&str>> = HashMap::new();
    for m in &records.manifests {
        let ns = ns_of(&m.name);
        let seen = seen.entry(ns.clone()).or_default();
        let u = out.entry(ns).or_default();
        u.manifests += 1;
        u.last_push_ms = u.last_push_ms.max(m.pushed);
        for hex in std::iter::once(&m.hex).chain(m.refs.iter()) {
            if seen.insert(hex) {
                u.bytes += records.blobs.get(hex).map_or(0, |(s, _)| *s);
            }
        }
    }
    for t in &records.tags {
        let u = out.entry(ns_of(&t.name)).or_default();
        u.tags += 1;
        u.last_push_ms = u.last_push_ms.max(t.pushed);
    }
    out
}
