//! `wharf warm FILE...`: the command line, over HTTP to a running wharf.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use url::Url;

use crate::lockfile::{self, Kind};
use crate::run::{Fetch, Options, Plan, Progress, Request};
use crate::{choose_repo, human_bytes, HttpFetch, Platform, MAX_CONCURRENCY};

/// Failures listed one per line; the rest are counted.
const LISTED_FAILURES: usize = 50;

#[derive(clap::Args, Debug)]
pub struct WarmArgs {
    /// wharf's URL, as clients reach it.
    #[arg(long, env = "WHARF_URL", default_value = "http://127.0.0.1:8080/")]
    pub url: Url,
    /// The repository to warm (default: the only one of the file's format).
    #[arg(long, value_name = "NAME")]
    pub repo: Option<String>,
    /// Requests in flight at once (1 to 64).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub concurrency: usize,
    /// For image lists: only this platform of each multi-platform image (default: every platform).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// What the files are, when their names do not say: requirements, uv.lock, poetry.lock, pylock,
    /// package-lock, cargo.lock, go.sum or images.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// requirements*.txt, uv.lock, poetry.lock, pylock*.toml, package-lock.json, Cargo.lock, go.sum, images*.txt.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub fn run(args: WarmArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_inner(args: WarmArgs) -> Result<ExitCode, String> {
    if !(1..=MAX_CONCURRENCY).contains(&args.concurrency) {
        return Err(format!(
            "--concurrency {}: give 1 to {MAX_CONCURRENCY}",
            args.concurrency
        ));
    }
    let platform = match &args.platform {
        Some(p) => Some(Platform::parse(p).ok_or_else(|| {
            format!("--platform {p}: expected OS/ARCH or OS/ARCH/VARIANT (linux/amd64)")
        })?),
        None => None,
    };
    let forced = match &args.kind {
        Some(k) => Some(Kind::parse(k).ok_or_else(|| {
            format!(
                "--kind {k}: expected one of {}",
                Kind::ALL.map(Kind::as_str).join(", ")
            )
        })?),
        None => None,
    };
    let mut files = Vec::new();
    for path in &args.files {
        let shown = path.display();
        let size = std::fs::metadata(path)
            .map_err(|e| format!("{shown}: {e}"))?
            .len();
        if size > lockfile::MAX_FILE as u64 {
            return Err(format!(
                "{shown}: {size} bytes; at most {} are read",
                lockfile::MAX_FILE
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        let kind = forced
            .or_else(|| {
                path.file_name()
                    .and_then(|n| Kind::from_file_name(&n.to_string_lossy()))
            })
            .or_else(|| Kind::sniff(&text))
            .ok_or_else(|| {
                format!("{shown}: cannot tell what kind of file this is; say it with --kind")
            })?;
        let parsed = lockfile::parse(kind, &text).map_err(|e| format!("{shown} ({kind}): {e}"))?;
        for note in &parsed.skipped {
            eprintln!("note: {shown}: skipped {note}");
        }
        files.push((path.clone(), kind, parsed.wanted));
    }

    let fetch = HttpFetch::new(&args.url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let repos = served_repositories(&fetch).await;
        let mut plans: Vec<Plan> = Vec::new();
        for (path, kind, wanted) in files {
            let repo = match &repos {
                Ok(repos) => choose_repo(kind, repos, args.repo.as_deref())
                    .map_err(|e| format!("{}: {e}", path.display()))?,
                // wharf's own endpoints may not be reachable (an ingress that routes only repositories):
                // then the repository is the one named, or the one named like the format.
                Err(e) => match &args.repo {
                    Some(r) => r.clone(),
                    None => {
                        eprintln!(
                            "note: cannot list wharf's repositories ({e}); assuming `{}`",
                            kind.format()
                        );
                        kind.format().to_string()
                    }
                },
            };
            eprintln!(
                "{}: {} {} from {kind} into `{repo}`",
                path.display(),
                wanted.len(),
                if wanted.len() == 1 {
                    "entry"
                } else {
                    "entries"
                }
            );
            plans.push(Plan { repo, wanted });
        }
        let options = Options {
            concurrency: args.concurrency,
            platform,
        };
        let progress = Arc::new(Progress::default());
        let ticker = std::io::stderr().is_terminal().then(|| {
            let progress = progress.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(crate::PROGRESS_EVERY).await;
                    draw(&progress);
                }
            })
        });
        let summary = crate::warm(&fetch, &plans, &options, &progress).await;
        if let Some(ticker) = ticker {
            ticker.abort();
            draw(&progress);
            eprintln!();
        }
        for failure in summary.failed.iter().take(LISTED_FAILURES) {
            eprintln!("failed: {}: {}", failure.what, failure.reason);
        }
        if summary.failed.len() > LISTED_FAILURES {
            eprintln!(
                "failed: ... and {} more",
                summary.failed.len() - LISTED_FAILURES
            );
        }
        println!("{}", summary.line());
        Ok(if summary.failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// One progress line, redrawn in place.
fn draw(progress: &Progress) {
    let p = progress.snapshot();
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r\x1b[2K[{}/{}] {} fetched ({}) · {} cached · {} failed",
        p.done,
        p.total,
        p.fetched,
        human_bytes(p.bytes),
        p.cached,
        p.failed
    );
    let _ = err.flush();
}

/// `(name, format)` of every repository, from wharf's `/status`.
async fn served_repositories(fetch: &HttpFetch) -> Result<Vec<(String, String)>, String> {
    let answer = fetch
        .get(Request {
            path: "/status".into(),
            accept: Some("application/json"),
            keep_body: true,
        })
        .await?;
    if answer.status != 200 {
        return Err(format!("/status answered {}", answer.status));
    }
    let status: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|e| format!("/status is not wharf's JSON: {e}"))?;
    let repos = status["repositories"]
        .as_array()
        .ok_or("/status lists no repositories")?;
    Ok(repos
        .iter()
        .filter_map(|r| {
            Some((
                r["name"].as_str()?.to_string(),
                r["format"].as_str()?.to_string(),
            ))
        })
        .collect())
}
