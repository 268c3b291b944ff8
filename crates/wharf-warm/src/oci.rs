//! Image references and the manifests they lead to: which blobs an image (or each platform of an index)
//! needs, for warming through wharf's `/v2/` API.

use serde::Deserialize;

/// Every manifest type wharf serves, index types first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// `[registry/]name[:tag][@digest]`, as `docker pull` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// `None` for names without a registry (`alpine`, `team/app`): the repository's `docker.io` upstream.
    pub registry: Option<String>,
    pub name: String,
    /// A tag or a `sha256:` digest (the digest when both are given: it is what the image is).
    pub reference: String,
}

impl ImageRef {
    pub fn parse(text: &str) -> Option<ImageRef> {
        if text.len() > 512 || text.contains(char::is_whitespace) {
            return None;
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (text, None),
        };
        if let Some(d) = digest {
            let hex = d.strip_prefix("sha256:")?;
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
        }
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !ok {
                return None;
            }
        }
        let (registry, name) = match path.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (Some(first.to_string()), rest)
            }
            _ => (None, path),
        };
        let valid_name = !name.is_empty()
            && name.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'.' | b'_' | b'-')
                    })
            });
        if !valid_name {
            return None;
        }
        let reference = match (digest, tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        };
        Some(ImageRef {
            registry,
            name: name.to_string(),
            reference,
        })
    }

    /// `/v2/{name}/{what}/{reference}` with `?ns=` naming the registry, as containerd asks a mirror.
    pub fn path(&self, what: &str, reference: &str) -> String {
        let mut path = format!("/v2/{}/{what}/{reference}", self.name);
        if let Some(registry) = &self.registry {
            path.push_str("?ns=");
            path.push_str(registry);
        }
        path
    }
}

/// `os/arch[/variant]`, as `--platform` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(text: &str) -> Option<Platform> {
        let mut parts = text.split('/');
        let os = parts.next().filter(|s| !s.is_empty())?;
        let architecture = parts.next().filter(|s| !s.is_empty())?;
        let variant = parts.next().map(str::to_string);
        if parts.next().is_some() {
            return None;
        }
        Some(Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant,
        })
    }

    fn matches(&self, p: &ManifestPlatform) -> bool {
        self.os == p.os
            && self.architecture == p.architecture
            && (self.variant.is_none() || self.variant == p.variant)
    }
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    platform: Option<ManifestPlatform>,
}

#[derive(Deserialize)]
struct ManifestPlatform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

/// What one manifest leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Contents {
    /// An index: the digests of the manifests to fetch next (the platform's, or every platform's; build
    /// attestations, `unknown/unknown`, are left out).
    Index(Vec<String>),
    /// An image: its config and layer blobs.
    Image(Vec<String>),
}

pub fn contents(body: &[u8], platform: Option<&Platform>) -> Result<Contents, String> {
    let m: Manifest =
        serde_json::from_slice(body).map_err(|e| format!("not a manifest wharf can read: {e}"))?;
    let valid = |d: &str| {
        d.strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    if !m.manifests.is_empty() {
        let chosen: Vec<String> = m
            .manifests
            .into_iter()
            .filter(|d| match (&d.platform, platform) {
                (Some(p), _) if p.os == "unknown" => false,
                (Some(p), Some(want)) => want.matches(p),
                (None, Some(_)) => false,
                (_, None) => true,
            })
            .map(|d| d.digest)
            .collect();
        if let Some(bad) = chosen.iter().find(|d| !valid(d)) {
            return Err(format!("the index names `{bad}`, not a sha256 digest"));
        }
        return Ok(Contents::Index(chosen));
    }
    let blobs: Vec<String> = m
        .config
        .into_iter()
        .chain(m.layers)
        .map(|d| d.digest)
        .collect();
    if let Some(bad) = blobs.iter().find(|d| !valid(d)) {
        return Err(format!("the manifest names `{bad}`, not a sha256 digest"));
    }
    Ok(Contents::Image(blobs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_registry_name_and_tag_or_digest() {
        let r = ImageRef::parse("127.0.0.1:5000/team/app:1.4").unwrap();
        assert_eq!(r.registry.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!((r.name.as_str(), r.reference.as_str()), ("team/app", "1.4"));
        assert_eq!(
            r.path("manifests", "1.4"),
            "/v2/team/app/manifests/1.4?ns=127.0.0.1:5000"
        );
        let r = ImageRef::parse("alpine").unwrap();
        assert_eq!((r.registry, r.reference.as_str()), (None, "latest"));
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("localhost/x:1@{digest}")).unwrap();
        assert_eq!(r.reference, digest);
        for bad in ["", "Upper/Case", "a:b:c d", "x@sha256:12", "a//b", "x:"] {
            assert!(ImageRef::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn an_index_yields_the_platforms_asked_for_without_attestations() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = serde_json::json!({"manifests": [
            {"digest": d('a'), "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": d('b'), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": d('c'), "platform": {"os": "unknown", "architecture": "unknown"}},
        ]})
        .to_string();
        assert_eq!(
            contents(index.as_bytes(), None).unwrap(),
            Contents::Index(vec![d('a'), d('b')])
        );
        let arm = Platform::parse("linux/arm64").unwrap();
        assert_eq!(
            contents(index.as_bytes(), Some(&arm)).unwrap(),
            Contents::Index(vec![d('b')])
        );
        let image =
            serde_json::json!({"config": {"digest": d('e')}, "layers": [{"digest": d('f')}]})
                .to_string();
        assert_eq!(
            contents(image.as_bytes(), None).unwrap(),
            Contents::Image(vec![d('e'), d('f')])
        );
        let evil = serde_json::json!({"layers": [{"digest": "sha256:../../x"}]}).to_string();
        assert!(contents(evil.as_bytes(), None).is_err());
        assert!(Platform::parse("linux").is_none());
    }
}
