//! Cache entries in the store: matching a lookup the way the hosted service does, recording a finished
//! upload, and keeping a repository within `max_size`, `max_unused` and [`MAX_ENTRIES`].
//!
//! Matching, for each scope the job may read (its own first): the exact key, then the newest entry whose
//! key starts with the primary key, then for each restore key in order the newest entry it prefixes; always
//! with an equal version, and only entries whose blob is still stored. With a shared tier, when this replica
//! has nothing, the same order is followed in the bucket: the exact key's entry object, then the markers
//! replicas write beside their entries ([`crate::layout::marker_name`]), listed by the key and each restore
//! key as a prefix, newest first.

use std::sync::Arc;

use wharf_store::{now_ms, Digest, Entry, Store, StoreError};

use crate::layout::{entry_key, marker_dir, marker_key, marker_prefix, scope_prefix, split_entry};

/// Most entries one prefix lookup considers (in key order); a restore key matching more looks at these.
pub const LIST_LIMIT: usize = 1000;
/// Most entries a repository keeps; the least recently used go first beyond it.
pub const MAX_ENTRIES: usize = 50_000;
/// Most scopes a lookup that found nothing locally asks the shared tier about (one request each, plus one
/// listing per key and restore key).
pub const MAX_SHARED_SCOPES: usize = 4;
/// Most entries of one prefix listing tried, newest first, before the next key (a listed entry may have been
/// purged since).
pub const MAX_SHARED_TRIES: usize = 3;

/// Who is asking: the namespace (repository) and the scopes the job may read and write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub namespace: String,
    /// Readable scopes, the job's own first.
    pub read: Vec<String>,
    /// The scope saves go to; `None` for a read-only job.
    pub write: Option<String>,
}

/// A found entry.
#[derive(Debug, Clone)]
pub struct Found {
    pub index_key: String,
    pub key: String,
    pub scope: String,
    pub entry: Entry,
}

/// Reads a kept metadata field of an entry.
pub fn meta<'a>(entry: &'a Entry, name: &str) -> Option<&'a str> {
    entry.header(name)
}

/// When the entry was last handed out (ms), or created.
pub fn accessed(entry: &Entry) -> u64 {
    meta(entry, "accessed")
        .and_then(|v| v.parse().ok())
        .unwrap_or(entry.fetched_at)
}

/// The entry recorded for a finished upload.
pub fn new_entry(
    namespace: &str,
    scope: &str,
    key: &str,
    version: &str,
    digest: &Digest,
    size: u64,
) -> Entry {
    let now = now_ms();
    let modified = std::time::UNIX_EPOCH + std::time::Duration::from_millis(now);
    Entry {
        digest: Some(digest.to_hex()),
        size,
        status: 200,
        content_type: Some("application/octet-stream".into()),
        etag: Some(format!(
            "\"0x{}\"",
            &digest.to_hex()[..16].to_ascii_uppercase()
        )),
        last_modified: Some(httpdate::fmt_http_date(modified)),
        fetched_at: now,
        immutable: true,
        upstream_url: String::new(),
        headers: vec![
            ("namespace".into(), namespace.into()),
            ("scope".into(), scope.into()),
            ("key".into(), key.into()),
            ("version".into(), version.into()),
            ("accessed".into(), now.to_string()),
        ],
    }
}

fn usable(store: &Store, entry: &Entry) -> bool {
    !entry.is_negative() && entry.blob_digest().is_some_and(|d| store.has_blob(&d))
}

