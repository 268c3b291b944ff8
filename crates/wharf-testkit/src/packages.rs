//! Real, installable npm tarballs, cargo `.crate` files and Go module zips, built in memory
//! (deterministic), with the metadata each registry publishes about them: npm package documents, cargo
//! sparse-index lines, Go `.info`/`.mod` files.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

use crate::dist::{gzip_stored, sha256_hex, tar_archive, zip_stored};

/// An npm package version: a tarball with `package/package.json` and `package/index.js`.
#[derive(Clone, Debug)]
pub struct NpmPackage {
    /// `name` or `@scope/name`.
    pub name: String,
    pub version: String,
    pub dependencies: Vec<(String, String)>,
    pub tarball: Bytes,
}

impl NpmPackage {
    pub fn new(name: &str, version: &str, dependencies: &[(&str, &str)]) -> NpmPackage {
        let dependencies: Vec<(String, String)> = dependencies
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let deps: serde_json::Map<String, Value> = dependencies
            .iter()
            .map(|(n, v)| (n.clone(), Value::String(v.clone())))
            .collect();
        let manifest = json!({
            "name": name,
            "version": version,
            "main": "index.js",
            "license": "MIT",
            "dependencies": deps,
        });
        let files = vec![
            (
                "package/package.json".to_string(),
                serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
            ),
            (
                "package/index.js".to_string(),
                format!("module.exports = () => \"{name} {version}\";\n").into_bytes(),
            ),
        ];
        NpmPackage {
            name: name.to_string(),
            version: version.to_string(),
            dependencies,
            tarball: Bytes::from(gzip_stored(&tar_archive(&files))),
        }
    }

    /// `{name}-{version}.tgz`, without the scope.
    pub fn filename(&self) -> String {
        let base = self.name.rsplit('/').next().unwrap_or(&self.name);
        format!("{base}-{}.tgz", self.version)
    }

    /// The path of the package document on a registry: `/{name}`, `/@scope%2fname` for scoped packages.
    pub fn document_path(&self) -> String {
        format!("/{}", self.name.replacen('/', "%2f", 1))
    }

    /// The path of the tarball on a registry: `/{name}/-/{file}`.
    pub fn tarball_path(&self) -> String {
        format!("/{}/-/{}", self.name, self.filename())
    }

    /// `sha512-<base64>` of the tarball.
    pub fn integrity(&self) -> String {
        format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&self.tarball))
        )
    }

    /// The sha1 hex of the tarball.
    pub fn shasum(&self) -> String {
        hex::encode(sha1::Sha1::digest(&self.tarball))
    }
}

/// The package document for `versions` (all of one package), with tarball URLs under `registry` (ending in
/// `/`). `integrity` of each version is `integrity(version)`, so a test can announce a wrong one.
pub fn npm_document(
    registry: &str,
    versions: &[&NpmPackage],
    integrity: impl Fn(&NpmPackage) -> String,
) -> Bytes {
    let name = versions.first().map(|p| p.name.clone()).unwrap_or_default();
    let mut all = serde_json::Map::new();
    for p in versions {
        let deps: serde_json::Map<String, Value> = p
            .dependencies
            .iter()
            .map(|(n, v)| (n.clone(), Value::String(v.clone())))
            .collect();
        all.insert(
            p.version.clone(),
            json!({
                "name": p.name,
                "version": p.version,
                "dependencies": deps,
                "dist": {
                    "tarball": format!("{}{}", registry.trim_end_matches('/'), p.tarball_path()),
                    "integrity": integrity(p),
                    "shasum": p.shasum(),
                },
            }),
        );
    }
    let latest = versions
        .last()
        .map(|p| p.version.clone())
        .unwrap_or_default();
    Bytes::from(
        serde_json::to_vec(&json!({
            "name": name,
            "dist-tags": {"latest": latest},
            "versions": all,
        }))
        .unwrap_or_default(),
    )
}

/// A crate version as a `.crate` file (`{name}-{version}/Cargo.toml` and `src/lib.rs`).
#[derive(Clone, Debug)]
pub struct CrateFile {
    pub name: String,
    pub version: String,
    /// `(name, version requirement)` of normal dependencies.
    pub dependencies: Vec<(String, String)>,
    pub bytes: Bytes,
}

