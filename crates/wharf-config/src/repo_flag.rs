//! The `--repo NAME=FORMAT+URL` command-line syntax, producing the same [`RepoConfig`] a config file would.
//!
//! Checks are the ones the config file gets (`check::repo_checks`); errors come back as one readable string
//! for the CLI to print.

use crate::check;
use crate::formats::{self, FormatSpec, Upstreams};
use crate::model::RepoConfig;
use crate::net::{self, redact_url_text, UrlRole};

const SYNTAX: &str =
    "expected NAME=FORMAT+URL, e.g. \"pypi=pypi+https://<your index>/simple/\", or for oci \
NAME=oci+ALIAS=URL[,ALIAS=URL...], e.g. \"images=oci+docker.io=https://<registry>\"";

/// Parses a `--repo` flag value.
///
/// * `NAME=FORMAT+URL`: `pypi=pypi+https://<your index>/simple/`
/// * `FORMAT+URL`: the name defaults to the format (`npm+https://<your npm registry>/` is repository `npm`)
/// * oci: `NAME=oci+ALIAS=URL`, several upstreams separated by commas:
///   `images=oci+docker.io=https://reg.example.com,ghcr=https://mirror.example.com`
///
/// TTLs take their defaults. The result passes the same checks as a repository in a config file.
pub fn parse_repo_flag(s: &str, formats: &[FormatSpec]) -> Result<RepoConfig, String> {
    let text = s.trim();
    let shown = redact_url_text(text);
    let secrets = userinfo_parts(text);
    let fail = |reason: String| {
        // Whatever part of the flag a reason quotes (a name, a format, an alias), no credential survives.
        let mut message = format!("--repo {shown:?}: {reason}");
        for secret in &secrets {
            let quoted = secret.escape_debug().to_string();
            message = message
                .replace(*secret, "redacted")
                .replace(&quoted, "redacted");
        }
        message
    };

    let Some((head, target)) = text.split_once('+') else {
        return Err(fail(format!("missing `+URL`; {SYNTAX}")));
    };
    let (name, format_text) = head.split_once('=').unwrap_or((head, head));
    // The text is not echoed as written: a mistyped flag may hold credentials.
    let spec = formats::parse(formats, format_text).map_err(|unknown| {
        fail(format!(
            "unknown format {:?} ({})",
            redact_url_text(format_text),
            formats::unknown_hint(formats, &unknown)
        ))
    })?;
    let format = spec.format;
    let mut repo = RepoConfig::new(name.trim(), format);

    let url = |text: &str| {
        net::parse_url(text, UrlRole::Upstream)
            .map(net::with_trailing_slash)
            .map_err(|p| fail(format!("{} (hint: {})", p.message, p.hint)))
    };
    if let Upstreams::Aliased { .. } = spec.upstreams {
        for entry in target.split(',') {
            let Some((alias, target)) = entry.split_once('=') else {
                return Err(fail(format!(
                    "{format} upstream {:?} has no registry alias (hint: write ALIAS=URL, e.g. \
                     \"{}\")",
                    redact_url_text(entry),
                    spec.example_upstream().replace(": ", "=").replace('"', "")
                )));
            };
            repo.upstreams.push((alias.trim().to_owned(), url(target)?));
        }
    } else {
        repo.upstream = Some(url(target)?);
    }

    let problems = check::repo_checks(&repo, Some(spec), formats);
    if problems.is_empty() {
        Ok(repo)
    } else {
        let reasons: Vec<String> = problems
            .iter()
            .map(|e| match &e.hint {
                Some(hint) => format!("{} (hint: {hint})", e.message),
                None => e.message.clone(),
            })
            .collect();
        Err(fail(reasons.join("; ")))
    }
}

/// The parts of `text` that may be credentials: what stands before each `@`, back to the start of its URL
/// authority (`//`) or of the flag's field (`=`, `+`, `,`, `/`, another `@`).
fn userinfo_parts(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    for (at, _) in text.match_indices('@') {
        let start = text[..at]
            .rfind(['/', '=', '+', ',', '@'])
            .map_or(0, |i| i + 1);
        if start < at {
            parts.push(&text[start..at]);
        }
    }
    // Longest first, so a part that contains another is replaced whole.
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pypi_flag_gives_a_repository_with_defaults() {
        let repo = parse_repo_flag(
            "pypi=pypi+https://idx.example.org/simple",
            crate::fixture::FORMATS,
        )
        .unwrap();
        assert_eq!(repo.name, "pypi");
        assert_eq!(repo.format, crate::fixture::PYPI);
        assert_eq!(
            repo.upstream.unwrap().as_str(),
            "https://idx.example.org/simple/"
        );
        assert_eq!(repo.metadata_ttl, crate::DEFAULT_METADATA_TTL);
        assert_eq!(repo.negative_ttl, crate::DEFAULT_NEGATIVE_TTL);
        assert!(repo.upstreams.is_empty());
    }

    #[test]
    fn name_defaults_to_the_format() {
        let repo =
            parse_repo_flag("npm+https://npm.example.org/", crate::fixture::FORMATS).unwrap();
        assert_eq!(
            (repo.name.as_str(), repo.format),
            ("npm", crate::fixture::NPM)
        );
    }

    #[test]
    fn oci_flag_takes_aliased_upstreams() {
        let repo = parse_repo_flag(
            "images=oci+docker.io=https://reg.example.com,ghcr=http://10.0.0.5:5000",
            crate::fixture::FORMATS,
        )
        .unwrap();
        assert_eq!(repo.format, crate::fixture::OCI);
        assert_eq!(repo.upstream, None);
        let upstreams: Vec<(&str, &str)> = repo
            .upstreams
            .iter()
            .map(|(alias, url)| (alias.as_str(), url.as_str()))
            .collect();
        assert_eq!(
            upstreams,
            [
                ("docker.io", "https://reg.example.com/"),
                ("ghcr", "http://10.0.0.5:5000/")
            ]
        );
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        for (flag, reason) in [
            ("pypi", "missing `+URL`"),
            ("pypi=pip+https://idx.example.org/", "did you mean `pypi`?"),
            ("x=docker+https://reg.example.com", "did you mean `oci`?"),
            (
                "pypi=pypi+idx.example.org/simple",
                "must start with http:// or https://",
            ),
            (
                "images=oci+https://reg.example.com",
                "has no registry alias",
            ),
            (
                "Metrics=pypi+https://idx.example.org/",
                "invalid repository name",
            ),
            ("metrics=pypi+https://idx.example.org/", "reserved"),
            ("=pypi+https://idx.example.org/", "invalid repository name"),
            (
                "p=pypi+https://u:hunter2@idx.example.org/",
                "credentials_file",
            ),
            (
                "images=oci+Docker.IO=https://reg.example.com",
                "invalid registry alias",
            ),
        ] {
            let error = parse_repo_flag(flag, crate::fixture::FORMATS).unwrap_err();
            assert!(error.contains(reason), "{flag:?}: {error}");
            assert!(!error.contains("hunter2"), "{flag:?}: {error}");
        }
    }
}
