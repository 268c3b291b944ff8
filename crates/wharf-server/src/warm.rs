//! `POST /admin/warm`: the same warming as `wharf warm`, run by wharf itself as a job, on a lock file given
//! in the request body. Requests go through wharf's own router in-process (so they are logged, counted and
//! coalesced like any client's), and the job's progress is in `/status` (`warm`) and on the web UI's first
//! page while it runs, and for a while after.
//!
//! `?kind=` names the file's kind (else it is sniffed from the content), `?repo=` the repository (else the
//! only one of the kind's format), `?platform=OS/ARCH` and `?concurrency=N` as on the command line;
//! `?wait=true` answers with the summary when the job ends instead of `202 Accepted` at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::{header, StatusCode};
use serde::Serialize;
use serde_json::json;
use wharf_cache::error_response;
use wharf_warm::{Answer, BoxFuture, Fetch, Kind, Plan, Progress, Summary};

use crate::admin::{audit, authorize, Caller};
use crate::state::AppState;

/// Largest lock file accepted in a request body.
pub const MAX_BODY: usize = wharf_warm::lockfile::MAX_FILE;
/// Jobs running at once; more are refused with 429.
const MAX_RUNNING: usize = 2;
/// Finished jobs kept for `/status`.
const KEPT: usize = 8;
/// Default concurrency of a job (it shares wharf with its clients).
const DEFAULT_CONCURRENCY: usize = 8;

/// Warm jobs, running and recently finished.
#[derive(Default)]
pub struct WarmJobs {
    next_id: AtomicU64,
    jobs: Mutex<VecDeque<Arc<Job>>>,
}

pub struct Job {
    id: u64,
    kind: Kind,
    repo: String,
    started_ms: u64,
    progress: Progress,
    /// Set when the job ends.
    summary: Mutex<Option<Summary>>,
}

#[derive(Serialize)]
struct JobView {
    id: u64,
    kind: &'static str,
    repo: String,
    started: String,
    running: bool,
    progress: wharf_warm::ProgressSnapshot,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<Summary>,
}

impl Job {
    fn view(&self) -> JobView {
        let summary = self
            .summary
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        JobView {
            id: self.id,
            kind: self.kind.as_str(),
            repo: self.repo.clone(),
            started: wharf_text::rfc3339_ms(self.started_ms),
            running: summary.is_none(),
            progress: self.progress.snapshot(),
            summary,
        }
    }
}

impl WarmJobs {
    /// Registers a job unless [`MAX_RUNNING`] are running.
    fn start(&self, kind: Kind, repo: String) -> Option<Arc<Job>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let running = jobs.iter().filter(|j| j.view().running).count();
        if running >= MAX_RUNNING {
            return None;
        }
        let job = Arc::new(Job {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            kind,
            repo,
            started_ms: wharf_store::now_ms(),
            progress: Progress::default(),
            summary: Mutex::new(None),
        });
        jobs.push_back(job.clone());
        while jobs.len() > KEPT + MAX_RUNNING {
            let Some(done) = jobs.iter().position(|j| !j.view().running) else {
                break;
            };
            jobs.remove(done);
        }
        Some(job)
    }

    fn views(&self) -> Vec<JobView> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter().rev().map(|j| j.view()).collect()
    }
}

/// The `warm` section of `/status`: jobs, newest first.
pub fn status_section(state: &AppState) -> serde_json::Value {
    json!(state.warm.views())
}

/// The web UI's lines about warm jobs (running ones, and the last finished), as HTML; empty without jobs.
pub fn ui_section(state: &AppState) -> String {
    use std::fmt::Write as _;
    let views = state.warm.views();
    if views.is_empty() {
        return String::new();
    }
    let mut rows = String::new();
    for v in views.iter().take(4) {
        let p = &v.progress;
        let state_text = match &v.summary {
            None => format!("running: {} of {}", p.done, p.total),
            Some(s) => wharf_text::html_escape(&s.line()).to_string(),
        };
        let _ = write!(
            rows,
            "<tr data-warm=\"{id}\"><td>#{id} {kind} → {repo}</td><td>{state_text}</td>\
             <td class=\"n\">{fetched} fetched · {cached} cached · {failed} failed</td></tr>",
            id = v.id,
            kind = v.kind,
            repo = wharf_text::html_escape(&v.repo),
            fetched = p.fetched,
            cached = p.cached,
            failed = p.failed,
        );
    }
    format!(
        "<h2>Warming</h2><div class=\"wrap\"><table id=\"warm\"><tr><th>job</th><th>state</th>\
         <th class=\"n\">artifacts</th></tr>{rows}</table></div>"
    )
}