impl CrateFile {
    pub fn new(name: &str, version: &str, dependencies: &[(&str, &str)]) -> CrateFile {
        let root = format!("{name}-{version}");
        let mut manifest = format!(
            "[package]\nname = \"{name}\"\nversion = \"{version}\"\nedition = \"2021\"\n\
             description = \"test crate\"\nlicense = \"MIT\"\n\n[dependencies]\n"
        );
        for (dep, req) in dependencies {
            manifest.push_str(&format!("{dep} = \"{req}\"\n"));
        }
        let files = vec![
            (format!("{root}/Cargo.toml"), manifest.into_bytes()),
            (
                format!("{root}/src/lib.rs"),
                format!("pub fn hello() -> &'static str {{ \"{name} {version}\" }}\n").into_bytes(),
            ),
        ];
        CrateFile {
            name: name.to_string(),
            version: version.to_string(),
            dependencies: dependencies
                .iter()
                .map(|(n, r)| (n.to_string(), r.to_string()))
                .collect(),
            bytes: Bytes::from(gzip_stored(&tar_archive(&files))),
        }
    }

    /// The sha256 hex of the `.crate` file, as the index's `cksum`.
    pub fn cksum(&self) -> String {
        sha256_hex(&self.bytes)
    }

    /// This version's line in the sparse index, claiming `cksum`.
    pub fn index_line_with(&self, cksum: &str) -> String {
        let deps: Vec<Value> = self
            .dependencies
            .iter()
            .map(|(name, req)| {
                json!({"name": name, "req": req, "features": [], "optional": false,
                       "default_features": true, "target": null, "kind": "normal"})
            })
            .collect();
        json!({"name": self.name, "vers": self.version, "deps": deps, "cksum": cksum,
               "features": {}, "yanked": false})
        .to_string()
    }

    /// This version's line in the sparse index.
    pub fn index_line(&self) -> String {
        self.index_line_with(&self.cksum())
    }
}

/// The sparse-index path of a crate: `1/a`, `2/ab`, `3/a/abc`, `ab/cd/abcd...` (lowercased).
pub fn cargo_index_path(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    }
}

/// A Go module version: its `.mod`, `.info` and `.zip` as a module proxy serves them.
#[derive(Clone, Debug)]
pub struct GoModule {
    pub path: String,
    pub version: String,
    pub go_mod: String,
    pub info: String,
    pub zip: Bytes,
}

impl GoModule {
    /// A module with one package (the module root) whose `go.mod` requires `requires`.
    pub fn new(path: &str, version: &str, requires: &[(&str, &str)]) -> GoModule {
        let mut go_mod = format!("module {path}\n\ngo 1.18\n");
        if !requires.is_empty() {
            go_mod.push_str("\nrequire (\n");
            for (m, v) in requires {
                go_mod.push_str(&format!("\t{m} {v}\n"));
            }
            go_mod.push_str(")\n");
        }
        let package = path
            .rsplit('/')
            .next()
            .unwrap_or("m")
            .replace(['-', '.'], "_");
        let root = format!("{path}@{version}");
        let files = vec![
            (format!("{root}/go.mod"), go_mod.clone().into_bytes()),
            (
                format!("{root}/lib.go"),
                format!(
                    "package {package}\n\nfunc Hello() string {{ return \"{path} {version}\" }}\n"
                )
                .into_bytes(),
            ),
        ];
        GoModule {
            path: path.to_string(),
            version: version.to_string(),
            info: json!({"Version": version, "Time": "2024-01-01T00:00:00Z"}).to_string(),
            go_mod,
            zip: Bytes::from(zip_stored(&files)),
        }
    }

    /// The proxy path prefix of the module: `/{escaped path}/@v/`.
    pub fn proxy_prefix(&self) -> String {
        format!("/{}/@v/", go_escape(&self.path))
    }
}

/// Go's module-path escaping for proxies: each upper-case letter becomes `!` and its lower case.
pub fn go_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_follow_the_layout() {
        assert_eq!(cargo_index_path("a"), "1/a");
        assert_eq!(cargo_index_path("ab"), "2/ab");
        assert_eq!(cargo_index_path("abc"), "3/a/abc");
        assert_eq!(cargo_index_path("Serde"), "se/rd/serde");
        assert_eq!(go_escape("example.com/BigCo/x"), "example.com/!big!co/x");
    }

    #[test]
    fn npm_paths_and_digests() {
        let p = NpmPackage::new("@scope/pkg", "1.0.0", &[]);
        assert_eq!(p.filename(), "pkg-1.0.0.tgz");
        assert_eq!(p.document_path(), "/@scope%2fpkg");
        assert_eq!(p.tarball_path(), "/@scope/pkg/-/pkg-1.0.0.tgz");
        assert!(p.integrity().starts_with("sha512-"));
        assert_eq!(p.shasum().len(), 40);
    }
}
