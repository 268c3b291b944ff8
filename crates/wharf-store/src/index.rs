//! The metadata index (redb): request key → [`Entry`], and blob digest → (size, last access).
//!
//! Keys are `"{repo}\0{key}"`, so one repository's entries are one contiguous range.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::{Digest, Entry, StoreError};

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const BLOBS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("blobs");

pub(crate) struct Index {
    db: Database,
    path: PathBuf,
}

fn full_key(repo: &str, key: &str) -> String {
    format!("{repo}\0{key}")
}

impl Index {
    pub(crate) fn open(path: &Path) -> Result<Index, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Index {
            path: path.to_path_buf(),
            message: format!("cannot open: {e} (is another wharf using this data directory?)"),
        })?;
        let index = Index {
            db,
            path: path.to_path_buf(),
        };
        let txn = index.db.begin_write().map_err(|e| index.err(e))?;
        txn.open_table(ENTRIES).map_err(|e| index.err(e))?;
        txn.open_table(BLOBS).map_err(|e| index.err(e))?;
        txn.commit().map_err(|e| index.err(e))?;
        Ok(index)
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Index {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    pub(crate) fn get(&self, repo: &str, key: &str) -> Result<Option<Entry>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        let Some(value) = table
            .get(full_key(repo, key).as_str())
            .map_err(|e| self.err(e))?
        else {
            return Ok(None);
        };
        match serde_json::from_slice(value.value()) {
            Ok(entry) => Ok(Some(entry)),
            // An unreadable record is treated as absent: the key is fetched again and the record replaced.
            Err(e) => {
                tracing::warn!(repo, key, error = %e, "ignoring unreadable index entry");
                Ok(None)
            }
        }
    }

    pub(crate) fn put(&self, repo: &str, key: &str, entry: &Entry) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| self.err(e))?;
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
            table
                .insert(full_key(repo, key).as_str(), bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    pub(crate) fn remove(&self, repo: &str, key: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let removed = {
            let mut table = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
            let removed = table
                .remove(full_key(repo, key).as_str())
                .map_err(|e| self.err(e))?
                .is_some();
            removed
        };
        txn.commit().map_err(|e| self.err(e))?;
        Ok(removed)
    }

    pub(crate) fn remove_prefix(&self, repo: &str, prefix: &str) -> Result<u64, StoreError> {
        let start = full_key(repo, prefix);
        let keys: Vec<String> = {
            let txn = self.db.begin_read().map_err(|e| self.err(e))?;
            let table = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
            let mut keys = Vec::new();
            for item in table.range(start.as_str()..).map_err(|e| self.err(e))? {
                let (k, _) = item.map_err(|e| self.err(e))?;
                if !k.value().starts_with(start.as_str()) {
                    break;
                }
                keys.push(k.value().to_string());
            }
            keys
        };
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
            for k in &keys {
                table.remove(k.as_str()).map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(keys.len() as u64)
    }

    pub(crate) fn list(
        &self,
        repo: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Entry)>, StoreError> {
        let start = full_key(repo, prefix);
        let repo_len = repo.len() + 1;
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in table.range(start.as_str()..).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let key = k.value();
            if !key.starts_with(start.as_str()) || out.len() >= limit {
                break;
            }
            if let Ok(entry) = serde_json::from_slice::<Entry>(v.value()) {
                out.push((key[repo_len..].to_string(), entry));
            }
        }
        Ok(out)
    }

    pub(crate) fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        last_access: u64,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(BLOBS).map_err(|e| self.err(e))?;
            table
                .insert(digest.0.as_slice(), (size, last_access))
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    pub(crate) fn forget_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(BLOBS).map_err(|e| self.err(e))?;
            table.remove(digest.0.as_slice()).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    pub(crate) fn put_access_times(&self, times: &[(Digest, u64)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(BLOBS).map_err(|e| self.err(e))?;
            for (digest, at) in times {
                let size = table
                    .get(digest.0.as_slice())
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().0);
                if let Some(size) = size {
                    table
                        .insert(digest.0.as_slice(), (size, *at))
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }

    pub(crate) fn all_blobs(&self) -> Result<Vec<(Digest, u64, u64)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(BLOBS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let Ok(bytes) = <[u8; 32]>::try_from(k.value()) else {
                continue;
            };
            let (size, access) = v.value();
            out.push((Digest(bytes), size, access));
        }
        Ok(out)
    }
}
