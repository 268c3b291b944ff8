//! Warming: turns what a file names into requests to wharf, makes each once with bounded concurrency, and
//! counts what wharf already had (its `X-Wharf-Cache` answer) apart from what it fetched.
//!
//! Two stages: first the few requests that find out which artifacts there are (a project page for a
//! requirements pin, manifests for an image), then the artifacts themselves, so progress has a total.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use crate::lockfile::Wanted;
use crate::oci::{self, Contents, ImageRef, Platform};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The response header wharf answers with: `hit`, `miss`, `coalesced`, `revalidated`, `stale`, `negative`.
pub const CACHE_HEADER: &str = "x-wharf-cache";

/// Largest page or manifest read to find artifacts.
pub const PAGE_LIMIT: usize = 64 * 1024 * 1024;
/// Most concurrent requests one warm run makes.
pub const MAX_CONCURRENCY: usize = 64;
/// Most manifests followed from one image index.
const MAX_PLATFORMS: usize = 64;

/// One GET to wharf.
#[derive(Clone, Debug)]
pub struct Request {
    /// Path and query on wharf, starting with `/`.
    pub path: String,
    pub accept: Option<&'static str>,
    /// Read the body (up to [`PAGE_LIMIT`]) and return it; otherwise only count it, and leave a hit's
    /// body unread.
    pub keep_body: bool,
}

/// wharf's answer.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    pub status: u16,
    /// The [`CACHE_HEADER`] value.
    pub cache: Option<String>,
    /// Body bytes read, or the announced length of a hit left unread.
    pub bytes: u64,
    /// With `keep_body`, on 200.
    pub body: Bytes,
    /// The start of an error answer's text.
    pub message: String,
}

/// How a warm run reaches wharf: over HTTP (the CLI) or in-process (`POST /admin/warm`).
pub trait Fetch: Send + Sync {
    fn get(&self, req: Request) -> BoxFuture<'_, Result<Answer, String>>;
}

/// The files of one repository to warm.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The repository's name on wharf (ignored for images, which live under `/v2/`).
    pub repo: String,
    pub wanted: Vec<Wanted>,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub concurrency: usize,
    /// For image indexes: only this platform's manifest (else every platform's).
    pub platform: Option<Platform>,
}

/// Counters a running warm updates, for a progress bar or `/status`.
#[derive(Debug, Default)]
pub struct Progress {
    pub total: AtomicU64,
    pub done: AtomicU64,
    pub fetched: AtomicU64,
    pub cached: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub total: u64,
    pub done: u64,
    pub fetched: u64,
    pub cached: u64,
    pub failed: u64,
    pub bytes: u64,
}

impl Progress {
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            total: self.total.load(Relaxed),
            done: self.done.load(Relaxed),
            fetched: self.fetched.load(Relaxed),
            cached: self.cached.load(Relaxed),
            failed: self.failed.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
        }
    }
}

/// Something that could not be warmed, and why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Failure {
    pub what: String,
    pub reason: String,
}

/// The outcome of a warm run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Artifacts wharf fetched from upstream for this run (or that another client was fetching).
    pub fetched: u64,
    /// Artifacts wharf already had.
    pub cached: u64,
    pub failed: Vec<Failure>,
    /// Bytes of the fetched artifacts.
    pub fetched_bytes: u64,
    /// Bytes of the artifacts already cached (as announced; not transferred).
    pub cached_bytes: u64,
    pub seconds: f64,
}

impl Summary {
    /// One line: `warmed 12 artifacts: 10 fetched (3.2 MiB), 2 already cached, 0 failed in 1.4 s`.
    pub fn line(&self) -> String {
        format!(
            "warmed {} artifacts: {} fetched ({}), {} already cached, {} failed in {:.1} s",
            self.fetched + self.cached + self.failed.len() as u64,
            self.fetched,
            human_bytes(self.fetched_bytes),
            self.cached,
            self.failed.len(),
            self.seconds
        )
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// One artifact request, and what to call it in a failure list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Artifact {
    label: String,
    path: String,
}

/// Results recorded by both stages.
struct Tally<'a> {
    progress: &'a Progress,
    summary: Mutex<Summary>,
}

