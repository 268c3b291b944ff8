//! The shared tier: an S3-compatible bucket that several replicas use together, beside each replica's local tier.
//!
//! Layout under the configured prefix:
//! - `blobs/sha256/<hex>`: a blob. It is uploaded from the committed local copy, hashed again while being read,
//!   as one PUT or one multipart upload: S3 makes the object visible only when the PUT or the multipart
//!   completion succeeds, and a hash mismatch aborts the upload, so nothing partial or unverified ever sits under
//!   this key. The key is the content's digest, so two replicas uploading it at once write the same bytes.
//! - `entries/<repo>/<sha256 of key>.json`: [`SharedEntry`] (the request key travels inside), written only after
//!   its blob is in the bucket. Last writer wins; readers judge freshness by the entry's `fetched_at`.
//! - `markers/<repo>/<dir...>/<name>`: an empty object written after an entry object, for formats that find
//!   entries by a name prefix (the Actions cache's restore keys): listed with a start offset, so one request
//!   finds the names under a prefix, each with its time of writing. The name says which entry it stands for;
//!   the entry object stays the record.
//!
//! Every failure here is soft: the caller logs it, counts it and carries on with the local tier and upstream. A
//! failed request marks the bucket unreachable for [`RETRY_AFTER`], so a down bucket costs one failed request per
//! interval rather than one per cache miss.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Digest, Entry, Sha256Writer, StoreError, TempBlob};

/// How long the bucket is skipped after a failed request.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Bound on small requests: entry reads and writes, `HEAD`.
const SMALL_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the wait for each chunk of a blob download, and for each buffered write of an upload.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// Entry objects are small JSON records; anything larger is not one of ours.
const MAX_ENTRY_BYTES: u64 = 1024 * 1024;
/// Blobs above this size are uploaded with a multipart upload, in parts of this size.
const UPLOAD_PART: usize = 8 * 1024 * 1024;
/// Bytes gathered before one write to the local temporary file during a download.
const WRITE_BATCH: usize = 256 * 1024;

/// Where the shared bucket is; built from `storage.s3`. Credentials come from the environment (see the README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedOptions {
    pub bucket: String,
    /// Custom endpoint (an in-cluster S3-compatible server); `None` = AWS's endpoint for the region.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Key prefix; empty, or ends with `/`.
    pub prefix: String,
    pub path_style: bool,
    pub allow_http: bool,
}

/// Counters of the shared tier, for `/status` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SharedUsage {
    /// False from a failed request until the next one succeeds.
    pub reachable: bool,
    /// Entries (and their blobs) taken from the bucket instead of upstream.
    pub hits: u64,
    pub blob_downloads: u64,
    pub blob_uploads: u64,
    pub entry_uploads: u64,
    /// Failed or rejected reads (unreachable, timed out, wrong digest): the request went on to upstream.
    pub read_errors: u64,
    /// Failed writes: the client still got its verified bytes, other replicas will fetch upstream.
    pub write_errors: u64,
}

/// The record stored per entry object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SharedEntry {
    pub repo: String,
    pub key: String,
    pub entry: Entry,
}

/// A shared-tier failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SharedError {
    /// The bucket could not be reached or answered with an error: it is skipped for a while.
    #[error("{action} {path}: {message}")]
    Remote {
        action: &'static str,
        path: String,
        message: String,
    },
    /// The bucket answered, but with something wharf does not accept (wrong digest or size, bad JSON).
    #[error("{path}: {message}")]
    Rejected { path: String, message: String },
    #[error("{0}")]
    Local(#[from] StoreError),
}

pub(crate) struct SharedTier {
    client: Arc<dyn ObjectStore>,
    prefix: Vec<String>,
    down_until: AtomicU64,
    reachable: AtomicBool,
    hits: AtomicU64,
    blob_downloads: AtomicU64,
    blob_uploads: AtomicU64,
    entry_uploads: AtomicU64,
    read_errors: AtomicU64,
    write_errors: AtomicU64,
}

impl SharedTier {
    /// Builds the client (no request is made). Credentials: the standard `AWS_*` variables, web identity
    /// (IRSA), container credentials, then instance metadata; the config's values override `AWS_*` ones.
    pub(crate) fn open(options: &SharedOptions) -> Result<SharedTier, StoreError> {
        SharedTier::open_with(options, AmazonS3Builder::from_env())
    }

