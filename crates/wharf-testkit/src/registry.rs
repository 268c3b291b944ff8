//! Container images for tests: [`OciImage`] writes a multi-arch image (an index over `linux/amd64` and
//! `linux/arm64`, real tar layers containerd can unpack, one layer shared) as an OCI layout, and
//! [`DockerRegistry`] runs Debian's `docker-registry` (the distribution registry) on loopback, optionally
//! behind `htpasswd` credentials, seeded with `skopeo copy` and reporting every request from its access log.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::dist::{gzip_stored, sha256_hex, tar_archive};

pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// One platform's manifest of an [`OciImage`].
#[derive(Debug, Clone)]
pub struct PlatformImage {
    pub arch: String,
    pub manifest_digest: String,
    pub config_digest: String,
    /// Layer digests, the shared one first.
    pub layers: Vec<String>,
}

/// A multi-arch image written as an OCI layout, with tag `tag`.
#[derive(Debug, Clone)]
pub struct OciImage {
    pub layout: PathBuf,
    pub tag: String,
    pub index_digest: String,
    pub platforms: Vec<PlatformImage>,
}

impl OciImage {
    /// Writes the image into `dir/layout-<seed>`: platforms amd64 and arm64, each with the shared layer
    /// and a layer of its own, every layer a tar of one file of `layer_size` bytes derived from `seed`.
    ///
    /// # Panics
    /// When the layout cannot be written.
    pub fn multi_arch(dir: &Path, tag: &str, layer_size: usize, seed: u64) -> OciImage {
        let layout = dir.join(format!("layout-{seed}"));
        std::fs::create_dir_all(layout.join("blobs/sha256")).expect("mkdir layout");
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("oci-layout");
        let layer = |name: &str, seed: u64| {
            let tar = tar_archive(&[(name.to_string(), pseudo_random(layer_size, seed))]);
            let diff_id = format!("sha256:{}", sha256_hex(&tar));
            (gzip_stored(&tar), diff_id)
        };
        let shared = layer("shared.bin", seed);
        let mut platforms = Vec::new();
        let mut entries = Vec::new();
        for (n, arch) in ["amd64", "arm64"].into_iter().enumerate() {
            let own = layer(&format!("{arch}.bin"), seed.wrapping_mul(10) + n as u64 + 1);
            let layers = [&shared, &own];
            let config = json!({
                "architecture": arch, "os": "linux",
                "config": {"Entrypoint": ["/none"]},
                "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(_, d)| d).collect::<Vec<_>>()},
            })
            .to_string();
            let config_digest = put_blob(&layout, config.as_bytes());
            let mut layer_digests = Vec::new();
            let mut descriptors = Vec::new();
            for (gz, _) in layers {
                let digest = put_blob(&layout, gz);
                descriptors.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": gz.len()}));
                layer_digests.push(digest);
            }
            let manifest = json!({
                "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
                "layers": descriptors,
            })
            .to_string();
            let manifest_digest = put_blob(&layout, manifest.as_bytes());
            entries.push(json!({"mediaType": MANIFEST_TYPE, "digest": manifest_digest, "size": manifest.len(),
                                "platform": {"architecture": arch, "os": "linux"}}));
            platforms.push(PlatformImage {
                arch: arch.to_string(),
                manifest_digest,
                config_digest,
                layers: layer_digests,
            });
        }
        let index =
            json!({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": entries}).to_string();
        let index_digest = put_blob(&layout, index.as_bytes());
        let top = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": INDEX_TYPE, "digest": index_digest, "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }]});
        std::fs::write(layout.join("index.json"), top.to_string()).expect("index.json");
        OciImage {
            layout,
            tag: tag.to_string(),
            index_digest,
            platforms,
        }
    }

    /// The platform `arch`.
    ///
    /// # Panics
    /// When the image has no such platform.
    pub fn platform(&self, arch: &str) -> &PlatformImage {
        self.platforms
            .iter()
            .find(|p| p.arch == arch)
            .unwrap_or_else(|| panic!("no platform {arch}"))
    }

    /// Every blob fetched by digest (`/blobs/`): configs and layers, each once.
    pub fn blobs(&self) -> BTreeSet<String> {
        self.platforms
            .iter()
            .flat_map(|p| std::iter::once(p.config_digest.clone()).chain(p.layers.clone()))
            .collect()
    }

    /// Blobs only platform `arch` uses.
    pub fn blobs_only_of(&self, arch: &str) -> BTreeSet<String> {
        let others: BTreeSet<String> = self
            .platforms
            .iter()
            .filter(|p| p.arch != arch)
            .flat_map(|p| std::iter::once(p.config_digest.clone()).chain(p.layers.clone()))
            .collect();
        let own = self.platform(arch);
        std::iter::once(own.config_digest.clone())
            .chain(own.layers.clone())
            .filter(|d| !others.contains(d))
            .collect()
    }
}

fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let hex = sha256_hex(bytes);
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).expect("write blob");
    format!("sha256:{hex}")
}

/// `len` deterministic bytes from `seed` (xorshift), incompressible enough to look like a real layer.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// One line of the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub method: String,
    /// Path and query, as requested.
    pub path: String,
    pub status: u16,
    pub user_agent: String,
}

