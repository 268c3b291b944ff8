//! Package documents: every `dist.tarball` is rewritten to point at wharf, and what each tarball must be
//! (its upstream URL and digest) is remembered so that a tarball request can be answered from the document.
//!
//! Documents of busy packages are tens of MB, so the rewrite does not build a tree of the whole document:
//! the top level, `versions` and each version are read as maps of raw (borrowed) JSON slices, only each
//! `dist` object is parsed, and the output is written by copying the untouched slices. Peak extra memory
//! is about the output's size instead of several times the document.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use url::Url;
use wharf_cache::Expected;

/// A tarball as the upstream document describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TarballSource {
    pub url: Url,
    pub expected: Option<Expected>,
}

/// A document ready to serve, and the tarballs it lists, by file name.
#[derive(Debug)]
pub(crate) struct Rewritten {
    pub body: Bytes,
    pub tarballs: HashMap<String, TarballSource>,
}

/// An object's members as raw JSON, by key. Keys come out in sorted order and a repeated key keeps its
/// last value, as a parse into [`Value`] (and its re-serialisation) does.
type RawObject<'a> = BTreeMap<String, &'a RawValue>;

/// Rewrites `raw` (a package document from `upstream_doc_url`) so that each tarball is fetched from
/// `{package_base}-/{file}`, where `package_base` is wharf's URL of the package (ending in `/`).
pub(crate) fn rewrite(
    raw: &[u8],
    upstream_doc_url: &Url,
    package_base: &str,
) -> Result<Rewritten, String> {
    // Refuses exactly what a parse into `Value` refused (nesting depth, numbers out of range, bad UTF-8),
    // keeping nothing: the raw slices below are not checked that strictly.
    serde_json::from_slice::<Checked>(raw)
        .map_err(|e| format!("not a JSON package document: {e}"))?;
    let bad = |e: serde_json::Error| format!("not a JSON package document: {e}");
    let mut tarballs = HashMap::new();
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 16 + 64);
    match serde_json::from_slice::<RawObject>(raw) {
        Ok(top) => write_object(&mut out, &top, |out, key, value| {
            if key == "versions" {
                write_versions(out, value, upstream_doc_url, package_base, &mut tarballs)
            } else {
                out.extend_from_slice(value.get().as_bytes());
                Ok(())
            }
        })
        .map_err(bad)?,
        // Valid JSON but not an object: nothing to rewrite.
        Err(_) => {
            let whole: &RawValue = serde_json::from_slice(raw).map_err(bad)?;
            out.extend_from_slice(whole.get().as_bytes());
        }
    }
    Ok(Rewritten {
        body: Bytes::from(out),
        tarballs,
    })
}

/// Writes `{ "key": value, ... }`, each value written by `member`.
fn write_object(
    out: &mut Vec<u8>,
    object: &RawObject,
    mut member: impl FnMut(&mut Vec<u8>, &str, &RawValue) -> serde_json::Result<()>,
) -> serde_json::Result<()> {
    out.push(b'{');
    for (i, (key, value)) in object.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key)?;
        out.push(b':');
        member(out, key, value)?;
    }
    out.push(b'}');
    Ok(())
}

/// Writes the `versions` member with each version's `dist` rewritten; anything not shaped like an object
/// of version objects with a `dist` object is passed on as it is.
fn write_versions(
    out: &mut Vec<u8>,
    versions: &RawValue,
    upstream_doc_url: &Url,
    package_base: &str,
    tarballs: &mut HashMap<String, TarballSource>,
) -> serde_json::Result<()> {
    let Ok(versions) = serde_json::from_str::<RawObject>(versions.get()) else {
        out.extend_from_slice(versions.get().as_bytes());
        return Ok(());
    };
    write_object(out, &versions, |out, _, version| {
        let Ok(fields) = serde_json::from_str::<RawObject>(version.get()) else {
            out.extend_from_slice(version.get().as_bytes());
            return Ok(());
        };
        write_object(out, &fields, |out, key, value| {
            if key == "dist" {
                if let Ok(mut dist) = serde_json::from_str::<Map<String, Value>>(value.get()) {
                    rewrite_dist(&mut dist, upstream_doc_url, package_base, tarballs);
                    return serde_json::to_writer(&mut *out, &dist);
                }
            }
            out.extend_from_slice(value.get().as_bytes());
            Ok(())
        })
    })
}