    /// [`SharedTier::open`] starting from `builder` instead of the environment.
    pub(crate) fn open_with(
        options: &SharedOptions,
        builder: AmazonS3Builder,
    ) -> Result<SharedTier, StoreError> {
        // The HTTP client uses rustls without a bundled provider: make ring the process default if nothing is.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = builder
            .with_bucket_name(&options.bucket)
            .with_allow_http(options.allow_http)
            .with_virtual_hosted_style_request(!options.path_style)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: 2,
                retry_timeout: SMALL_REQUEST_TIMEOUT,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(options.allow_http)
                    .with_connect_timeout(Duration::from_secs(3))
                    // Whole-request timeouts would cut long blob transfers; chunks are bounded here instead.
                    .with_timeout_disabled(),
            );
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        let client = builder.build().map_err(|e| StoreError::Shared {
            message: format!("bucket {}: {e}", options.bucket),
        })?;
        Ok(SharedTier {
            client: Arc::new(client),
            prefix: options
                .prefix
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            down_until: AtomicU64::new(0),
            reachable: AtomicBool::new(true),
            hits: AtomicU64::new(0),
            blob_downloads: AtomicU64::new(0),
            blob_uploads: AtomicU64::new(0),
            entry_uploads: AtomicU64::new(0),
            read_errors: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        })
    }

    pub(crate) fn usage(&self) -> SharedUsage {
        SharedUsage {
            reachable: self.reachable.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            blob_downloads: self.blob_downloads.load(Ordering::Relaxed),
            blob_uploads: self.blob_uploads.load(Ordering::Relaxed),
            entry_uploads: self.entry_uploads.load(Ordering::Relaxed),
            read_errors: self.read_errors.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
        }
    }

    /// Whether the bucket should be tried now (false for a while after a failed request).
    pub(crate) fn available(&self) -> bool {
        crate::now_ms() >= self.down_until.load(Ordering::Relaxed)
    }

    /// Counts a failure; a remote one also marks the bucket unreachable for [`RETRY_AFTER`].
    pub(crate) fn record_failure(&self, error: &SharedError, write: bool) {
        let counter = if write {
            &self.write_errors
        } else {
            &self.read_errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if matches!(error, SharedError::Remote { .. }) {
            self.reachable.store(false, Ordering::Relaxed);
            self.down_until.store(
                crate::now_ms() + RETRY_AFTER.as_millis() as u64,
                Ordering::Relaxed,
            );
        }
    }

    pub(crate) fn record_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    fn reached(&self) {
        self.reachable.store(true, Ordering::Relaxed);
    }

    fn path(&self, tail: &[&str]) -> ObjectPath {
        ObjectPath::from_iter(
            self.prefix
                .iter()
                .map(String::as_str)
                .chain(tail.iter().copied()),
        )
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> ObjectPath {
        self.path(&["blobs", "sha256", &digest.to_hex()])
    }

    pub(crate) fn entry_path(&self, repo: &str, key: &str) -> ObjectPath {
        let name = format!("{}.json", Digest::of(key.as_bytes()).to_hex());
        self.path(&["entries", repo, &name])
    }

    /// The entry another replica shared for `key`, if any.
    pub(crate) async fn read_entry(
        &self,
        repo: &str,
        key: &str,
    ) -> Result<Option<Entry>, SharedError> {
        let path = self.entry_path(repo, key);
        let fetched = tokio::time::timeout(SMALL_REQUEST_TIMEOUT, async {
            let result = self.client.get(&path).await?;
            if result.meta.size > MAX_ENTRY_BYTES {
                return Ok(None);
            }
            result.bytes().await.map(Some)
        })
        .await;
        let bytes = match fetched {
            Err(_) => return Err(remote("read", &path, "timed out")),
            Ok(Err(object_store::Error::NotFound { .. })) => {
                self.reached();
                return Ok(None);
            }
            Ok(Err(e)) => return Err(remote("read", &path, e)),
            Ok(Ok(None)) => return Err(rejected(&path, "entry object is too large")),
            Ok(Ok(Some(bytes))) => bytes,
        };
        self.reached();
        let shared: SharedEntry = serde_json::from_slice(&bytes)
            .map_err(|e| rejected(&path, format!("unreadable entry: {e}")))?;
        if shared.repo != repo || shared.key != key {
            return Err(rejected(&path, "entry names another key"));
        }
        Ok(Some(shared.entry))
    }

    /// Downloads blob `digest` into `temp` and checks its size and digest. `Ok(None)`: the bucket does not have
    /// it (expired by a lifecycle rule, say). On any error `temp` is dropped, which deletes it. An object whose
    /// content does not match its name is deleted (best effort), so that the next upload replaces it.
    pub(crate) async fn download_blob(
        &self,
        digest: &Digest,
        size: u64,
        temp: TempBlob,
    ) -> Result<Option<TempBlob>, SharedError> {
        let result = self.fetch_blob(digest, size, temp).await;
        if let Err(SharedError::Rejected { .. }) = &result {
            let path = self.blob_path(digest);
            let _ = tokio::time::timeout(SMALL_REQUEST_TIMEOUT, self.client.delete(&path)).await;
        }
        result
    }

    async fn fetch_blob(
        &self,
        digest: &Digest,
        size: u64,
        mut temp: TempBlob,
    ) -> Result<Option<TempBlob>, SharedError> {
        let path = self.blob_path(digest);
        let result = match tokio::time::timeout(SMALL_REQUEST_TIMEOUT, self.client.get(&path)).await
        {
            Err(_) => return Err(remote("read", &path, "timed out")),
            Ok(Err(object_store::Error::NotFound { .. })) => {
                self.reached();
                return Ok(None);
            }
            Ok(Err(e)) => return Err(remote("read", &path, e)),
            Ok(Ok(result)) => result,
        };
        self.reached();
        if result.meta.size != size {
            return Err(rejected(
                &path,
                format!(
                    "object has {} bytes, the entry says {size}",
                    result.meta.size
                ),
            ));
        }
        let mut stream = result.into_stream();
        let mut sha = Sha256Writer::default();
        let mut pending = Vec::with_capacity(WRITE_BATCH * 2);
        loop {
            let chunk = match tokio::time::timeout(CHUNK_TIMEOUT, stream.next()).await {
                Err(_) => return Err(remote("read", &path, "stalled")),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(remote("read", &path, e)),
                Ok(Some(Ok(chunk))) => chunk,
            };
            sha.update(&chunk);
            if sha.len() > size {
                return Err(rejected(&path, "object is longer than its entry says"));
            }
            pending.extend_from_slice(&chunk);
            if pending.len() >= WRITE_BATCH {
                (temp, pending) = write_local(temp, pending).await?;
            }
        }
        if !pending.is_empty() {
            (temp, _) = write_local(temp, pending).await?;
        }
        if sha.len() != size {
            return Err(rejected(
                &path,
                format!("object ended after {} of {size} bytes", sha.len()),
            ));
        }
        let actual = sha.finish();
        if actual != *digest {
            return Err(rejected(
                &path,
                format!("content hashes to {actual}, not to its name"),
            ));
        }
        self.blob_downloads.fetch_add(1, Ordering::Relaxed);
        Ok(Some(temp))
    }

    /// Uploads the local file `local` as blob `digest` unless the bucket already has it. The bytes are hashed
    /// while uploading; a mismatch aborts the upload, so the final key never holds unverified content.
    pub(crate) async fn upload_blob(
        &self,
        digest: &Digest,
        size: u64,
        local: PathBuf,
    ) -> Result<(), SharedError> {
        let path = self.blob_path(digest);
        match tokio::time::timeout(SMALL_REQUEST_TIMEOUT, self.client.head(&path)).await {
            Err(_) => return Err(remote("check", &path, "timed out")),
            Ok(Ok(meta)) if meta.size == size => {
                self.reached();
                return Ok(());
            }
            Ok(Ok(_)) | Ok(Err(object_store::Error::NotFound { .. })) => {}
            Ok(Err(e)) => return Err(remote("check", &path, e)),
        }
        let mut file = tokio::fs::File::open(&local)
            .await
            .map_err(|e| StoreError::io(&local, "open", e))?;
        let mut writer = BufWriter::with_capacity(self.client.clone(), path.clone(), UPLOAD_PART);
        let copied = async {
            let mut sha = Sha256Writer::default();
            let mut buf = vec![0u8; WRITE_BATCH];
            loop {
                let n = file
                    .read(&mut buf)
                    .await
                    .map_err(|e| SharedError::Local(StoreError::io(&local, "read", e)))?;
                if n == 0 {
                    break;
                }
                sha.update(&buf[..n]);
                tokio::time::timeout(CHUNK_TIMEOUT, writer.write_all(&buf[..n]))
                    .await
                    .map_err(|_| remote("upload", &path, "timed out"))?
                    .map_err(|e| remote("upload", &path, e))?;
            }
            if sha.len() != size || sha.clone().finish() != *digest {
                return Err(rejected(
                    &path,
                    "local copy changed since it was verified; not uploaded",
                ));
            }
            Ok(())
        }
        .await;
        if let Err(e) = copied {
            let _ = writer.abort().await;
            return Err(e);
        }
        tokio::time::timeout(CHUNK_TIMEOUT, writer.shutdown())
            .await
            .map_err(|_| remote("upload", &path, "timed out"))?
            .map_err(|e| remote("upload", &path, e))?;
        self.reached();
        self.blob_uploads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Writes the entry object for `key` (a single PUT: readers see the old or the new record, never half).
    pub(crate) async fn write_entry(
        &self,
        repo: &str,
        key: &str,
        entry: &Entry,
    ) -> Result<(), SharedError> {
        let path = self.entry_path(repo, key);
        let record = SharedEntry {
            repo: repo.to_string(),
            key: key.to_string(),
            entry: entry.clone(),
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| rejected(&path, e))?;
        tokio::time::timeout(SMALL_REQUEST_TIMEOUT, self.client.put(&path, bytes.into()))
            .await
            .map_err(|_| remote("write", &path, "timed out"))?
            .map_err(|e| remote("write", &path, e))?;
        self.reached();
        self.entry_uploads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Longest object key written for a marker (S3 takes 1024 bytes).
pub const MAX_MARKER_KEY: usize = 1000;
/// Bound on one marker listing.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `part` is a path segment the object store keeps as it is (so that a listing gives it back
/// unchanged): letters, digits, `-`, `_`, `.`, `=`, `,`, `+`, `@`, and neither `.` nor `..`.
pub fn is_plain_segment(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=' | b',' | b'+' | b'@')
        })
}

impl SharedTier {
    fn marker_path(&self, repo: &str, dir: &[&str], name: Option<&str>) -> ObjectPath {
        let mut tail = vec!["markers", repo];
        tail.extend_from_slice(dir);
        tail.extend(name);
        self.path(&tail)
    }

    /// Writes the marker `name` under `dir` (both plain segments, see [`is_plain_segment`]).
    pub(crate) async fn write_marker(
        &self,
        repo: &str,
        dir: &[&str],
        name: &str,
    ) -> Result<(), SharedError> {
        let path = self.marker_path(repo, dir, Some(name));
        if path.as_ref().len() > MAX_MARKER_KEY {
            return Err(rejected(&path, "marker name is too long for the bucket"));
        }
        tokio::time::timeout(
            SMALL_REQUEST_TIMEOUT,
            self.client.put(&path, Vec::<u8>::new().into()),
        )
        .await
        .map_err(|_| remote("write", &path, "timed out"))?
        .map_err(|e| remote("write", &path, e))?;
        self.reached();
        Ok(())
    }

    /// The markers under `dir` whose name starts with `prefix`, with when each was written (ms), at most
    /// `limit`, in name order.
    pub(crate) async fn list_markers(
        &self,
        repo: &str,
        dir: &[&str],
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, SharedError> {
        let dir_path = self.marker_path(repo, dir, None);
        let listed = tokio::time::timeout(LIST_TIMEOUT, async {
            let mut out = Vec::new();
            let mut stream = if prefix.is_empty() {
                self.client.list(Some(&dir_path))
            } else {
                // The names under the prefix follow the prefix itself in key order: start the listing after
                // it. A name equal to the prefix would be skipped, so callers end names with a character
                // their prefixes never end with.
                let offset = ObjectPath::from(format!("{}/{prefix}", dir_path.as_ref()));
                self.client.list_with_offset(Some(&dir_path), &offset)
            };
            while let Some(meta) = stream.next().await {
                let meta = meta?;
                let Some(name) = meta.location.filename() else {
                    continue;
                };
                if !name.starts_with(prefix) {
                    break;
                }
                out.push((
                    name.to_string(),
                    meta.last_modified.timestamp_millis().max(0) as u64,
                ));
                if out.len() >= limit {
                    break;
                }
            }
            Ok::<_, object_store::Error>(out)
        })
        .await;
        let out = listed
            .map_err(|_| remote("list", &dir_path, "timed out"))?
            .map_err(|e| remote("list", &dir_path, e))?;
        self.reached();
        Ok(out)
    }
}

impl SharedTier {
    /// Deletes the entry object for `key` (a deleted tag must not come back from the bucket).
    pub(crate) async fn delete_entry(&self, repo: &str, key: &str) -> Result<(), SharedError> {
        let path = self.entry_path(repo, key);
        match tokio::time::timeout(SMALL_REQUEST_TIMEOUT, self.client.delete(&path)).await {
            Err(_) => Err(remote("delete", &path, "timed out")),
            Ok(Ok(())) | Ok(Err(object_store::Error::NotFound { .. })) => {
                self.reached();
                Ok(())
            }
            Ok(Err(e)) => Err(remote("delete", &path, e)),
        }
    }

    fn tombstone_dir(&self) -> ObjectPath {
        self.path(&["tombstones"])
    }

    /// Writes `tombstone` as a new object (never overwritten); returns its name.
    pub(crate) async fn write_tombstone(
        &self,
        tombstone: &crate::Tombstone,
    ) -> Result<String, SharedError> {
        let name = format!("{:013}-{:016x}.json", tombstone.at, rand::random::<u64>());
        let path = self.path(&["tombstones", &name]);
        let bytes = serde_json::to_vec(tombstone).map_err(|e| rejected(&path, e))?;
        if bytes.len() as u64 > MAX_ENTRY_BYTES {
            return Err(rejected(
                &path,
                "purge names too many keys for one tombstone",
            ));
        }
        tokio::time::timeout(SMALL_REQUEST_TIMEOUT, self.client.put(&path, bytes.into()))
            .await
            .map_err(|_| remote("write", &path, "timed out"))?
            .map_err(|e| remote("write", &path, e))?;
        self.reached();
        Ok(name)
    }

    /// The names of the tombstone objects in the bucket, at most `limit`.
    pub(crate) async fn tombstone_names(&self, limit: usize) -> Result<Vec<String>, SharedError> {
        let dir = self.tombstone_dir();
        let listed = tokio::time::timeout(SMALL_REQUEST_TIMEOUT, async {
            let mut names = Vec::new();
            let mut stream = self.client.list(Some(&dir));
            while let Some(meta) = stream.next().await {
                let meta = meta?;
                if let Some(name) = meta.location.filename() {
                    names.push(name.to_string());
                }
                if names.len() >= limit {
                    break;
                }
            }
            Ok::<_, object_store::Error>(names)
        })
        .await;
        let names = listed
            .map_err(|_| remote("list", &dir, "timed out"))?
            .map_err(|e| remote("list", &dir, e))?;
        self.reached();
        Ok(names)
    }

    /// The tombstone in object `name`.
    pub(crate) async fn read_tombstone(&self, name: &str) -> Result<crate::Tombstone, SharedError> {
        let path = self.path(&["tombstones", name]);
        let fetched = tokio::time::timeout(SMALL_REQUEST_TIMEOUT, async {
            let result = self.client.get(&path).await?;
            if result.meta.size > MAX_ENTRY_BYTES {
                return Ok(None);
            }
            result.bytes().await.map(Some)
        })
        .await
        .map_err(|_| remote("read", &path, "timed out"))?
        .map_err(|e| remote("read", &path, e))?
        .ok_or_else(|| rejected(&path, "tombstone object is too large"))?;
        self.reached();
        serde_json::from_slice(&fetched)
            .map_err(|e| rejected(&path, format!("unreadable tombstone: {e}")))
    }
}

async fn write_local(
    mut temp: TempBlob,
    batch: Vec<u8>,
) -> Result<(TempBlob, Vec<u8>), SharedError> {
    let (temp, mut batch, result) = tokio::task::spawn_blocking(move || {
        let result = temp.write_all(&batch);
        (temp, batch, result)
    })
    .await
    .map_err(|e| StoreError::Shared {
        message: format!("download task failed: {e}"),
    })?;
    result.map_err(|e| StoreError::io(temp.path(), "write", e))?;
    batch.clear();
    Ok((temp, batch))
}

fn remote(action: &'static str, path: &ObjectPath, message: impl ToString) -> SharedError {
    SharedError::Remote {
        action,
        path: path.to_string(),
        message: message.to_string(),
    }
}

fn rejected(path: &ObjectPath, message: impl ToString) -> SharedError {
    SharedError::Rejected {
        path: path.to_string(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreOptions};

    fn options(endpoint: &str) -> SharedOptions {
        SharedOptions {
            bucket: "wharf-test".into(),
            endpoint: Some(endpoint.into()),
            region: Some("us-east-1".into()),
            prefix: "team/cache/".into(),
            path_style: true,
            allow_http: true,
        }
    }

    /// A tier with static credentials, so no test ever asks instance metadata or any other credential source.
    fn tier(endpoint: &str) -> SharedTier {
        let builder = AmazonS3Builder::new()
            .with_access_key_id("wharf-test")
            .with_secret_access_key("wharf-test-secret");
        SharedTier::open_with(&options(endpoint), builder).expect("open")
    }

    /// An address on loopback where nothing listens.
    fn closed_endpoint() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        format!("http://{addr}")
    }

    #[test]
    fn objects_are_named_by_digest_and_by_the_hash_of_the_key() {
        let tier = tier("http://127.0.0.1:1");
        let digest = Digest::of(b"wheel");
        assert_eq!(
            tier.blob_path(&digest).to_string(),
            format!("team/cache/blobs/sha256/{}", digest.to_hex())
        );
        let key = "files/demo/demo-1.0-py3-none-any.whl";
        assert_eq!(
            tier.entry_path("pypi", key).to_string(),
            format!(
                "team/cache/entries/pypi/{}.json",
                Digest::of(key.as_bytes()).to_hex()
            )
        );
    }

    #[test]
    fn shared_entry_round_trips_with_its_key() {
        let record = SharedEntry {
            repo: "pypi".into(),
            key: "simple/demo/".into(),
            entry: Entry {
                digest: Some(Digest::of(b"page").to_hex()),
                size: 4,
                status: 200,
                content_type: Some("text/html".into()),
                etag: Some("\"v1\"".into()),
                last_modified: None,
                fetched_at: 1_700_000_000_000,
                immutable: false,
                upstream_url: "http://127.0.0.1:1/simple/demo/".into(),
                headers: vec![],
            },
        };
        let bytes = serde_json::to_vec(&record).expect("encode");
        let back: SharedEntry = serde_json::from_slice(&bytes).expect("decode");
        assert_eq!(back, record);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_bucket_fails_soft_and_is_skipped_for_a_while() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_with(
            StoreOptions {
                root: dir.path().to_path_buf(),
                max_size: None,
                shared: None,
            },
            Some(tier(&closed_endpoint())),
        )
        .expect("open");
        let started = std::time::Instant::now();
        assert!(store
            .pull_shared("pypi", "simple/x/", |_| true)
            .await
            .is_none());
        assert!(
            started.elapsed() < SMALL_REQUEST_TIMEOUT,
            "a refused connection fails fast"
        );
        let usage = store.usage().shared.expect("shared usage");
        assert!(!usage.reachable);
        assert_eq!(usage.read_errors, 1);
        // Skipped while marked unreachable: no second attempt, no second error.
        assert!(store
            .pull_shared("pypi", "simple/y/", |_| true)
            .await
            .is_none());
        assert_eq!(store.usage().shared.expect("shared").read_errors, 1);
        assert!(store.temp_blob().is_ok(), "the local tier is unaffected");
    }

    #[test]
    fn store_without_shared_tier_reports_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreOptions {
            root: dir.path().to_path_buf(),
            max_size: None,
            shared: None,
        })
        .expect("open");
        assert_eq!(store.usage().shared, None);
    }
}
