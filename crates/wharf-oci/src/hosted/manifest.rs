//! What a pushed manifest references: the blobs (config, layers, an index's manifests) that must be stored
//! before it is accepted, its `subject` (for the referrers API) and its artifact type.

use serde_json::Value;

/// Most descriptors one manifest may reference (bounds the record kept per manifest).
pub(crate) const MAX_REFS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ref {
    pub hex: String,
    pub size: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub refs: Vec<Ref>,
    /// The hex of `subject.digest`.
    pub subject: Option<String>,
    /// `artifactType`, else an image manifest's `config.mediaType` (what the referrers API reports).
    pub artifact_type: Option<String>,
    /// `annotations`, as JSON text.
    pub annotations: Option<String>,
}

impl Parsed {
    /// The references as `hex:size,...` (kept in the manifest's record for retention).
    pub(crate) fn refs_header(&self) -> String {
        self.refs
            .iter()
            .map(|r| format!("{}:{}", r.hex, r.size))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Parses `hex:size,...` back.
pub(crate) fn refs_from_header(text: &str) -> Vec<Ref> {
    text.split(',')
        .filter_map(|item| {
            let (hex, size) = item.split_once(':')?;
            Some(Ref {
                hex: hex.to_string(),
                size: size.parse().ok()?,
            })
        })
        .collect()
}

/// Checks a manifest or index body (schema version 2, JSON object, sha256 descriptors) and lists what it
/// references. Layers that name external `urls` (Windows foreign layers) are not required to be stored.
pub(crate) fn parse(body: &[u8]) -> Result<Parsed, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    if !doc.is_object() {
        return Err("the manifest is not a JSON object".into());
    }
    if doc["schemaVersion"].as_u64() != Some(2) {
        return Err("only schemaVersion 2 manifests (OCI, Docker schema 2) are accepted".into());
    }
    let mut parsed = Parsed::default();
    let mut descriptors: Vec<&Value> = Vec::new();
    if doc.get("config").is_some() {
        descriptors.push(&doc["config"]);
    }
    for list in ["layers", "manifests", "blobs"] {
        match doc.get(list) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => descriptors.extend(items.iter()),
            Some(_) => return Err(format!("`{list}` must be a list of descriptors")),
        }
    }
    if descriptors.len() > MAX_REFS {
        return Err(format!(
            "the manifest has {} descriptors; at most {MAX_REFS} are accepted",
            descriptors.len()
        ));
    }
    for d in descriptors {
        let (hex, size) = descriptor(d)?;
        let external = d["urls"].as_array().is_some_and(|u| !u.is_empty());
        if !external && !parsed.refs.iter().any(|r| r.hex == hex) {
            parsed.refs.push(Ref { hex, size });
        }
    }
    if let Some(subject) = doc.get("subject").filter(|s| !s.is_null()) {
        parsed.subject = Some(descriptor(subject)?.0);
    }
    parsed.artifact_type = doc["artifactType"]
        .as_str()
        .or_else(|| doc["config"]["mediaType"].as_str())
        .filter(|t| t.len() <= 255)
        .map(str::to_string);
    if let Some(a) = doc.get("annotations").filter(|a| a.is_object()) {
        parsed.annotations = Some(a.to_string());
    }
    Ok(parsed)
}

fn descriptor(d: &Value) -> Result<(String, u64), String> {
    let digest = d["digest"].as_str().ok_or("a descriptor has no `digest`")?;
    let hex = crate::route::digest_hex(digest).map_err(|r| r.message)?;
    let size = d["size"]
        .as_u64()
        .ok_or_else(|| format!("descriptor {digest} has no `size`"))?;
    Ok((hex, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(c: char) -> String {
        c.to_string().repeat(64)
    }

    #[test]
    fn image_manifests_list_config_and_layers() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":2}},
            "layers":[{{"digest":"sha256:{}","size":3}},{{"digest":"sha256:{}","size":3,"urls":["http://x"]}}]}}"#,
            h('a'),
            h('b'),
            h('c')
        );
        let p = parse(body.as_bytes()).unwrap();
        assert_eq!(
            p.refs,
            vec![
                Ref {
                    hex: h('a'),
                    size: 2
                },
                Ref {
                    hex: h('b'),
                    size: 3
                }
            ]
        );
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert_eq!(refs_from_header(&p.refs_header()), p.refs);
    }

    #[test]
    fn buildkit_cache_indexes_and_subjects_parse() {
        // BuildKit's cache index lists layers and its cache config under `manifests`, without platforms.
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
            "manifests":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{}","size":9}},
            {{"mediaType":"application/vnd.buildkit.cacheconfig.v0","digest":"sha256:{}","size":4}}],
            "subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":1}},
            "artifactType":"application/x.test","annotations":{{"k":"v"}}}}"#,
            h('a'),
            h('b'),
            h('c')
        );
        let p = parse(body.as_bytes()).unwrap();
        assert_eq!(p.refs.len(), 2);
        assert_eq!(p.subject, Some(h('c')));
        assert_eq!(p.artifact_type.as_deref(), Some("application/x.test"));
        assert_eq!(p.annotations.as_deref(), Some(r#"{"k":"v"}"#));
    }

    #[test]
    fn bad_manifests_are_refused() {
        for bad in [
            "not json",
            "[]",
            r#"{"schemaVersion":1}"#,
            r#"{"schemaVersion":2,"layers":{}}"#,
            r#"{"schemaVersion":2,"layers":[{"digest":"md5:00","size":1}]}"#,
            r#"{"schemaVersion":2,"layers":[{"digest":"sha256:aa","size":1}]}"#,
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..MAX_REFS + 1)
            .map(|_| format!(r#"{{"digest":"sha256:{}","size":1}}"#, h('a')))
            .collect();
        let body = format!(r#"{{"schemaVersion":2,"layers":[{}]}}"#, many.join(","));
        assert!(parse(body.as_bytes()).unwrap_err().contains("at most"));
    }
}