impl Tally<'_> {
    /// A failure found while expanding (stage 1): it counts as one more item of the total.
    fn fail_new(&self, what: String, reason: String) {
        self.progress.total.fetch_add(1, Relaxed);
        self.fail(what, reason);
    }

    fn fail(&self, what: String, reason: String) {
        self.progress.failed.fetch_add(1, Relaxed);
        self.progress.done.fetch_add(1, Relaxed);
        self.summary
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed
            .push(Failure { what, reason });
    }

    /// Counts an artifact's answer: cached, fetched or failed.
    fn record(&self, label: &str, answer: Result<&Answer, &String>) {
        let answer = match answer {
            Ok(a) if a.status == 200 => a,
            Ok(a) => return self.fail(label.to_string(), failure_reason(a)),
            Err(e) => return self.fail(label.to_string(), e.clone()),
        };
        let cached = matches!(
            answer.cache.as_deref(),
            Some("hit" | "revalidated" | "stale")
        );
        let mut s = self.summary.lock().unwrap_or_else(|p| p.into_inner());
        if cached {
            s.cached += 1;
            s.cached_bytes += answer.bytes;
            self.progress.cached.fetch_add(1, Relaxed);
        } else {
            s.fetched += 1;
            s.fetched_bytes += answer.bytes;
            self.progress.fetched.fetch_add(1, Relaxed);
            self.progress.bytes.fetch_add(answer.bytes, Relaxed);
        }
        self.progress.done.fetch_add(1, Relaxed);
    }
}

fn failure_reason(a: &Answer) -> String {
    let message = a.message.trim();
    if message.is_empty() {
        format!("HTTP {}", a.status)
    } else {
        format!("HTTP {}: {message}", a.status)
    }
}

/// Warms every plan through `fetch`; never fails as a whole: what could not be warmed is in
/// [`Summary::failed`].
pub async fn warm(
    fetch: &dyn Fetch,
    plans: &[Plan],
    options: &Options,
    progress: &Progress,
) -> Summary {
    let started = Instant::now();
    let concurrency = options.concurrency.clamp(1, MAX_CONCURRENCY);
    let tally = Tally {
        progress,
        summary: Mutex::new(Summary::default()),
    };
    // Owned, so the futures below borrow nothing from the stream's items (which keeps them `Send` for any
    // caller's lifetimes).
    let wanted: Vec<(String, Wanted)> = plans
        .iter()
        .flat_map(|p| p.wanted.iter().map(|w| (p.repo.clone(), w.clone())))
        .collect();
    progress.total.fetch_add(wanted.len() as u64, Relaxed);
    let tally = &tally;

    // Stage 1: what each wanted item comes to (most need no request).
    let expanded: Vec<Vec<Artifact>> = stream::iter(wanted)
        .map(|(repo, w)| async move { expand(fetch, &repo, &w, options, tally).await })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut seen = BTreeSet::new();
    let mut artifacts = Vec::new();
    for list in expanded {
        // The wanted item itself was counted in the total; its artifacts replace it.
        progress.total.fetch_sub(1, Relaxed);
        for a in list {
            if seen.insert(a.path.clone()) {
                artifacts.push(a);
            }
        }
    }
    progress.total.fetch_add(artifacts.len() as u64, Relaxed);

    // Stage 2: the artifacts.
    stream::iter(artifacts)
        .map(|a| async move {
            let answer = fetch
                .get(Request {
                    path: a.path.clone(),
                    accept: None,
                    keep_body: false,
                })
                .await;
            tally.record(&a.label, answer.as_ref());
        })
        .buffer_unordered(concurrency)
        .collect::<()>()
        .await;

    let mut summary = std::mem::take(&mut *tally.summary.lock().unwrap_or_else(|p| p.into_inner()));
    summary.seconds = started.elapsed().as_secs_f64();
    summary
}