/// wharf's own router, called in-process.
struct InProcess {
    router: axum::Router,
}

impl Fetch for InProcess {
    fn get(&self, req: wharf_warm::Request) -> BoxFuture<'_, Result<Answer, String>> {
        Box::pin(async move {
            use tower::Service as _;
            let mut builder = http::Request::get(&req.path);
            if let Some(accept) = req.accept {
                builder = builder.header(header::ACCEPT, accept);
            }
            let request = builder
                .body(Body::empty())
                .map_err(|e| format!("{}: {e}", req.path))?;
            let mut router = self.router.clone();
            let resp = match router.call(request).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            let status = resp.status().as_u16();
            let cache = resp
                .headers()
                .get(wharf_warm::CACHE_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let length = resp
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let mut answer = Answer {
                status,
                cache,
                ..Answer::default()
            };
            if status == 200 && !req.keep_body && answer.cache.as_deref() == Some("hit") {
                answer.bytes = length.unwrap_or(0);
                return Ok(answer);
            }
            let mut stream = resp.into_body().into_data_stream();
            let mut body = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| format!("{}: {e}", req.path))?;
                answer.bytes += chunk.len() as u64;
                let keep = if status == 200 {
                    req.keep_body && body.len() + chunk.len() <= wharf_warm::lockfile::MAX_FILE * 4
                } else {
                    body.len() < 300
                };
                if keep {
                    body.extend_from_slice(&chunk);
                }
            }
            if status == 200 {
                answer.body = body.into();
            } else {
                body.truncate(300);
                answer.message = String::from_utf8_lossy(&body).trim().to_string();
            }
            Ok(answer)
        })
    }
}

#[derive(Debug)]
struct WarmParams {
    kind: Option<Kind>,
    repo: Option<String>,
    platform: Option<wharf_warm::Platform>,
    concurrency: usize,
    wait: bool,
}

fn params(query: Option<&str>) -> Result<WarmParams, String> {
    let mut p = WarmParams {
        kind: None,
        repo: None,
        platform: None,
        concurrency: DEFAULT_CONCURRENCY,
        wait: false,
    };
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let shown: String = value.chars().take(64).collect();
        match &*key {
            "kind" => {
                p.kind = Some(Kind::parse(&value).ok_or_else(|| {
                    format!(
                        "kind: `{shown}` is not one of {}",
                        Kind::ALL.map(Kind::as_str).join(", ")
                    )
                })?)
            }
            "repo" => p.repo = Some(shown),
            "platform" => {
                p.platform = Some(wharf_warm::Platform::parse(&value).ok_or_else(|| {
                    format!("platform: `{shown}` is not OS/ARCH[/VARIANT] (linux/amd64)")
                })?)
            }
            "concurrency" => {
                p.concurrency = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=wharf_warm::MAX_CONCURRENCY).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "concurrency: `{shown}` is not a number from 1 to {}",
                            wharf_warm::MAX_CONCURRENCY
                        )
                    })?
            }
            "wait" => {
                p.wait = value
                    .parse()
                    .map_err(|_| format!("wait: expected true or false, found `{shown}`"))?
            }
            other => {
                let other: String = other.chars().take(64).collect();
                return Err(format!(
                    "unknown parameter `{other}` (kind, repo, platform, concurrency, wait)"
                ));
            }
        }
    }
    Ok(p)
}