/// The entry a lookup restores, as described in the module documentation.
pub async fn find(
    store: &Arc<Store>,
    repo: &str,
    caller: &Caller,
    key: &str,
    restore_keys: &[String],
    version: &str,
) -> Result<Option<Found>, StoreError> {
    let local = {
        let (store, repo, caller) = (store.clone(), repo.to_string(), caller.clone());
        let (key, restore_keys, version) =
            (key.to_string(), restore_keys.to_vec(), version.to_string());
        tokio::task::spawn_blocking(move || {
            find_local(&store, &repo, &caller, &key, &restore_keys, &version)
        })
        .await
        .map_err(|e| StoreError::Shared {
            message: format!("lookup task failed: {e}"),
        })??
    };
    if local.is_some() {
        return Ok(local);
    }
    if !store.has_shared() {
        return Ok(None);
    }
    for scope in caller.read.iter().take(MAX_SHARED_SCOPES) {
        let index_key = entry_key(&caller.namespace, scope, key, version);
        if let Some((entry, _blob)) = store.pull_shared(repo, &index_key, |_| true).await {
            return Ok(Some(Found {
                index_key,
                key: key.to_string(),
                scope: scope.clone(),
                entry,
            }));
        }
    }
    for scope in caller.read.iter().take(MAX_SHARED_SCOPES) {
        let dir = marker_dir(&caller.namespace, scope, version);
        let dir: Vec<&str> = dir.iter().map(String::as_str).collect();
        for wanted in std::iter::once(key).chain(restore_keys.iter().map(String::as_str)) {
            let Some(prefix) = marker_prefix(wanted) else {
                continue;
            };
            let mut listed = store
                .list_shared_markers(repo, &dir, &prefix, LIST_LIMIT)
                .await;
            // Newest first by the bucket's write time; equal times (S3 keeps seconds) by name, stably.
            listed.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| y.0.cmp(&x.0)));
            for (name, _) in listed.into_iter().take(MAX_SHARED_TRIES) {
                let Some(found_key) = marker_key(&name) else {
                    continue;
                };
                let index_key = entry_key(&caller.namespace, scope, &found_key, version);
                if let Some((entry, _blob)) = store.pull_shared(repo, &index_key, |_| true).await {
                    return Ok(Some(Found {
                        index_key,
                        key: found_key,
                        scope: scope.clone(),
                        entry,
                    }));
                }
            }
        }
    }
    Ok(None)
}

fn find_local(
    store: &Store,
    repo: &str,
    caller: &Caller,
    key: &str,
    restore_keys: &[String],
    version: &str,
) -> Result<Option<Found>, StoreError> {
    for scope in &caller.read {
        let prefix = scope_prefix(&caller.namespace, scope);
        let exact = entry_key(&caller.namespace, scope, key, version);
        if let Some(entry) = store.lookup(repo, &exact)?.filter(|e| usable(store, e)) {
            return Ok(Some(Found {
                index_key: exact,
                key: key.to_string(),
                scope: scope.clone(),
                entry,
            }));
        }
        for wanted in std::iter::once(key).chain(restore_keys.iter().map(String::as_str)) {
            let newest = store
                .list_entries(repo, &format!("{prefix}{wanted}"), LIST_LIMIT)?
                .into_iter()
                .filter_map(|(index_key, entry)| {
                    let (found_key, found_version) = split_entry(&index_key, &prefix)?;
                    (found_version == version && usable(store, &entry))
                        .then_some((index_key, found_key, entry))
                })
                .max_by_key(|(_, _, entry)| entry.fetched_at);
            if let Some((index_key, found_key, entry)) = newest {
                return Ok(Some(Found {
                    index_key,
                    key: found_key,
                    scope: scope.clone(),
                    entry,
                }));
            }
        }
    }
    Ok(None)
}

/// Records that `found` was handed out now (its last access, for `max_unused` and LRU by `max_size`).
pub fn touch(store: &Store, repo: &str, found: &Found) -> Result<(), StoreError> {
    let mut entry = found.entry.clone();
    let now = now_ms().to_string();
    match entry.headers.iter_mut().find(|(n, _)| n == "accessed") {
        Some((_, v)) => *v = now,
        None => entry.headers.push(("accessed".into(), now)),
    }
    store.put_entry(repo, &found.index_key, &entry)
}

/// What [`enforce_limits`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    pub unused: u64,
    pub over_size: u64,
}

