//! `wharf warm`: fill a running wharf from the lock files a team already has, so the first jobs of a burst
//! (or a new replica, or the morning after a purge) find everything cached.
//!
//! - [`lockfile`] reads `requirements*.txt`, `uv.lock`, `poetry.lock`, `pylock.toml`, `package-lock.json`,
//!   `Cargo.lock`, `go.sum` and image lists into [`Wanted`] artifacts (pure parsing);
//! - [`warm`] requests each artifact once through a [`Fetch`] (HTTP for the CLI, in-process for
//!   `POST /admin/warm`), with bounded concurrency, and counts what wharf already had.
//!
//! This crate knows wharf's URL layout per format, not how wharf caches: it must not depend on the cache
//! crates.

pub mod cli;
mod http;
pub mod lockfile;
pub mod oci;
mod run;

pub use http::HttpFetch;
pub use lockfile::{parse, Kind, ParseError, Parsed, Wanted};
pub use oci::Platform;
pub use run::{
    go_escape, human_bytes, normalize_project, warm, Answer, BoxFuture, Failure, Fetch, Options,
    Plan, Progress, ProgressSnapshot, Request, Summary, CACHE_HEADER, MAX_CONCURRENCY,
    PROGRESS_EVERY,
};

/// The repository that serves `kind`: the one named (checked against its format), else the only
/// repository of that format. `repos` are `(name, format)` as wharf lists them in `/status`.
pub fn choose_repo(
    kind: Kind,
    repos: &[(String, String)],
    named: Option<&str>,
) -> Result<String, String> {
    let format = kind.format();
    if let Some(name) = named {
        return match repos.iter().find(|(n, _)| n == name) {
            Some((n, f)) if f == format => Ok(n.clone()),
            Some((n, f)) => Err(format!(
                "repository `{n}` is {f}, and a {kind} file needs a {format} repository"
            )),
            None => Err(format!(
                "no repository named `{name}` (wharf serves: {})",
                list(repos)
            )),
        };
    }
    let matching: Vec<&String> = repos
        .iter()
        .filter(|(_, f)| f == format)
        .map(|(n, _)| n)
        .collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "wharf has no {format} repository for this {kind} file (it serves: {})",
            list(repos)
        )),
        many => Err(format!(
            "wharf has several {format} repositories ({}): choose one with --repo",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn list(repos: &[(String, String)]) -> String {
    if repos.is_empty() {
        return "none".into();
    }
    repos
        .iter()
        .map(|(n, f)| format!("{n} ({f})"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_is_the_named_one_or_the_only_one_of_the_format() {
        let repos = vec![
            ("py".to_string(), "pypi".to_string()),
            ("npm".to_string(), "npm".to_string()),
            ("py2".to_string(), "pypi".to_string()),
        ];
        assert_eq!(choose_repo(Kind::PackageLock, &repos, None).unwrap(), "npm");
        assert!(choose_repo(Kind::UvLock, &repos, None)
            .unwrap_err()
            .contains("choose one with --repo"));
        assert_eq!(
            choose_repo(Kind::UvLock, &repos, Some("py2")).unwrap(),
            "py2"
        );
        assert!(choose_repo(Kind::UvLock, &repos, Some("npm"))
            .unwrap_err()
            .contains("needs a pypi repository"));
        assert!(choose_repo(Kind::GoSum, &repos, None)
            .unwrap_err()
            .contains("no go repository"));
    }
}
