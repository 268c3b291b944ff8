//! What the API server sends, parsed and bounded: pods (of a LIST page or a watch event), watch events, and
//! the newline-delimited stream they arrive in.
//!
//! Only the fields the table needs are read; names longer than Kubernetes allows and label values beyond 63
//! characters are refused, so what the server keeps per pod is small whatever the API server sends.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;

use crate::pods::{PodInfo, PodOwner};

/// Longest pod name (a DNS subdomain) and namespace (a DNS label) kept.
const MAX_NAME: usize = 253;
const MAX_NAMESPACE: usize = 63;
/// Longest label value kept (Kubernetes' own limit).
const MAX_LABEL_VALUE: usize = 63;
/// Longest `uid` and `resourceVersion` accepted.
const MAX_ID: usize = 128;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
    labels: Option<std::collections::BTreeMap<String, String>>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Spec {
    #[serde(rename = "hostNetwork")]
    host_network: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PodStatus {
    phase: Option<String>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pod_ips: Option<Vec<PodIp>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PodIp {
    ip: Option<String>,
}

/// A pod's `status` (an object), or a `Status` object's `status` (`"Failure"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum StatusField {
    Pod(PodStatus),
    Word(#[allow(dead_code)] String),
}

/// A pod, a `Status` (in ERROR events) or a bookmark's bare object: every field optional.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Object {
    metadata: Meta,
    spec: Option<Spec>,
    status: Option<StatusField>,
    code: Option<u16>,
    reason: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: Object,
}

#[derive(Deserialize)]
struct RawList {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    items: Vec<Object>,
}

/// One LIST page.
#[derive(Debug)]
pub struct PodList {
    pub pods: Vec<PodInfo>,
    /// Items left out (no uid, names too long): counted, not fatal.
    pub skipped: usize,
    pub resource_version: String,
    /// Set when more pages follow (`limit`/`continue`).
    pub continue_token: Option<String>,
}

/// One watch event.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// ADDED or MODIFIED.
    Upsert(PodInfo, String),
    Deleted(PodInfo, String),
    Bookmark(String),
    /// 410 Gone (`Expired`): the resource version is too old, list again.
    Gone,
    /// Another ERROR: its code and message.
    Error(u16, String),
}

/// Why a line or a page could not be used.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bounded(value: Option<String>, max: usize) -> Option<String> {
    value.filter(|v| !v.is_empty() && v.len() <= max)
}

/// The pod in `object`, if it names one well enough to track: uid, namespace and name within bounds. The
/// address is dropped for host-network pods (theirs is the node's, shared by every such pod), pods that
/// finished (their address is free for reuse), and text that is not an IP.
fn pod(object: Object, label: Option<&str>) -> Option<PodInfo> {
    let meta = object.metadata;
    let uid = bounded(meta.uid, MAX_ID)?;
    let namespace = bounded(meta.namespace, MAX_NAMESPACE)?;
    let name = bounded(meta.name, MAX_NAME)?;
    let label = label
        .and_then(|key| meta.labels.as_ref()?.get(key).cloned())
        .and_then(|v| bounded(Some(v), MAX_LABEL_VALUE));
    let host_network = object.spec.is_some_and(|s| s.host_network);
    let status = match object.status {
        Some(StatusField::Pod(status)) => status,
        _ => PodStatus::default(),
    };
    let finished = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
    let mut ips: Vec<IpAddr> = Vec::new();
    if !host_network && !finished {
        let listed = status
            .pod_ips
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.ip);
        for text in status.pod_ip.into_iter().chain(listed) {
            if let Ok(ip) = text.parse::<IpAddr>().map(crate::pods::canonical) {
                if !ips.contains(&ip) && ips.len() < crate::pods::MAX_POD_IPS {
                    ips.push(ip);
                }
            }
        }
    }
    Some(PodInfo {
        uid: uid.into(),
        owner: PodOwner {
            namespace: namespace.into(),
            pod: name.into(),
            label: label.map(Arc::from),
        },
        ips,
    })
}

/// A LIST response body.
pub fn parse_list(body: &[u8], label: Option<&str>) -> Result<PodList, ParseError> {
    let raw: RawList = serde_json::from_slice(body)
        .map_err(|e| ParseError(format!("the pod list is not a PodList: {e}")))?;
    let resource_version = bounded(raw.metadata.resource_version, MAX_ID)
        .ok_or_else(|| ParseError("the pod list has no resourceVersion".into()))?;
    let total = raw.items.len();
    let pods: Vec<PodInfo> = raw
        .items
        .into_iter()
        .filter_map(|o| pod(o, label))
        .collect();
    Ok(PodList {
        skipped: total - pods.len(),
        pods,
        resource_version,
        continue_token: raw.metadata.continue_token.filter(|c| !c.is_empty()),
    })
}

