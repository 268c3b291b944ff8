//! wharf's own access log (one JSON object per line) as a second input: what the cache served to clients
//! against what it fetched upstream, per repository and per cache outcome. The difference is the saving.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{EgressError, Result};
use crate::source_file::open_plain;

#[derive(Deserialize)]
struct AccessLine {
    #[serde(alias = "repository")]
    repo: String,
    #[serde(alias = "bytes")]
    bytes_sent: u64,
    #[serde(default)]
    cache: Option<String>,
    #[serde(default, alias = "bytes_upstream")]
    upstream_bytes: u64,
}

/// Totals for one repository or for all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServedTotals {
    pub requests: u64,
    pub bytes_served: u64,
    pub bytes_upstream: u64,
    /// Bytes served that did not have to be fetched upstream.
    pub bytes_saved: u64,
}

impl ServedTotals {
    fn add(&mut self, served: u64, upstream: u64) {
        self.requests += 1;
        self.bytes_served += served;
        self.bytes_upstream += upstream;
        self.bytes_saved = self.bytes_served.saturating_sub(self.bytes_upstream);
    }
}

/// Everything read from access logs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AccessSummary {
    pub total: ServedTotals,
    pub by_repository: BTreeMap<String, ServedTotals>,
    /// Requests per cache outcome (`hit`, `miss`, `coalesced`, `stale`, `revalidated`, `negative`).
    pub by_outcome: BTreeMap<String, u64>,
    pub malformed_lines: u64,
}

impl AccessSummary {
    /// Adds one access-log file; malformed lines are counted and handed to `on_malformed`.
    pub fn read_file(
        &mut self,
        path: &Path,
        mut on_malformed: impl FnMut(u64, String),
    ) -> Result<()> {
        let reader = open_plain(path, |_| {})?;
        for (index, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| EgressError::read(path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<AccessLine>(&line) {
                Ok(entry) => {
                    self.total.add(entry.bytes_sent, entry.upstream_bytes);
                    self.by_repository
                        .entry(entry.repo)
                        .or_default()
                        .add(entry.bytes_sent, entry.upstream_bytes);
                    *self
                        .by_outcome
                        .entry(entry.cache.unwrap_or_else(|| "-".into()))
                        .or_default() += 1;
                }
                Err(e) => {
                    self.malformed_lines += 1;
                    on_malformed(
                        index as u64 + 1,
                        format!("not a wharf access-log entry: {e}"),
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_against_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(
            &path,
            concat!(
                r#"{"time":"2024-05-01T10:00:00Z","client":"10.0.1.23","repo":"pypi","method":"GET","path":"/pypi/x.whl","status":200,"bytes_sent":1000,"cache":"miss","upstream_bytes":1000,"duration_ms":12}"#,
                "\n",
                r#"{"time":"2024-05-01T10:00:01Z","client":"10.0.1.24","repo":"pypi","method":"GET","path":"/pypi/x.whl","status":200,"bytes_sent":1000,"cache":"hit","upstream_bytes":0,"duration_ms":1}"#,
                "\nnot json\n"
            ),
        )
        .unwrap();
        let mut summary = AccessSummary::default();
        let mut bad = Vec::new();
        summary.read_file(&path, |line, _| bad.push(line)).unwrap();
        assert_eq!(
            summary.total,
            ServedTotals {
                requests: 2,
                bytes_served: 2000,
                bytes_upstream: 1000,
                bytes_saved: 1000
            }
        );
        assert_eq!(summary.by_outcome["hit"], 1);
        assert_eq!(bad, [3]);
    }
}