impl Access {
    /// Parses a combined-log-format line: `addr - user [time] "METHOD path HTTP/1.1" status size "ref" "ua"`.
    pub fn parse(line: &str) -> Option<Access> {
        let (_, rest) = line.split_once("] \"")?;
        let (request, rest) = rest.split_once("\" ")?;
        let mut parts = request.split(' ');
        let method = parts.next()?.to_string();
        let path = parts.next()?.to_string();
        let status = rest.split(' ').next()?.parse().ok()?;
        let user_agent = rest
            .trim_end()
            .strip_suffix('"')?
            .rsplit_once('"')?
            .1
            .to_string();
        Some(Access {
            method,
            path,
            status,
            user_agent,
        })
    }
}

/// `docker-registry` on 127.0.0.1, storing in a directory of the caller's.
pub struct DockerRegistry {
    child: Child,
    pub addr: SocketAddr,
    access: Arc<Mutex<Vec<Access>>>,
    /// `user:password` for pushing when the registry wants credentials.
    credentials: Option<String>,
}

impl DockerRegistry {
    /// Starts an open registry storing under `dir` and waits (at most 15 s) until it listens.
    pub fn start(dir: &Path) -> DockerRegistry {
        DockerRegistry::start_inner(dir, None)
    }

    /// Starts a registry that wants `user:password` (HTTP Basic, checked against an `htpasswd` file holding
    /// `bcrypt_hash` of the password).
    pub fn start_private(
        dir: &Path,
        user: &str,
        password: &str,
        bcrypt_hash: &str,
    ) -> DockerRegistry {
        DockerRegistry::start_inner(
            dir,
            Some((
                format!("{user}:{password}"),
                format!("{user}:{bcrypt_hash}\n"),
            )),
        )
    }

    fn start_inner(dir: &Path, auth: Option<(String, String)>) -> DockerRegistry {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let root = dir.join(format!("registry-{}", addr.port()));
        std::fs::create_dir_all(&root).expect("mkdir registry");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            root.join("data").display()
        );
        let credentials = auth.map(|(credentials, htpasswd)| {
            let file = root.join("htpasswd");
            std::fs::write(&file, htpasswd).expect("htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: wharf-test\n    path: {}\n",
                file.display()
            ));
            credentials
        });
        let config_path = root.join("config.yml");
        std::fs::write(&config_path, config).expect("registry config");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn docker-registry");
        let access = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = access.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(record) = Access::parse(&line) {
                    sink.lock().expect("lock").push(record);
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        DockerRegistry {
            child,
            addr,
            access,
            credentials,
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Pushes every platform of `image` as `name:tag` with skopeo, digests preserved.
    ///
    /// # Panics
    /// When skopeo fails.
    pub fn push(&self, image: &OciImage, name: &str, tag: &str) {
        self.push_layout(&image.layout, &image.tag, name, tag);
    }

    /// Pushes the image tagged `layout_tag` in the OCI layout at `layout` as `name:tag`.
    ///
    /// # Panics
    /// When skopeo fails.
    pub fn push_layout(&self, layout: &Path, layout_tag: &str, name: &str, tag: &str) {
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]);
        if let Some(credentials) = &self.credentials {
            cmd.arg("--dest-creds").arg(credentials);
        }
        let out = cmd
            .arg(format!("oci:{}:{layout_tag}", layout.display()))
            .arg(format!("docker://{}/{name}:{tag}", self.addr))
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy into the registry failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every request logged so far whose user agent starts with `agent` (wharf's is `wharf/<version>`),
    /// as `METHOD path`. The registry logs a request once it has answered it.
    pub fn requests_from(&self, agent: &str) -> Vec<String> {
        self.access
            .lock()
            .expect("lock")
            .iter()
            .filter(|a| a.user_agent.starts_with(agent))
            .map(|a| format!("{} {}", a.method, a.path))
            .collect()
    }

    /// Every request logged so far.
    pub fn access_log(&self) -> Vec<Access> {
        self.access.lock().expect("lock").clone()
    }

    /// Kills the registry (its port then refuses connections).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_lines_parse() {
        let line = r#"127.0.0.1 - - [01/Dec/2026:18:30:49 +0000] "GET /v2/a/b/manifests/1?ns=x HTTP/1.1" 404 91 "" "wharf/0.1.0""#;
        assert_eq!(
            Access::parse(line),
            Some(Access {
                method: "GET".into(),
                path: "/v2/a/b/manifests/1?ns=x".into(),
                status: 404,
                user_agent: "wharf/0.1.0".into(),
            })
        );
        assert_eq!(Access::parse("time=\"x\" level=error msg=\"y\""), None);
    }

    #[test]
    fn image_layers_are_tars_with_matching_diff_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = OciImage::multi_arch(dir.path(), "1", 1000, 7);
        assert_eq!(image.blobs().len(), 5, "2 configs, 1 shared + 2 own layers");
        assert_eq!(image.blobs_only_of("arm64").len(), 2);
        let amd64 = image.platform("amd64");
        let blob = |d: &str| {
            std::fs::read(
                image
                    .layout
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:")),
            )
            .expect("blob")
        };
        let config: serde_json::Value =
            serde_json::from_slice(&blob(&amd64.config_digest)).expect("config");
        let gz = blob(&amd64.layers[1]);
        // Stored deflate blocks: the tar follows the 10-byte gzip header and a 5-byte block header.
        let tar = &gz[15..gz.len() - 8];
        assert_eq!(&tar[..9], b"amd64.bin");
        assert_eq!(
            config["rootfs"]["diff_ids"][1],
            format!("sha256:{}", sha256_hex(tar))
        );
    }
}
