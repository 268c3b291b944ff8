//! Sizes that manifests declare for the content they reference (config, layers, the manifests of an index),
//! remembered by digest so that fetching that content is bounded by its declared size: a body longer than
//! declared is cut off at that many bytes, and one declared larger than the store is never requested.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

/// Digests remembered at most; when full the memory starts over (a miss only loses the bound's precision:
/// `max_size` still bounds every download).
const CAPACITY: usize = 65_536;

#[derive(Default)]
pub(crate) struct DeclaredSizes {
    by_digest: Mutex<HashMap<String, u64>>,
}

impl DeclaredSizes {
    /// Records the descriptors of a manifest or index body; anything unparsable is ignored.
    pub(crate) fn learn(&self, manifest: &[u8]) {
        let Ok(doc) = serde_json::from_slice::<Value>(manifest) else {
            return;
        };
        let descriptors = std::iter::once(&doc["config"])
            .chain(doc["layers"].as_array().into_iter().flatten())
            .chain(doc["manifests"].as_array().into_iter().flatten())
            .chain(doc["blobs"].as_array().into_iter().flatten());
        let found: Vec<(String, u64)> = descriptors
            .filter_map(|d| {
                let hex = d["digest"].as_str()?.strip_prefix("sha256:")?;
                let valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
                valid.then(|| (hex.to_ascii_lowercase(), d["size"].as_u64()))
            })
            .filter_map(|(hex, size)| Some((hex, size?)))
            .collect();
        if found.is_empty() {
            return;
        }
        let mut map = self.by_digest.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() + found.len() > CAPACITY {
            map.clear();
        }
        map.extend(found);
    }

    /// The declared size of the content with this sha256 hex, if a manifest served earlier gave one.
    pub(crate) fn get(&self, hex: &str) -> Option<u64> {
        self.by_digest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hex)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_of_manifests_and_indexes_are_remembered() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let c = "c".repeat(64);
        let sizes = DeclaredSizes::default();
        sizes.learn(
            format!(
                r#"{{"config":{{"digest":"sha256:{a}","size":10}},"layers":[{{"digest":"sha256:{b}","size":1125899906842624}}]}}"#
            )
            .as_bytes(),
        );
        sizes.learn(format!(r#"{{"manifests":[{{"digest":"sha256:{c}","size":7}}]}}"#).as_bytes());
        sizes.learn(b"not json");
        assert_eq!(sizes.get(&a), Some(10));
        assert_eq!(sizes.get(&b), Some(1 << 50));
        assert_eq!(sizes.get(&c), Some(7));
        assert_eq!(sizes.get(&"d".repeat(64)), None);
    }
}
