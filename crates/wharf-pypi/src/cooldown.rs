//! The release cooldown (`min_age`): files uploaded less than `min_age` ago (PEP 700 `upload-time` on the
//! upstream's JSON pages) are removed from project pages, and a direct request for one is refused with why.
//! Resolvers then pick the newest version old enough.
//!
//! Files without an upload time (an upstream that serves only HTML pages, which carry none) cannot be
//! judged: they are served, and wharf logs once per repository that the cooldown does not apply there.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::model::{FileLink, ProjectPage};
use crate::name::normalize;

pub(crate) struct Cooldown {
    repo: String,
    min_age: Duration,
    /// Normalised project names the cooldown does not apply to.
    exempt: HashSet<String>,
    warned_no_times: AtomicBool,
}

impl Cooldown {
    pub(crate) fn new(repo: &str, min_age: Duration, exempt: &[String]) -> Cooldown {
        Cooldown {
            repo: repo.to_string(),
            min_age,
            exempt: exempt.iter().map(|n| normalize(n)).collect(),
            warned_no_times: AtomicBool::new(false),
        }
    }

    /// How long ago `link` was uploaded, when that is less than `min_age` (and the project is not exempt).
    fn too_new(&self, project: &str, link: &FileLink, now: i64) -> Option<i64> {
        if self.exempt.contains(project) {
            return None;
        }
        let Some(uploaded) = link
            .upload_time
            .as_deref()
            .and_then(wharf_text::parse_rfc3339)
        else {
            if !self.warned_no_times.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    repo = %self.repo,
                    project,
                    "min_age: the upstream gives no upload time for some files (an HTML-only index?); those files are served, the cooldown cannot apply to them"
                );
            }
            return None;
        };
        let age = now - uploaded;
        (age < self.min_age.as_secs() as i64).then_some(age.max(0))
    }

    /// `page` without the files too new to serve, and how many were removed; `None` when none were.
    pub(crate) fn filter(&self, project: &str, page: &ProjectPage) -> Option<(ProjectPage, u32)> {
        let now = now_secs();
        let (kept, hidden): (Vec<&FileLink>, Vec<&FileLink>) = page
            .files
            .iter()
            .partition(|f| self.too_new(project, f, now).is_none());
        if hidden.is_empty() {
            return None;
        }
        // A version listed (API 1.1) only through hidden files is hidden too.
        let versions = page.versions.as_ref().map(|versions| {
            let hidden_versions: HashSet<&str> = hidden
                .iter()
                .filter_map(|f| file_version(&f.filename))
                .collect();
            let kept_versions: HashSet<&str> = kept
                .iter()
                .filter_map(|f| file_version(&f.filename))
                .collect();
            versions
                .iter()
                .filter(|v| {
                    !hidden_versions.contains(v.as_str()) || kept_versions.contains(v.as_str())
                })
                .cloned()
                .collect()
        });
        let count = u32::try_from(hidden.len()).unwrap_or(u32::MAX);
        Some((
            ProjectPage {
                name: page.name.clone(),
                versions,
                files: kept.into_iter().cloned().collect(),
            },
            count,
        ))
    }

    /// Why `link` is not served, for the 404 of a direct request; `None` when it is served.
    pub(crate) fn why_held_back(&self, project: &str, link: &FileLink) -> Option<String> {
        let age = self.too_new(project, link, now_secs())?;
        let wait = self.min_age.as_secs() as i64 - age;
        Some(format!(
            "`{}` was uploaded {} ago; repository `{}` holds back files younger than {} (min_age): it is served in {}, or add `{project}` to min_age_exempt",
            link.filename,
            span(age),
            self.repo,
            wharf_config::format_duration(self.min_age),
            span(wait),
        ))
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `3d 4h`, `2h 5m`, `40s`.
fn span(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs / 60 % 60),
        _ => format!("{}d {}h", secs / 86400, secs / 3600 % 24),
    }
}

/// The version in a distribution file name (`name-1.0-py3-none-any.whl`, `name-1.0.tar.gz`).
fn file_version(filename: &str) -> Option<&str> {
    if let Some(stem) = filename.strip_suffix(".whl") {
        return stem.split('-').nth(1);
    }
    let stem = [".tar.gz", ".zip", ".tar.bz2"]
        .iter()
        .find_map(|ext| filename.strip_suffix(ext))?;
    stem.rsplit_once('-').map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(filename: &str, uploaded: Option<i64>) -> FileLink {
        FileLink {
            filename: filename.into(),
            url: url::Url::parse(&format!("http://h/{filename}")).unwrap(),
            hashes: Default::default(),
            requires_python: None,
            yanked: None,
            core_metadata: None,
            size: None,
            upload_time: uploaded.map(wharf_text::rfc3339),
        }
    }

    #[test]
    fn files_younger_than_min_age_are_hidden_unless_exempt_or_undated() {
        let now = now_secs();
        let page = ProjectPage {
            name: "demo".into(),
            versions: Some(vec!["1.0".into(), "2.0".into()]),
            files: vec![
                link("demo-1.0-py3-none-any.whl", Some(now - 10 * 86400)),
                link("demo-2.0-py3-none-any.whl", Some(now - 3600)),
                link("demo-2.0.tar.gz", None),
            ],
        };
        let c = Cooldown::new(
            "pypi",
            Duration::from_secs(3 * 86400),
            &["Other_Pkg".into()],
        );
        let (filtered, hidden) = c.filter("demo", &page).unwrap();
        assert_eq!(hidden, 1);
        let names: Vec<&str> = filtered.files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(names, ["demo-1.0-py3-none-any.whl", "demo-2.0.tar.gz"]);
        assert_eq!(filtered.versions.unwrap(), ["1.0", "2.0"]);
        assert!(c.filter("other-pkg", &page).is_none());
        let why = c.why_held_back("demo", &page.files[1]).unwrap();
        assert!(
            why.contains("uploaded 1h 0m ago") && why.contains("min_age"),
            "{why}"
        );
        assert!(c.why_held_back("demo", &page.files[0]).is_none());
    }
}