pub async fn warm(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let caller = Caller::new(peer, &parts.headers);
    if let Err(resp) = authorize(&state, &parts.headers, &caller, "warm") {
        return *resp;
    }
    let p = match params(parts.uri.query()) {
        Ok(p) => p,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e),
    };
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the file must be at most {MAX_BODY} bytes (or unreadable)"),
            )
        }
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return error_response(StatusCode::BAD_REQUEST, "the file is not UTF-8 text");
    };
    let Some(kind) = p.kind.or_else(|| Kind::sniff(text)) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!(
                "cannot tell what kind of file this is: say it with ?kind= ({})",
                Kind::ALL.map(Kind::as_str).join(", ")
            ),
        );
    };
    let parsed = match wharf_warm::parse(kind, text) {
        Ok(parsed) => parsed,
        Err(e) => return error_response(StatusCode::UNPROCESSABLE_ENTITY, format!("{kind}: {e}")),
    };
    let repos: Vec<(String, String)> = state
        .repo_order
        .iter()
        .filter_map(|n| {
            let r = state.repos.get(n)?;
            Some((n.clone(), r.config.format.as_str().to_string()))
        })
        .collect();
    let repo = match wharf_warm::choose_repo(kind, &repos, p.repo.as_deref()) {
        Ok(r) => r,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e),
    };
    let Some(job) = state.warm.start(kind, repo.clone()) else {
        return error_response(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{MAX_RUNNING} warm jobs are running already: wait for one to end"),
        );
    };
    audit(
        &state,
        &caller,
        "warm",
        json!({ "job": job.id, "kind": kind.as_str(), "repo": repo, "artifacts": parsed.wanted.len(),
                "skipped": parsed.skipped.len() }),
    );
    let plan = Plan {
        repo,
        wanted: parsed.wanted,
    };
    let options = wharf_warm::Options {
        concurrency: p.concurrency,
        platform: p.platform,
    };
    let fetch = InProcess {
        router: crate::router(state.clone()),
    };
    let run_job = job.clone();
    let task = tokio::spawn(async move {
        let summary = wharf_warm::warm(&fetch, &[plan], &options, &run_job.progress).await;
        tracing::info!(job = run_job.id, "{}", summary.line());
        *run_job.summary.lock().unwrap_or_else(|p| p.into_inner()) = Some(summary.clone());
        summary
    });
    if !p.wait {
        return (
            StatusCode::ACCEPTED,
            axum::Json(
                json!({ "job": job.id, "kind": kind.as_str(), "skipped": parsed.skipped,
                               "progress": "/status (warm)" }),
            ),
        )
            .into_response();
    }
    match task.await {
        Ok(summary) => {
            let status = if summary.failed.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::BAD_GATEWAY
            };
            (
                status,
                axum::Json(json!({ "job": job.id, "summary": summary, "skipped": parsed.skipped })),
            )
                .into_response()
        }
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_checked_and_unknown_ones_refused() {
        let p = params(Some(
            "kind=uv.lock&repo=py&platform=linux/arm64&concurrency=4&wait=true",
        ))
        .unwrap();
        assert_eq!(p.kind, Some(Kind::UvLock));
        assert_eq!((p.concurrency, p.wait), (4, true));
        assert!(params(Some("kind=zip"))
            .unwrap_err()
            .contains("kind: `zip`"));
        assert!(params(Some("concurrency=0")).is_err());
        assert!(params(Some("concurrency=100000")).is_err());
        assert!(params(Some("platform=linux")).is_err());
        assert!(params(Some("reop=x"))
            .unwrap_err()
            .contains("unknown parameter `reop`"));
    }

    #[test]
    fn finished_jobs_are_kept_in_a_bounded_list_and_running_ones_capped() {
        let jobs = WarmJobs::default();
        let a = jobs.start(Kind::GoSum, "go".into()).unwrap();
        let _b = jobs.start(Kind::GoSum, "go".into()).unwrap();
        assert!(jobs.start(Kind::GoSum, "go".into()).is_none());
        *a.summary.lock().unwrap() = Some(Summary::default());
        for _ in 0..20 {
            let j = jobs.start(Kind::GoSum, "go".into()).unwrap();
            *j.summary.lock().unwrap() = Some(Summary::default());
        }
        let views = jobs.views();
        assert!(views.len() <= KEPT + MAX_RUNNING, "{}", views.len());
        assert_eq!(views.iter().filter(|v| v.running).count(), 1);
    }
}
