//! PEP 691 JSON: reading upstream's documents and writing our own (API version 1.1 when upstream gave the
//! 1.1 fields, else 1.0).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use url::Url;

use crate::model::{is_usable_link, FileLink, ProjectPage, RootPage};
use crate::name::is_valid_project;

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    v.as_str()
                        .map(|v| (k.to_ascii_lowercase(), v.to_ascii_lowercase()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `core-metadata` / `dist-info-metadata`: `true`, `false`, or a hash dictionary.
fn metadata_field(value: Option<&Value>) -> Option<BTreeMap<String, String>> {
    match value? {
        Value::Bool(true) => Some(BTreeMap::new()),
        Value::Object(_) => Some(string_map(value)),
        _ => None,
    }
}

pub fn parse_project(text: &[u8], name: &str, base: &Url) -> Result<ProjectPage, String> {
    let doc: Value = serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let files = doc
        .get("files")
        .and_then(Value::as_array)
        .ok_or("no `files` list")?;
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let (Some(filename), Some(url)) = (
            f.get("filename").and_then(Value::as_str),
            f.get("url").and_then(Value::as_str),
        ) else {
            continue;
        };
        let Ok(mut url) = base.join(url) else {
            continue;
        };
        url.set_fragment(None);
        if !is_usable_link(&url, filename) {
            continue;
        }
        let yanked = match f.get("yanked") {
            Some(Value::Bool(true)) => Some(String::new()),
            Some(Value::String(reason)) => Some(reason.clone()),
            _ => None,
        };
        out.push(FileLink {
            filename: filename.to_string(),
            url,
            hashes: string_map(f.get("hashes")),
            requires_python: f
                .get("requires-python")
                .and_then(Value::as_str)
                .map(str::to_string)
                .filter(|s| !s.is_empty()),
            yanked,
            core_metadata: metadata_field(f.get("core-metadata"))
                .or_else(|| metadata_field(f.get("dist-info-metadata"))),
            size: f.get("size").and_then(Value::as_u64),
            upload_time: f
                .get("upload-time")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
    }
    let versions = doc.get("versions").and_then(Value::as_array).map(|v| {
        v.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    });
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(name)
        .to_string();
    Ok(ProjectPage {
        name,
        versions,
        files: out,
    })
}

pub fn parse_root(text: &[u8]) -> Result<RootPage, String> {
    let doc: Value = serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let projects = doc
        .get("projects")
        .and_then(Value::as_array)
        .ok_or("no `projects` list")?;
    Ok(RootPage {
        projects: projects
            .iter()
            .filter_map(|p| p.get("name").and_then(Value::as_str))
            .filter(|name| is_valid_project(name))
            .map(str::to_string)
            .collect(),
    })
}

pub fn render_project(page: &ProjectPage, link: impl Fn(&FileLink) -> String) -> String {
    let v11 = page.versions.is_some() && page.files.iter().all(|f| f.size.is_some());
    let files: Vec<Value> = page
        .files
        .iter()
        .map(|f| {
            let mut o = Map::new();
            o.insert("filename".into(), json!(f.filename));
            o.insert("url".into(), json!(link(f)));
            o.insert("hashes".into(), json!(f.hashes));
            if let Some(rp) = &f.requires_python {
                o.insert("requires-python".into(), json!(rp));
            }
            o.insert(
                "yanked".into(),
                match &f.yanked {
                    None => json!(false),
                    Some(r) if r.is_empty() => json!(true),
                    Some(r) => json!(r),
                },
            );
            let meta = match &f.core_metadata {
                None => json!(false),
                Some(h) if h.is_empty() => json!(true),
                Some(h) => json!(h),
            };
            o.insert("core-metadata".into(), meta.clone());
            o.insert("dist-info-metadata".into(), meta);
            if let Some(size) = f.size {
                o.insert("size".into(), json!(size));
            }
            if let Some(t) = &f.upload_time {
                o.insert("upload-time".into(), json!(t));
            }
            Value::Object(o)
        })
        .collect();
    let mut doc = json!({
        "meta": { "api-version": if v11 { "1.1" } else { "1.0" } },
        "name": page.name,
        "files": files,
    });
    if let (true, Some(versions)) = (v11, &page.versions) {
        doc["versions"] = json!(versions);
    }
    doc.to_string()
}

pub fn render_root(root: &RootPage) -> String {
    let projects: Vec<Value> = root.projects.iter().map(|p| json!({ "name": p })).collect();
    json!({ "meta": { "api-version": "1.0" }, "projects": projects }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_pep691() {
        let base = Url::parse("http://up.example/simple/demo/").unwrap();
        let doc = br#"{"meta":{"api-version":"1.1"},"name":"demo","versions":["1.0"],
          "files":[{"filename":"demo-1.0.whl","url":"https://files.example/demo-1.0.whl","hashes":{"sha256":"AA"},
                    "requires-python":">=3.8","yanked":"broken","core-metadata":{"sha256":"bb"},"size":10,
                    "upload-time":"2024-01-01T00:00:00Z"},
                   {"filename":"demo-0.9.tar.gz","url":"../../f/demo-0.9.tar.gz","hashes":{},"yanked":false,
                    "dist-info-metadata":true,"size":5}]}"#;
        let page = parse_project(doc, "demo", &base).unwrap();
        assert_eq!(
            page.files[0].hashes.get("sha256").map(String::as_str),
            Some("aa")
        );
        assert_eq!(page.files[0].yanked.as_deref(), Some("broken"));
        assert_eq!(
            page.files[1].url.as_str(),
            "http://up.example/f/demo-0.9.tar.gz"
        );
        assert_eq!(page.files[1].core_metadata, Some(BTreeMap::new()));
        let out: Value =
            serde_json::from_str(&render_project(&page, |f| f.filename.clone())).unwrap();
        assert_eq!(out["meta"]["api-version"], "1.1");
        assert_eq!(out["versions"][0], "1.0");
        assert_eq!(out["files"][0]["url"], "demo-1.0.whl");
        assert_eq!(out["files"][0]["core-metadata"]["sha256"], "bb");
        assert_eq!(out["files"][1]["core-metadata"], true);
        assert_eq!(out["files"][1]["yanked"], false);
    }

    #[test]
    fn links_a_browser_would_act_on_are_dropped() {
        let base = Url::parse("http://up.example/simple/demo/").unwrap();
        let doc = br#"{"name":"demo","files":[
            {"filename":"demo-1.0.whl","url":"javascript:alert(1)","hashes":{}},
            {"filename":"demo-1.1.whl","url":"data:text/html,x","hashes":{}},
            {"filename":"<b>.whl","url":"https://files.example/b.whl","hashes":{}},
            {"filename":"demo-1.2.whl","url":"https://files.example/demo-1.2.whl","hashes":{}}]}"#;
        let page = parse_project(doc, "demo", &base).unwrap();
        let names: Vec<&str> = page.files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(names, ["demo-1.2.whl"]);
        let root =
            parse_root(br#"{"projects":[{"name":"ok"},{"name":"javascript:x"},{"name":""}]}"#)
                .unwrap();
        assert_eq!(root.projects, ["ok"]);
    }

    #[test]
    fn bad_documents_are_errors_not_panics() {
        let base = Url::parse("http://up.example/simple/demo/").unwrap();
        assert!(parse_project(b"{", "demo", &base).is_err());
        assert!(parse_project(b"[]", "demo", &base).is_err());
        assert!(parse_root(b"{\"projects\":3}").is_err());
    }
}