/// Drops entries not handed out for `max_unused`, then the least recently used while the repository holds
/// more than `max_size` bytes (down to 90% of it) or more than [`MAX_ENTRIES`] entries. Their blobs go with
/// the store's own eviction.
pub fn enforce_limits(
    store: &Store,
    repo: &str,
    max_size: Option<u64>,
    max_unused: Option<std::time::Duration>,
) -> Result<Trimmed, StoreError> {
    let mut entries = store.list_entries(repo, "", MAX_ENTRIES * 2)?;
    let mut trimmed = Trimmed::default();
    let mut doomed = Vec::new();
    if let Some(max_unused) = max_unused {
        let before = now_ms().saturating_sub(max_unused.as_millis() as u64);
        entries.retain(|(key, entry)| {
            let keep = accessed(entry) >= before;
            if !keep {
                doomed.push(key.clone());
                trimmed.unused += 1;
            }
            keep
        });
    }
    entries.sort_by_key(|(_, entry)| accessed(entry));
    let mut total: u64 = entries.iter().map(|(_, e)| e.size).sum();
    let target = max_size.map(|m| m - m / 10);
    let mut count = entries.len();
    let over_size = max_size.is_some_and(|max| total > max);
    for (key, entry) in &entries {
        let trim_size = over_size && target.is_some_and(|t| total > t);
        if !trim_size && count <= MAX_ENTRIES {
            break;
        }
        doomed.push(key.clone());
        total -= entry.size;
        count -= 1;
        trimmed.over_size += 1;
    }
    for key in doomed {
        store.remove_entry(repo, &key)?;
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_store::StoreOptions;

    fn store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreOptions {
            root: dir.path().to_path_buf(),
            max_size: None,
            shared: None,
        })
        .unwrap();
        (dir, store)
    }

    fn save(store: &Store, ns: &str, scope: &str, key: &str, version: &str, body: &[u8]) -> Entry {
        let mut temp = store.temp_blob().unwrap();
        temp.write_all(body).unwrap();
        let digest = Digest::of(body);
        store.commit_blob(temp, &digest, body.len() as u64).unwrap();
        let entry = new_entry(ns, scope, key, version, &digest, body.len() as u64);
        store
            .put_entry("actions", &entry_key(ns, scope, key, version), &entry)
            .unwrap();
        entry
    }

    fn caller(read: &[&str]) -> Caller {
        Caller {
            namespace: "r1".into(),
            read: read.iter().map(|s| s.to_string()).collect(),
            write: read.first().map(|s| s.to_string()),
        }
    }

    #[tokio::test]
    async fn exact_then_restore_prefix_newest_first_with_equal_version() {
        let (_dir, store) = store();
        save(&store, "r1", "main", "deps-a", "v1", b"a");
        std::thread::sleep(std::time::Duration::from_millis(5));
        save(&store, "r1", "main", "deps-b", "v1", b"b");
        save(&store, "r1", "main", "deps-c", "v2", b"c");
        let main = caller(&["main"]);
        let exact = find(&store, "actions", &main, "deps-a", &[], "v1")
            .await
            .unwrap();
        assert_eq!(exact.unwrap().key, "deps-a");
        let fallback = find(&store, "actions", &main, "deps-z", &["deps-".into()], "v1")
            .await
            .unwrap();
        assert_eq!(fallback.unwrap().key, "deps-b", "newest of the prefix");
        let other_version = find(&store, "actions", &main, "deps-a", &["deps-".into()], "v3")
            .await
            .unwrap();
        assert!(other_version.is_none());
    }

    #[tokio::test]
    async fn own_scope_first_and_namespaces_never_mix() {
        let (_dir, store) = store();
        save(&store, "r1", "main", "k", "v", b"main");
        save(&store, "r1", "feature", "k", "v", b"feature");
        save(&store, "r2", "main", "only-r2", "v", b"x");
        let feature = find(
            &store,
            "actions",
            &caller(&["feature", "main"]),
            "k",
            &[],
            "v",
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(feature.scope, "feature");
        let main = find(&store, "actions", &caller(&["main"]), "k", &[], "v")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(main.scope, "main");
        assert!(
            find(&store, "actions", &caller(&["main"]), "only-r2", &[], "v")
                .await
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn limits_drop_unused_then_least_recently_used() {
        let (_dir, store) = store();
        let old = save(&store, "r1", "main", "old", "v", &[1; 100]);
        let mut aged = old;
        aged.headers.retain(|(n, _)| n != "accessed");
        aged.headers.push(("accessed".into(), "1".into()));
        store
            .put_entry("actions", &entry_key("r1", "main", "old", "v"), &aged)
            .unwrap();
        save(&store, "r1", "main", "a", "v", &[2; 100]);
        std::thread::sleep(std::time::Duration::from_millis(5));
        save(&store, "r1", "main", "b", "v", &[3; 100]);
        let trimmed = enforce_limits(
            &store,
            "actions",
            Some(150),
            Some(std::time::Duration::from_secs(3600)),
        )
        .unwrap();
        assert_eq!(
            trimmed,
            Trimmed {
                unused: 1,
                over_size: 1
            }
        );
        let left: Vec<String> = store
            .list_entries("actions", "", 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(left, vec![entry_key("r1", "main", "b", "v")]);
    }
}