/// A path segment: everything but unreserved characters percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// PEP 503 normalisation: lowercase, runs of `-`, `_` and `.` become one `-`.
pub fn normalize_project(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The Go proxy's case encoding: each capital letter becomes `!` and its lowercase.
pub fn go_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

async fn expand(
    fetch: &dyn Fetch,
    repo: &str,
    wanted: &Wanted,
    options: &Options,
    tally: &Tally<'_>,
) -> Vec<Artifact> {
    let one = |path: String| {
        vec![Artifact {
            label: wanted.label(),
            path,
        }]
    };
    let repo = segment(repo);
    match wanted {
        Wanted::PypiFile { project, filename } => one(format!(
            "/{repo}/files/{}/{}",
            normalize_project(project),
            segment(filename)
        )),
        Wanted::NpmTarball { name, file, .. } => {
            let name = match name.split_once('/') {
                Some((scope, n)) => format!("{}/{}", segment(scope), segment(n)),
                None => segment(name),
            };
            one(format!("/{repo}/{name}/-/{}", segment(file)))
        }
        Wanted::Crate { name, version } => one(format!(
            "/{repo}/api/v1/crates/{}/{}/download",
            segment(name),
            segment(version)
        )),
        Wanted::GoModule {
            module,
            version,
            zip,
        } => {
            let base = format!("/{repo}/{}/@v/{}", go_escape(module), go_escape(version));
            let label = wanted.label();
            let mut out = vec![
                Artifact {
                    label: format!("{label} (.info)"),
                    path: format!("{base}.info"),
                },
                Artifact {
                    label: format!("{label} (.mod)"),
                    path: format!("{base}.mod"),
                },
            ];
            if *zip {
                out.push(Artifact {
                    label: format!("{label} (.zip)"),
                    path: format!("{base}.zip"),
                });
            }
            out
        }
        Wanted::PypiRelease {
            project,
            version,
            sha256,
        } => pypi_release(fetch, &repo, project, version, sha256, tally).await,
        Wanted::Image { reference } => image(fetch, reference, options, tally).await,
    }
}

#[derive(Deserialize)]
struct ProjectPage {
    files: Vec<ProjectFile>,
}

#[derive(Deserialize)]
struct ProjectFile {
    filename: String,
    #[serde(default)]
    hashes: std::collections::HashMap<String, String>,
}

/// The version in a distribution file name: `name-1.0-py3-none-any.whl`, `name-1.0.tar.gz`, `name-1.0.zip`.
fn file_version(filename: &str) -> Option<&str> {
    if let Some(stem) = filename.strip_suffix(".whl") {
        return stem.split('-').nth(1);
    }
    let stem = [".tar.gz", ".zip", ".tar.bz2", ".tgz"]
        .iter()
        .find_map(|ext| filename.strip_suffix(ext))?;
    stem.rsplit_once('-').map(|(_, v)| v)
}

/// A pinned release's files: the project page (PEP 691 JSON, through wharf) lists them; those with a listed
/// sha256, or every file of the version when the pin has no hashes.
async fn pypi_release(
    fetch: &dyn Fetch,
    repo: &str,
    project: &str,
    version: &str,
    sha256: &[String],
    tally: &Tally<'_>,
) -> Vec<Artifact> {
    let label = format!("{project}=={version}");
    let norm = normalize_project(project);
    let answer = fetch
        .get(Request {
            path: format!("/{repo}/simple/{norm}/"),
            accept: Some("application/vnd.pypi.simple.v1+json"),
            keep_body: true,
        })
        .await;
    let page = match answer {
        Ok(a) if a.status == 200 => serde_json::from_slice::<ProjectPage>(&a.body)
            .map_err(|e| format!("the project page is not PEP 691 JSON: {e}")),
        Ok(a) => Err(format!("project page: {}", failure_reason(&a))),
        Err(e) => Err(format!("project page: {e}")),
    };
    let page = match page {
        Ok(p) => p,
        Err(reason) => {
            tally.fail_new(label, reason);
            return Vec::new();
        }
    };
    let files: Vec<&ProjectFile> = if sha256.is_empty() {
        page.files
            .iter()
            .filter(|f| file_version(&f.filename) == Some(version))
            .collect()
    } else {
        let matched: Vec<&ProjectFile> = page
            .files
            .iter()
            .filter(|f| {
                f.hashes
                    .get("sha256")
                    .is_some_and(|h| sha256.iter().any(|s| s.eq_ignore_ascii_case(h)))
            })
            .collect();
        if matched.len() < sha256.len() {
            let found: Vec<&str> = matched
                .iter()
                .filter_map(|f| f.hashes.get("sha256").map(String::as_str))
                .collect();
            let missing: Vec<&str> = sha256
                .iter()
                .map(String::as_str)
                .filter(|s| !found.iter().any(|f| f.eq_ignore_ascii_case(s)))
                .collect();
            for hash in missing {
                tally.fail_new(
                    format!("{label} sha256:{}", &hash[..hash.len().min(12)]),
                    "no file on the index has this hash".into(),
                );
            }
        }
        matched
    };
    if files.is_empty() && sha256.is_empty() {
        tally.fail_new(label, "no file of this version is on the index".into());
        return Vec::new();
    }
    files
        .into_iter()
        .map(|f| Artifact {
            label: f.filename.clone(),
            path: format!("/{repo}/files/{norm}/{}", segment(&f.filename)),
        })
        .collect()
}

/// An image: its manifest (and, for an index, each chosen platform's) fetched and counted now, its blobs
/// returned for stage 2.
async fn image(
    fetch: &dyn Fetch,
    reference: &str,
    options: &Options,
    tally: &Tally<'_>,
) -> Vec<Artifact> {
    let Some(image) = ImageRef::parse(reference) else {
        tally.fail_new(reference.to_string(), "not an image reference".into());
        return Vec::new();
    };
    let manifest = |reference: String| {
        let path = image.path("manifests", &reference);
        async move {
            fetch
                .get(Request {
                    path,
                    accept: Some(oci::MANIFEST_ACCEPT),
                    keep_body: true,
                })
                .await
        }
    };
    let top = manifest(image.reference.clone()).await;
    tally.progress.total.fetch_add(1, Relaxed);
    tally.record(&format!("{reference} (manifest)"), top.as_ref());
    let Ok(top) = top.filter_ok() else {
        return Vec::new();
    };
    let mut images = Vec::new();
    match oci::contents(&top.body, options.platform.as_ref()) {
        Ok(Contents::Image(blobs)) => images.push(blobs),
        Ok(Contents::Index(digests)) => {
            if digests.is_empty() {
                tally.fail_new(
                    reference.to_string(),
                    "the index has no manifest for the platform asked for".into(),
                );
            }
            for digest in digests.into_iter().take(MAX_PLATFORMS) {
                let label = format!("{reference} ({digest})");
                let answer = manifest(digest.clone()).await;
                tally.progress.total.fetch_add(1, Relaxed);
                tally.record(&label, answer.as_ref());
                let Ok(child) = answer.filter_ok() else {
                    continue;
                };
                match oci::contents(&child.body, None) {
                    Ok(Contents::Image(blobs)) => images.push(blobs),
                    Ok(Contents::Index(_)) => {
                        tally.fail_new(label, "an index inside an index is not followed".into())
                    }
                    Err(e) => tally.fail_new(label, e),
                }
            }
        }
        Err(e) => tally.fail_new(reference.to_string(), e),
    }
    images
        .into_iter()
        .flatten()
        .map(|digest| Artifact {
            label: format!("{reference} ({digest})"),
            path: image.path("blobs", &digest),
        })
        .collect()
}

trait OkAnswer {
    fn filter_ok(self) -> Result<Answer, ()>;
}

impl OkAnswer for Result<Answer, String> {
    fn filter_ok(self) -> Result<Answer, ()> {
        match self {
            Ok(a) if a.status == 200 => Ok(a),
            _ => Err(()),
        }
    }
}

/// How long a progress line waits between updates.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// wharf as a map from path to (status, cache, body); every request is recorded.
    #[derive(Default)]
    struct FakeWharf {
        answers: HashMap<String, (u16, &'static str, Vec<u8>)>,
        asked: Mutex<Vec<String>>,
    }

    impl Fetch for FakeWharf {
        fn get(&self, req: Request) -> BoxFuture<'_, Result<Answer, String>> {
            Box::pin(async move {
                self.asked.lock().unwrap().push(req.path.clone());
                let Some((status, cache, body)) = self.answers.get(&req.path) else {
                    return Ok(Answer {
                        status: 404,
                        message: "not here".into(),
                        ..Answer::default()
                    });
                };
                Ok(Answer {
                    status: *status,
                    cache: Some(cache.to_string()),
                    bytes: body.len() as u64,
                    body: if req.keep_body {
                        Bytes::from(body.clone())
                    } else {
                        Bytes::new()
                    },
                    message: String::new(),
                })
            })
        }
    }

    fn options() -> Options {
        Options {
            concurrency: 4,
            platform: None,
        }
    }

    #[tokio::test]
    async fn pins_with_hashes_fetch_only_the_hashed_files_and_count_hits() {
        let mut wharf = FakeWharf::default();
        let page = serde_json::json!({"files": [
            {"filename": "demo_pkg-1.0-py3-none-any.whl", "hashes": {"sha256": "aa"}},
            {"filename": "demo_pkg-1.0.tar.gz", "hashes": {"sha256": "bb"}},
            {"filename": "demo_pkg-1.1-py3-none-any.whl", "hashes": {"sha256": "cc"}},
        ]});
        wharf.answers.insert(
            "/py/simple/demo-pkg/".into(),
            (200, "hit", page.to_string().into_bytes()),
        );
        wharf.answers.insert(
            "/py/files/demo-pkg/demo_pkg-1.0-py3-none-any.whl".into(),
            (200, "miss", vec![0; 10]),
        );
        wharf.answers.insert(
            "/py/files/demo-pkg/demo_pkg-1.0.tar.gz".into(),
            (200, "hit", vec![0; 7]),
        );
        let plan = Plan {
            repo: "py".into(),
            wanted: vec![
                Wanted::PypiRelease {
                    project: "Demo.Pkg".into(),
                    version: "1.0".into(),
                    sha256: vec!["AA".into(), "bb".into(), "dd".into()],
                },
                Wanted::PypiRelease {
                    project: "missing".into(),
                    version: "1".into(),
                    sha256: vec![],
                },
            ],
        };
        let progress = Progress::default();
        let s = warm(&wharf, &[plan], &options(), &progress).await;
        assert_eq!((s.fetched, s.cached, s.fetched_bytes), (1, 1, 10));
        let failed: Vec<&str> = s.failed.iter().map(|f| f.what.as_str()).collect();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed.contains(&"Demo.Pkg==1.0 sha256:dd"), "{failed:?}");
        assert!(s.failed.iter().any(|f| f.reason.contains("HTTP 404")));
        let asked = wharf.asked.lock().unwrap();
        assert!(!asked.iter().any(|p| p.contains("1.1")), "{asked:?}");
        let p = progress.snapshot();
        assert_eq!((p.done, p.total, p.failed), (4, 4, 2), "{p:?}");
        assert!(s
            .line()
            .contains("1 fetched (10 B), 1 already cached, 2 failed"));
    }

    #[tokio::test]
    async fn unhashed_pins_take_every_file_of_the_version() {
        let mut wharf = FakeWharf::default();
        let page = serde_json::json!({"files": [
            {"filename": "x-2.0-py3-none-any.whl"}, {"filename": "x-2.0.tar.gz"}, {"filename": "x-2.0.1.tar.gz"},
        ]});
        wharf.answers.insert(
            "/p/simple/x/".into(),
            (200, "hit", page.to_string().into_bytes()),
        );
        for f in ["x-2.0-py3-none-any.whl", "x-2.0.tar.gz"] {
            wharf
                .answers
                .insert(format!("/p/files/x/{f}"), (200, "miss", vec![1]));
        }
        let plan = Plan {
            repo: "p".into(),
            wanted: vec![Wanted::PypiRelease {
                project: "x".into(),
                version: "2.0".into(),
                sha256: vec![],
            }],
        };
        let s = warm(&wharf, &[plan], &options(), &Progress::default()).await;
        assert_eq!((s.fetched, s.failed.len()), (2, 0), "{:?}", s.failed);
    }

    #[tokio::test]
    async fn paths_for_npm_cargo_and_go_are_wharfs_routes() {
        let wharf = FakeWharf::default();
        let plans = [
            Plan {
                repo: "npm".into(),
                wanted: vec![Wanted::NpmTarball {
                    name: "@acme/util".into(),
                    version: "2.0.0".into(),
                    file: "util-2.0.0.tgz".into(),
                }],
            },
            Plan {
                repo: "crates".into(),
                wanted: vec![Wanted::Crate {
                    name: "hex".into(),
                    version: "0.4.3".into(),
                }],
            },
            Plan {
                repo: "go".into(),
                wanted: vec![Wanted::GoModule {
                    module: "github.com/BurntSushi/toml".into(),
                    version: "v1.0.0".into(),
                    zip: false,
                }],
            },
        ];
        let s = warm(&wharf, &plans, &options(), &Progress::default()).await;
        assert_eq!(s.failed.len(), 4);
        let mut asked = wharf.asked.lock().unwrap().clone();
        asked.sort();
        assert_eq!(
            asked,
            [
                "/crates/api/v1/crates/hex/0.4.3/download",
                "/go/github.com/!burnt!sushi/toml/@v/v1.0.0.info",
                "/go/github.com/!burnt!sushi/toml/@v/v1.0.0.mod",
                "/npm/%40acme/util/-/util-2.0.0.tgz",
            ]
        );
    }

    #[tokio::test]
    async fn an_image_index_is_walked_to_its_blobs_once_each() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let mut wharf = FakeWharf::default();
        let index = serde_json::json!({"manifests": [
            {"digest": d('a'), "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": d('b'), "platform": {"os": "linux", "architecture": "arm64"}},
        ]});
        let image = |layer: char| {
            serde_json::json!({"config": {"digest": d('c')}, "layers": [{"digest": d(layer)}]})
                .to_string()
                .into_bytes()
        };
        let m = |r: &str| format!("/v2/team/app/manifests/{r}?ns=reg.local");
        let b = |c: char| format!("/v2/team/app/blobs/{}?ns=reg.local", d(c));
        wharf
            .answers
            .insert(m("1.0"), (200, "miss", index.to_string().into_bytes()));
        wharf.answers.insert(m(&d('a')), (200, "miss", image('e')));
        wharf.answers.insert(m(&d('b')), (200, "hit", image('f')));
        for c in ['c', 'e', 'f'] {
            wharf.answers.insert(b(c), (200, "miss", vec![0; 5]));
        }
        let plan = Plan {
            repo: String::new(),
            wanted: vec![Wanted::Image {
                reference: "reg.local/team/app:1.0".into(),
            }],
        };
        let progress = Progress::default();
        let s = warm(&wharf, std::slice::from_ref(&plan), &options(), &progress).await;
        assert_eq!(
            (s.fetched, s.cached, s.failed.len()),
            (5, 1, 0),
            "{:?}",
            s.failed
        );
        assert_eq!(progress.snapshot().total, 6);
        let asked = wharf.asked.lock().unwrap().clone();
        assert_eq!(asked.iter().filter(|p| **p == b('c')).count(), 1);

        let arm = Options {
            platform: Platform::parse("linux/arm64"),
            ..options()
        };
        wharf.asked.lock().unwrap().clear();
        let s = warm(&wharf, &[plan], &arm, &Progress::default()).await;
        assert_eq!(s.fetched + s.cached, 4);
        assert!(!wharf.asked.lock().unwrap().contains(&b('e')));
    }

    #[test]
    fn names_are_normalised_and_versions_read_from_file_names() {
        assert_eq!(normalize_project("Foo__Bar.baz"), "foo-bar-baz");
        assert_eq!(file_version("a_b-1.0rc1-py3-none-any.whl"), Some("1.0rc1"));
        assert_eq!(file_version("a-b-2.0.tar.gz"), Some("2.0"));
        assert_eq!(file_version("a-b-2.0.exe"), None);
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