/// One line of a watch stream.
pub fn parse_event(line: &[u8], label: Option<&str>) -> Result<Event, ParseError> {
    let raw: RawEvent = serde_json::from_slice(line).map_err(|e| {
        ParseError(format!(
            "a watch event is not JSON of the expected shape: {e}"
        ))
    })?;
    let rv = |o: &Object| bounded(o.metadata.resource_version.clone(), MAX_ID);
    match raw.kind.as_str() {
        "ADDED" | "MODIFIED" | "DELETED" => {
            let version = rv(&raw.object).ok_or_else(|| {
                ParseError(format!("a {} event has no resourceVersion", raw.kind))
            })?;
            let deleted = raw.kind == "DELETED";
            let pod = pod(raw.object, label)
                .ok_or_else(|| ParseError("a watch event names no usable pod".into()))?;
            Ok(if deleted {
                Event::Deleted(pod, version)
            } else {
                Event::Upsert(pod, version)
            })
        }
        "BOOKMARK" => rv(&raw.object)
            .map(Event::Bookmark)
            .ok_or_else(|| ParseError("a bookmark has no resourceVersion".into())),
        "ERROR" => {
            let o = raw.object;
            if o.code == Some(410)
                || o.reason.as_deref() == Some("Expired")
                || o.reason.as_deref() == Some("Gone")
            {
                Ok(Event::Gone)
            } else {
                let message: String = o.message.unwrap_or_default().chars().take(300).collect();
                Ok(Event::Error(o.code.unwrap_or(0), message))
            }
        }
        other => Err(ParseError(format!(
            "unknown watch event type {:?}",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// Splits a byte stream into lines of at most `max` bytes. A longer line is dropped whole (it is skipped up
/// to its newline and reported once as [`Line::TooLong`]), so one oversized object neither grows the buffer
/// nor stops the watch.
pub struct Lines {
    buf: Vec<u8>,
    max: usize,
    /// Inside an oversized line, dropping bytes until its end.
    skipping: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Complete(Vec<u8>),
    TooLong,
}

impl Lines {
    pub fn new(max: usize) -> Lines {
        Lines {
            buf: Vec::new(),
            max,
            skipping: false,
        }
    }

    /// Feeds a chunk; returns the lines it completed.
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    if self.skipping {
                        self.skipping = false;
                    } else if self.buf.len() + end > self.max {
                        self.buf.clear();
                        out.push(Line::TooLong);
                    } else {
                        self.buf.extend_from_slice(&chunk[..end]);
                        let line = std::mem::take(&mut self.buf);
                        if !line.iter().all(u8::is_ascii_whitespace) {
                            out.push(Line::Complete(line));
                        }
                    }
                    chunk = &chunk[end + 1..];
                }
                None => {
                    if !self.skipping {
                        if self.buf.len() + chunk.len() > self.max {
                            self.buf.clear();
                            self.skipping = true;
                            out.push(Line::TooLong);
                        } else {
                            self.buf.extend_from_slice(chunk);
                        }
                    }
                    chunk = &[];
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"job-1","namespace":"team-a","uid":"u-1","resourceVersion":"42","labels":{"team":"payments","x":"y"},"managedFields":[{"manager":"kubelet"}]},"spec":{"nodeName":"n1","containers":[{"name":"c"}]},"status":{"phase":"Running","podIP":"10.4.0.7","podIPs":[{"ip":"10.4.0.7"}]}}"#;

    #[test]
    fn a_pod_event_gives_namespace_name_label_and_address() {
        let line = format!(r#"{{"type":"ADDED","object":{POD}}}"#);
        let Event::Upsert(pod, rv) = parse_event(line.as_bytes(), Some("team")).unwrap() else {
            panic!("not an upsert")
        };
        assert_eq!(rv, "42");
        assert_eq!(&*pod.owner.namespace, "team-a");
        assert_eq!(&*pod.owner.pod, "job-1");
        assert_eq!(pod.owner.label.as_deref(), Some("payments"));
        assert_eq!(pod.ips, ["10.4.0.7".parse::<IpAddr>().unwrap()]);
        let dual = POD.replace(
            r#"[{"ip":"10.4.0.7"}]"#,
            r#"[{"ip":"10.4.0.7"},{"ip":"fd00::7"}]"#,
        );
        let line = format!(r#"{{"type":"ADDED","object":{dual}}}"#);
        let Event::Upsert(pod, _) = parse_event(line.as_bytes(), None).unwrap() else {
            panic!("not an upsert")
        };
        assert_eq!(pod.ips.len(), 2, "both families: {:?}", pod.ips);
        let line = format!(r#"{{"type":"DELETED","object":{POD}}}"#);
        assert!(
            matches!(parse_event(line.as_bytes(), None), Ok(Event::Deleted(p, _)) if p.owner.label.is_none())
        );
    }

    #[test]
    fn host_network_and_finished_pods_have_no_address() {
        let host = POD.replace(
            r#""nodeName":"n1""#,
            r#""nodeName":"n1","hostNetwork":true"#,
        );
        let done = POD.replace("Running", "Succeeded");
        for pod in [host, done] {
            let line = format!(r#"{{"type":"MODIFIED","object":{pod}}}"#);
            let Ok(Event::Upsert(pod, _)) = parse_event(line.as_bytes(), None) else {
                panic!("not an upsert")
            };
            assert!(pod.ips.is_empty());
        }
    }

    #[test]
    fn bookmarks_errors_and_gone_are_told_apart() {
        let bookmark =
            br#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"99"}}}"#;
        assert_eq!(
            parse_event(bookmark, None),
            Ok(Event::Bookmark("99".into()))
        );
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 1 (2)","reason":"Expired","code":410}}"#;
        assert_eq!(parse_event(gone, None), Ok(Event::Gone));
        let other = br#"{"type":"ERROR","object":{"kind":"Status","status":"Failure","message":"boom","code":500}}"#;
        assert_eq!(
            parse_event(other, None),
            Ok(Event::Error(500, "boom".into()))
        );
        assert!(parse_event(b"{\"type\":\"NOPE\"}", None).is_err());
        assert!(parse_event(b"not json", None).is_err());
    }

    #[test]
    fn oversized_names_and_label_values_are_refused() {
        let long_ns = POD.replace("team-a", &"n".repeat(64));
        let line = format!(r#"{{"type":"ADDED","object":{long_ns}}}"#);
        assert!(parse_event(line.as_bytes(), None).is_err());
        let long_label = POD.replace("payments", &"p".repeat(64));
        let line = format!(r#"{{"type":"ADDED","object":{long_label}}}"#);
        let Ok(Event::Upsert(pod, _)) = parse_event(line.as_bytes(), Some("team")) else {
            panic!("not an upsert")
        };
        assert_eq!(pod.owner.label, None);
    }

    #[test]
    fn a_list_page_gives_pods_version_and_continue() {
        let body = format!(
            r#"{{"kind":"PodList","metadata":{{"resourceVersion":"7","continue":"abc"}},"items":[{POD},{{"metadata":{{"name":"x"}}}}]}}"#
        );
        let list = parse_list(body.as_bytes(), None).unwrap();
        assert_eq!(list.pods.len(), 1);
        assert_eq!(list.skipped, 1);
        assert_eq!(list.resource_version, "7");
        assert_eq!(list.continue_token.as_deref(), Some("abc"));
        assert!(parse_list(b"{\"items\":[]}", None).is_err());
    }

    #[test]
    fn lines_are_split_across_chunks_and_an_oversized_one_is_skipped_whole() {
        let mut lines = Lines::new(8);
        assert_eq!(lines.push(b"abc"), vec![]);
        assert_eq!(
            lines.push(b"de\n\nxy"),
            vec![Line::Complete(b"abcde".to_vec())]
        );
        assert_eq!(lines.push(b"z\n"), vec![Line::Complete(b"xyz".to_vec())]);
        // Too long in one chunk, then across chunks: dropped up to its newline, the next line is intact.
        assert_eq!(
            lines.push(b"0123456789\nok\n"),
            vec![Line::TooLong, Line::Complete(b"ok".to_vec())]
        );
        assert_eq!(lines.push(b"01234"), vec![]);
        assert_eq!(lines.push(b"56789"), vec![Line::TooLong]);
        assert_eq!(lines.push(b"more bytes"), vec![]);
        assert_eq!(
            lines.push(b"\nfine\n"),
            vec![Line::Complete(b"fine".to_vec())]
        );
    }
}
