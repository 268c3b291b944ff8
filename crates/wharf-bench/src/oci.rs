//! A read-only OCI registry upstream for the image scenario: one generated image (`bench/app:1`, a config and
//! `layers` layers of random bytes) held in memory, served over the distribution pull API with
//! `Docker-Content-Digest`, optional per-download bandwidth cap and per-request latency, and counters of
//! requests and body bytes sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The repository name and tag of the generated image.
pub const IMAGE_NAME: &str = "bench/app";
pub const IMAGE_TAG: &str = "1";
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const PACE_CHUNK: usize = 256 * 1024;

/// Counters and knobs of a running [`router`].
#[derive(Default)]
pub struct OciStats {
    pub requests: AtomicU64,
    pub manifest_requests: AtomicU64,
    pub blob_gets: AtomicU64,
    /// Body bytes of blob downloads sent so far.
    pub blob_bytes: AtomicU64,
}

struct Image {
    manifest: Bytes,
    manifest_digest: String,
    blobs: HashMap<String, Bytes>,
}

#[derive(Clone)]
struct Shared {
    image: Arc<Image>,
    stats: Arc<OciStats>,
    delay: Duration,
    rate: Option<u64>,
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `len` pseudo-random bytes from `seed` (xorshift; incompressible enough for a benchmark, and fast).
fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn generate(layers: usize, layer_bytes: usize) -> Image {
    let mut blobs = HashMap::new();
    let mut descs = Vec::new();
    for i in 0..layers {
        let layer = random_bytes(layer_bytes, i as u64 + 1);
        let digest = digest_of(&layer);
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": layer.len()}));
        blobs.insert(digest, layer);
    }
    let diff_ids: Vec<_> = descs.iter().map(|d| d["digest"].clone()).collect();
    let config = Bytes::from(
        serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
                                   "rootfs": {"type": "layers", "diff_ids": diff_ids}}))
        .expect("json"),
    );
    let config_digest = digest_of(&config);
    let manifest = Bytes::from(
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": config.len()},
            "layers": descs}))
        .expect("json"),
    );
    blobs.insert(config_digest, config);
    Image {
        manifest_digest: digest_of(&manifest),
        manifest,
        blobs,
    }
}

/// The registry's routes for an image of `layers` layers of `layer_bytes` each; `delay` before every
/// answer, `rate` bytes/s per blob download.
pub fn router(
    layers: usize,
    layer_bytes: usize,
    delay: Duration,
    rate: Option<u64>,
    stats: Arc<OciStats>,
) -> Router {
    let shared = Shared {
        image: Arc::new(generate(layers, layer_bytes)),
        stats,
        delay,
        rate,
    };
    Router::new()
        .route("/v2/", get(version))
        .route("/v2/{*rest}", get(serve))
        .with_state(shared)
}

async fn version() -> impl IntoResponse {
    ([("Docker-Distribution-API-Version", "registry/2.0")], "{}")
}

fn not_found(code: &str) -> Response {
    let body = json!({"errors": [{"code": code, "message": "not found"}]}).to_string();
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn serve(State(s): State<Shared>, method: Method, Path(rest): Path<String>) -> Response {
    s.stats.requests.fetch_add(1, Ordering::Relaxed);
    if !s.delay.is_zero() {
        tokio::time::sleep(s.delay).await;
    }
    let Some(rest) = rest
        .strip_prefix(IMAGE_NAME)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return not_found("NAME_UNKNOWN");
    };
    let (kind, reference) = rest.split_once('/').unwrap_or((rest, ""));
    let (bytes, content_type, digest) = match kind {
        "manifests" => {
            s.stats.manifest_requests.fetch_add(1, Ordering::Relaxed);
            if reference != IMAGE_TAG && reference != s.image.manifest_digest {
                return not_found("MANIFEST_UNKNOWN");
            }
            (
                s.image.manifest.clone(),
                MANIFEST_TYPE,
                s.image.manifest_digest.clone(),
            )
        }
        "blobs" => match s.image.blobs.get(reference) {
            Some(b) => (b.clone(), "application/octet-stream", reference.to_string()),
            None => return not_found("BLOB_UNKNOWN"),
        },
        _ => return not_found("UNSUPPORTED"),
    };
    let len = bytes.len();
    let head = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CONTENT_LENGTH, HeaderValue::from(len)),
        (
            header::HeaderName::from_static("docker-content-digest"),
            HeaderValue::from_str(&digest).expect("digest is ASCII"),
        ),
    ];
    if method == Method::HEAD {
        return (head, Body::empty()).into_response();
    }
    let blob = kind == "blobs";
    if blob {
        s.stats.blob_gets.fetch_add(1, Ordering::Relaxed);
    }
    let (stats, rate) = (s.stats.clone(), s.rate);
    let start = tokio::time::Instant::now();
    let body = futures_util::stream::iter((0..len).step_by(PACE_CHUNK)).then(move |from| {
        let (bytes, stats) = (bytes.clone(), stats.clone());
        async move {
            if let Some(bps) = rate {
                let due = Duration::from_secs_f64(from as f64 / bps as f64);
                tokio::time::sleep_until(start + due).await;
            }
            let chunk = bytes.slice(from..(from + PACE_CHUNK).min(bytes.len()));
            if blob {
                stats
                    .blob_bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            Ok::<_, std::io::Error>(chunk)
        }
    });
    (head, Body::from_stream(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_image_names_its_blobs_by_their_digests() {
        let image = generate(2, 1000);
        let manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(image.manifest_digest, digest_of(&image.manifest));
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        for d in layers.iter().chain([&manifest["config"]]) {
            let blob = &image.blobs[d["digest"].as_str().unwrap()];
            assert_eq!(digest_of(blob), d["digest"].as_str().unwrap());
            assert_eq!(blob.len() as u64, d["size"].as_u64().unwrap());
        }
        assert_ne!(layers[0]["digest"], layers[1]["digest"]);
    }
}