/// Points one version's `dist.tarball` at wharf and remembers where that tarball comes from.
fn rewrite_dist(
    dist: &mut Map<String, Value>,
    upstream_doc_url: &Url,
    package_base: &str,
    tarballs: &mut HashMap<String, TarballSource>,
) {
    let Some(url) = dist
        .get("tarball")
        .and_then(Value::as_str)
        .and_then(|t| upstream_doc_url.join(t).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
    else {
        // Not a URL wharf would fetch (`javascript:`, `data:`, `file:`, ...): not one it passes on.
        dist.remove("tarball");
        return;
    };
    let Some(file) = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .map(|f| {
            percent_encoding::percent_decode_str(f)
                .decode_utf8_lossy()
                .into_owned()
        })
        .filter(|f| !f.is_empty())
    else {
        // No file name to serve it under: a link wharf cannot answer is not passed on either.
        dist.remove("tarball");
        return;
    };
    let expected = expected_digest(dist);
    dist.insert(
        "tarball".into(),
        Value::String(format!("{package_base}-/{file}")),
    );
    tarballs.insert(file, TarballSource { url, expected });
}

/// Any JSON value, read the way a parse into [`Value`] reads it and then dropped.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

/// The strongest digest `dist` gives: a sha512 (or other) `integrity` entry, else the sha1 `shasum`.
fn expected_digest(dist: &serde_json::Map<String, Value>) -> Option<Expected> {
    let from_integrity: Vec<Expected> = dist
        .get("integrity")
        .and_then(Value::as_str)
        .map(|i| {
            i.split_whitespace()
                .filter_map(Expected::from_sri)
                .collect()
        })
        .unwrap_or_default();
    let strongest = from_integrity
        .iter()
        .find(|e| matches!(e, Expected::Sha512(_)))
        .or_else(|| from_integrity.first())
        .cloned();
    strongest.or_else(|| {
        dist.get("shasum")
            .and_then(Value::as_str)
            .and_then(Expected::sha1_hex)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarballs_point_at_wharf_and_keep_their_digests() {
        let sha512 = format!("sha512-{}", "A".repeat(86) + "==");
        let doc = serde_json::json!({
            "name": "@s/p",
            "versions": {
                "1.0.0": {"dist": {"tarball": "https://up.example/@s/p/-/p-1.0.0.tgz", "integrity": sha512, "shasum": "00".repeat(20)}},
                "0.9.0": {"dist": {"tarball": "/@s/p/-/p-0.9.0.tgz", "shasum": "11".repeat(20)}},
                "0.1.0": {"dist": {"tarball": "ftp://elsewhere/p.tgz"}},
                "0.0.1": {"dist": {"tarball": "javascript:alert(1)"}}
            }
        });
        let upstream = Url::parse("https://up.example/@s%2fp").unwrap();
        let out = rewrite(
            &serde_json::to_vec(&doc).unwrap(),
            &upstream,
            "http://wharf.test/npm/@s/p/",
        )
        .unwrap();
        let back: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(
            back["versions"]["1.0.0"]["dist"]["tarball"],
            "http://wharf.test/npm/@s/p/-/p-1.0.0.tgz"
        );
        assert_eq!(
            back["versions"]["0.9.0"]["dist"]["tarball"],
            "http://wharf.test/npm/@s/p/-/p-0.9.0.tgz"
        );
        assert_eq!(back["versions"]["0.1.0"]["dist"].get("tarball"), None);
        assert!(matches!(
            out.tarballs["p-1.0.0.tgz"].expected,
            Some(Expected::Sha512(_))
        ));
        assert_eq!(
            out.tarballs["p-0.9.0.tgz"].url.as_str(),
            "https://up.example/@s/p/-/p-0.9.0.tgz"
        );
        assert!(matches!(
            out.tarballs["p-0.9.0.tgz"].expected,
            Some(Expected::Sha1(_))
        ));
        assert_eq!(back["versions"]["0.0.1"]["dist"].get("tarball"), None);
        assert_eq!(out.tarballs.len(), 2);
    }

    /// The rewrite as it was first written: the whole document parsed into a [`Value`] and re-serialised.
    fn rewrite_with_value(
        raw: &[u8],
        url: &Url,
        base: &str,
    ) -> (Value, HashMap<String, TarballSource>) {
        let mut doc: Value = serde_json::from_slice(raw).unwrap();
        let mut tarballs = HashMap::new();
        if let Some(versions) = doc.get_mut("versions").and_then(Value::as_object_mut) {
            for version in versions.values_mut() {
                if let Some(dist) = version.get_mut("dist").and_then(Value::as_object_mut) {
                    rewrite_dist(dist, url, base, &mut tarballs);
                }
            }
        }
        (doc, tarballs)
    }

    /// A generated document of `versions` versions, with odd members among them, as upstream's bytes
    /// (written a version at a time, so that making it does not take several times its size).
    fn large_document(versions: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(versions * 1000 + 4096);
        out.extend_from_slice(br#"{"_id": "big", "readme": ""#);
        out.extend_from_slice("x".repeat(1000).as_bytes());
        out.extend_from_slice(br#"", "versions": {"#);
        for i in 0..versions {
            let v = format!("1.{}.{}", i / 100, i % 100);
            let tarball = match i % 50 {
                7 => "data:text/plain,x".to_string(),
                9 => format!("/big/-/big-{v}.tgz"),
                _ => format!("https://up.example/big/-/big-{v}.tgz"),
            };
            let dist = if i % 97 == 3 {
                Value::String("not an object".into())
            } else {
                serde_json::json!({
                    "tarball": tarball,
                    "integrity": format!("sha512-{}==", "Q".repeat(86)),
                    "shasum": format!("{:040x}", i),
                    "fileCount": i,
                    "unpackedSize": 1234.5e3,
                    "signatures": [{"keyid": "SHA256:k", "sig": "s\u{e9}\"q"}]
                })
            };
            let version = serde_json::json!({
                "name": "big", "version": v, "description": "caf\u{e9} \"quoted\" \\ line\nbreak",
                "dependencies": {"a": "^1", "b": "~2.0"}, "_npmUser": {"name": "u", "email": "u@x"},
                "dist": dist, "deprecated": i % 13 == 0, "readme": "r".repeat(64)
            });
            if i > 0 {
                out.extend_from_slice(b",\n");
            }
            serde_json::to_writer(&mut out, &v).unwrap();
            out.push(b':');
            serde_json::to_writer_pretty(&mut out, &version).unwrap();
        }
        out.extend_from_slice(
            br#"}, "name": "big", "dist-tags": {"latest": "1.0.0"}, "time": {"created": "2020"},
            "maintainers": [{"name": "m"}], "users": {}, "n": [1, -2, 3.5, 1E2, null, true], "name": "big"}"#,
        );
        out
    }

    #[test]
    fn a_large_document_rewrites_like_a_full_parse() {
        let raw = large_document(2000);
        let url = Url::parse("https://up.example/big").unwrap();
        let base = "http://wharf.test/npm/big/";
        let out = rewrite(&raw, &url, base).unwrap();
        let got: Value = serde_json::from_slice(&out.body).unwrap();
        let (want, want_tarballs) = rewrite_with_value(&raw, &url, base);
        let original: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(out.tarballs, want_tarballs);
        // Every member but `versions`, and every version member but `dist`, is the same JSON value.
        for (key, value) in original.as_object().unwrap() {
            if key != "versions" {
                assert_eq!(&got[key], value, "{key}");
            }
        }
        let versions = original["versions"].as_object().unwrap();
        assert_eq!(got["versions"].as_object().unwrap().len(), 2000);
        let mut rewritten = 0;
        for (v, version) in versions {
            for (key, value) in version.as_object().unwrap() {
                if key != "dist" {
                    assert_eq!(&got["versions"][v][key], value, "{v} {key}");
                }
            }
            let (dist, upstream) = (&got["versions"][v]["dist"], &version["dist"]);
            assert_eq!(dist, &want["versions"][v]["dist"], "{v}");
            let Some(upstream) = upstream.as_object() else {
                assert_eq!(
                    dist, &version["dist"],
                    "{v}: a dist that is no object stays"
                );
                continue;
            };
            assert_eq!(dist["integrity"], upstream["integrity"], "{v}");
            assert_eq!(dist["shasum"], upstream["shasum"], "{v}");
            if upstream["tarball"].as_str().unwrap().starts_with("data:") {
                assert_eq!(dist.get("tarball"), None, "{v}");
            } else {
                assert_eq!(dist["tarball"], format!("{base}-/big-{v}.tgz"), "{v}");
                rewritten += 1;
            }
        }
        assert_eq!(got, want);
        assert_eq!(out.tarballs.len(), rewritten);
        assert!(rewritten > 1900, "{rewritten}");
    }

    #[test]
    fn what_a_full_parse_refused_is_still_refused() {
        let url = Url::parse("https://up.example/x").unwrap();
        let deep = format!("{{\"versions\":{}{}}}", "[".repeat(200), "]".repeat(200));
        for doc in [
            deep.as_str(),
            r#"{"name":"x","versions":{"1":{"size":1e400}}}"#,
            r#"{"name":"x"} trailing"#,
            r#"{"name":"x""#,
        ] {
            assert!(
                rewrite(doc.as_bytes(), &url, "http://w/npm/x/").is_err(),
                "{doc}"
            );
        }
        let list = rewrite(b" [1, {\"b\": 2}] ", &url, "http://w/npm/x/").unwrap();
        assert_eq!(&list.body[..], b"[1, {\"b\": 2}]");
    }

    /// Peak memory of one rewrite of a ~50 MB document, this implementation or (`WHARF_NPM_REWRITE=value`)
    /// a full parse into `Value`. Run alone: `cargo test -p wharf-npm --release -- --ignored --exact
    /// document::tests::peak_memory_of_one_large_rewrite --nocapture`.
    #[test]
    #[ignore = "a measurement; run alone, it reads this process's peak memory"]
    fn peak_memory_of_one_large_rewrite() {
        fn peak_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        let raw = large_document(72_000);
        let url = Url::parse("https://up.example/big").unwrap();
        // Forget the peak so far (making the document): what follows is the rewrite's alone.
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let before = peak_kib();
        let size = if std::env::var("WHARF_NPM_REWRITE").as_deref() == Ok("value") {
            let (doc, _) = rewrite_with_value(&raw, &url, "http://w/npm/big/");
            serde_json::to_vec(&doc).unwrap().len()
        } else {
            rewrite(&raw, &url, "http://w/npm/big/").unwrap().body.len()
        };
        let after = peak_kib();
        eprintln!(
            "document {} KiB, output {} KiB, peak before {before} KiB, after {after} KiB, extra {} KiB",
            raw.len() / 1024,
            size / 1024,
            after - before
        );
        assert!(after >= before);
    }

    #[test]
    fn garbage_is_an_error() {
        let url = Url::parse("https://up.example/x").unwrap();
        assert!(rewrite(b"<html>", &url, "http://w/npm/x/").is_err());
    }
}
