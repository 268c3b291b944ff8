//! The release cooldown (`min_age`) for npm: versions published less than `min_age` ago (the full package
//! document's `time`) are removed from the documents clients get, `dist-tags` pointing at them move to the
//! newest version old enough, and a tarball of such a version is refused with why.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Deserialize;

pub(crate) struct Cooldown {
    pub(crate) min_age: Duration,
    pub(crate) exempt: HashSet<String>,
}

#[derive(Deserialize)]
struct Times {
    #[serde(default)]
    time: HashMap<String, serde_json::Value>,
}

/// Publish times (Unix seconds) by version, from a full package document.
pub(crate) fn publish_times(full: &[u8]) -> HashMap<String, i64> {
    let Ok(doc) = serde_json::from_slice::<Times>(full) else {
        return HashMap::new();
    };
    doc.time
        .into_iter()
        .filter(|(v, _)| v != "created" && v != "modified")
        .filter_map(|(v, t)| Some((v, wharf_text::parse_rfc3339(t.as_str()?)?)))
        .collect()
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Cooldown {
    /// The versions too new to serve, with their age in seconds.
    pub(crate) fn too_new(&self, times: &HashMap<String, i64>, now: i64) -> HashMap<String, i64> {
        let min = self.min_age.as_secs() as i64;
        times
            .iter()
            .filter(|(_, t)| now - **t < min)
            .map(|(v, t)| (v.clone(), (now - t).max(0)))
            .collect()
    }
}

/// `doc` (a package document, either variant) without the `hidden` versions; `dist-tags` that named one
/// name the newest remaining version by publish time (a release for `latest`), or are dropped.
pub(crate) fn without_versions(
    doc: &[u8],
    hidden: &HashSet<String>,
    times: &HashMap<String, i64>,
) -> Result<Vec<u8>, String> {
    let mut value: serde_json::Value =
        serde_json::from_slice(doc).map_err(|e| format!("not a JSON package document: {e}"))?;
    let Some(top) = value.as_object_mut() else {
        return Ok(doc.to_vec());
    };
    let mut remaining: Vec<String> = Vec::new();
    if let Some(versions) = top.get_mut("versions").and_then(|v| v.as_object_mut()) {
        versions.retain(|v, _| !hidden.contains(v));
        remaining = versions.keys().cloned().collect();
    }
    if let Some(time) = top.get_mut("time").and_then(|v| v.as_object_mut()) {
        time.retain(|v, _| !hidden.contains(v));
    }
    remaining.sort_by_key(|v| times.get(v).copied().unwrap_or(i64::MIN));
    let newest_release = remaining.iter().rev().find(|v| !v.contains('-')).cloned();
    let newest_any = remaining.last().cloned();
    if let Some(tags) = top.get_mut("dist-tags").and_then(|v| v.as_object_mut()) {
        let names: Vec<String> = tags.keys().cloned().collect();
        for tag in names {
            let points_hidden = tags[&tag].as_str().is_some_and(|v| hidden.contains(v));
            if !points_hidden {
                continue;
            }
            let replacement = if tag == "latest" {
                newest_release.clone().or_else(|| newest_any.clone())
            } else {
                None
            };
            match replacement {
                Some(v) => {
                    tags.insert(tag, serde_json::Value::String(v));
                }
                None => {
                    tags.remove(&tag);
                }
            }
        }
    }
    serde_json::to_vec(&value).map_err(|e| e.to_string())
}

/// `3d 4h`, `2h 5m`, `40s`.
pub(crate) fn span(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs / 60 % 60),
        _ => format!("{}d {}h", secs / 86400, secs / 3600 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_versions_leave_the_document_and_latest_moves_back() {
        let doc = serde_json::json!({
            "name": "x",
            "dist-tags": {"latest": "2.0.0", "next": "3.0.0-rc.1"},
            "versions": {"1.0.0": {}, "2.0.0": {}, "3.0.0-rc.1": {}},
            "time": {"created": "2020-01-01T00:00:00Z", "1.0.0": "2020-01-01T00:00:00Z",
                     "2.0.0": "2099-01-01T00:00:00Z", "3.0.0-rc.1": "2099-01-02T00:00:00Z"},
        })
        .to_string();
        let times = publish_times(doc.as_bytes());
        assert_eq!(times.len(), 3);
        let c = Cooldown {
            min_age: Duration::from_secs(86400),
            exempt: HashSet::new(),
        };
        let hidden: HashSet<String> = c.too_new(&times, now_secs()).into_keys().collect();
        assert_eq!(hidden.len(), 2);
        let out: serde_json::Value =
            serde_json::from_slice(&without_versions(doc.as_bytes(), &hidden, &times).unwrap())
                .unwrap();
        assert_eq!(out["dist-tags"], serde_json::json!({"latest": "1.0.0"}));
        assert_eq!(out["versions"].as_object().unwrap().len(), 1);
        assert!(out["time"].get("2.0.0").is_none());
        assert_eq!(span(3 * 86400 + 7200), "3d 2h");
    }
}
