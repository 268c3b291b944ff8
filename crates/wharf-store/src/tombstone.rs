//! Purges that hold for every replica on a shared bucket. A purge on one replica writes a tombstone object,
//! `tombstones/<ms>-<random>.json` (never rewritten, so two replicas purging at once lose nothing); every
//! replica lists them every few seconds ([`crate::Store::sync_tombstones`]), drops its local entries the
//! tombstone covers, and from then on never takes a covered entry from the bucket. "Covered" means the same
//! repository, the key named or under a prefix named, and fetched at or before the tombstone's time: what was
//! fetched again after the purge is new content and stays.

use std::collections::HashSet;
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

/// Most tombstones a replica keeps and checks: the newest win. Each is one purge, so this is a lot of purges.
pub const MAX_TOMBSTONES: usize = 1000;

/// One purge, as shared with the other replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub repo: String,
    /// Keys purged by name.
    pub exact: Vec<String>,
    /// Keys purged by prefix (`""` is the whole repository).
    pub prefixes: Vec<String>,
    /// When the purge happened (ms since the epoch): entries fetched at or before this are gone.
    pub at: u64,
}

impl Tombstone {
    pub fn covers(&self, repo: &str, key: &str, fetched_at: u64) -> bool {
        self.repo == repo
            && fetched_at <= self.at
            && (self.exact.iter().any(|k| k == key)
                || self.prefixes.iter().any(|p| key.starts_with(p.as_str())))
    }
}

/// The tombstones this replica knows, and the object names it has read.
#[derive(Debug, Default)]
pub(crate) struct Known {
    names: Mutex<HashSet<String>>,
    list: RwLock<Vec<Tombstone>>,
}

impl Known {
    pub(crate) fn covers(&self, repo: &str, key: &str, fetched_at: u64) -> bool {
        self.list
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|t| t.covers(repo, key, fetched_at))
    }

    pub(crate) fn seen(&self, name: &str) -> bool {
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// Remembers `tombstone` read from object `name`, keeping the newest [`MAX_TOMBSTONES`].
    pub(crate) fn add(&self, name: String, tombstone: Tombstone) {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if !names.insert(name) {
            return;
        }
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        list.push(tombstone);
        if list.len() > MAX_TOMBSTONES {
            list.sort_by_key(|t| std::cmp::Reverse(t.at));
            list.truncate(MAX_TOMBSTONES);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tombstone_covers_older_entries_of_its_keys_only() {
        let t = Tombstone {
            repo: "pypi".into(),
            exact: vec!["files/a/a-1.whl".into()],
            prefixes: vec!["simple/b/".into()],
            at: 1000,
        };
        assert!(t.covers("pypi", "files/a/a-1.whl", 1000));
        assert!(t.covers("pypi", "simple/b/index", 10));
        assert!(!t.covers("pypi", "files/a/a-1.whl", 1001), "fetched after");
        assert!(!t.covers("npm", "files/a/a-1.whl", 10), "other repository");
        assert!(!t.covers("pypi", "files/a/a-2.whl", 10), "other key");
        let known = Known::default();
        known.add("x".into(), t.clone());
        known.add("x".into(), t);
        assert!(known.seen("x"));
        assert!(known.covers("pypi", "simple/b/", 5));
        assert_eq!(known.list.read().unwrap().len(), 1);
    }
}
