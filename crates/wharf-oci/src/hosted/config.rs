//! The `hosted:` section of an oci repository: which namespaces accept pushes, the push token, retention.

use std::path::PathBuf;
use std::time::Duration;

use wharf_cache::BuildError;

/// What `hosted:` says, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostedConfig {
    /// First name components that are hosted here (`/v2/ci/...`): pushed to, never forwarded upstream.
    pub namespaces: Vec<String>,
    /// The file holding the push token (HTTP Basic password; any user name).
    pub token_file: PathBuf,
    pub retention: Retention,
}

/// `hosted.retention`: what the background sweep removes. Nothing is removed for a key that is absent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Retention {
    /// Tags kept per repository name, newest pushes first.
    pub keep_tags: Option<u64>,
    /// Manifests no tag (and no kept manifest) names are removed this long after their push.
    pub untagged_after: Option<Duration>,
    /// Hosted content above this many bytes loses its oldest tags first.
    pub max_size: Option<u64>,
}

impl Retention {
    pub fn is_empty(&self) -> bool {
        self.keep_tags.is_none() && self.untagged_after.is_none() && self.max_size.is_none()
    }
}

/// Most namespaces one repository hosts (each is a label in metrics).
pub const MAX_NAMESPACES: usize = 64;

impl HostedConfig {
    /// The rules `config check` and `serve` apply: namespaces are single valid name components, distinct,
    /// and never an upstream alias (a name cannot be both proxied and hosted).
    pub fn check(&self, aliases: &[String]) -> Result<(), BuildError> {
        if self.namespaces.is_empty() {
            return Err(BuildError::at(
                "hosted.namespaces",
                "list at least one namespace that accepts pushes, e.g. `namespaces: [\"ci\"]`",
            ));
        }
        if self.namespaces.len() > MAX_NAMESPACES {
            return Err(BuildError::at(
                "hosted.namespaces",
                format!(
                    "{} namespaces listed; at most {MAX_NAMESPACES}",
                    self.namespaces.len()
                ),
            ));
        }
        for (i, ns) in self.namespaces.iter().enumerate() {
            if !crate::route::is_component(ns) {
                return Err(BuildError::at(
                    "hosted.namespaces",
                    format!(
                        "[{i}] `{ns}` is not a repository name component: lowercase letters and digits, separated by '.', '_' or '-' (no '/')"
                    ),
                ));
            }
            if aliases.iter().any(|a| a == ns) {
                return Err(BuildError::at(
                    "hosted.namespaces",
                    format!(
                        "[{i}] `{ns}` is also an upstream alias (upstreams.{ns}); a namespace is either proxied or hosted: rename the namespace"
                    ),
                ));
            }
            if self.namespaces[..i].contains(ns) {
                return Err(BuildError::at(
                    "hosted.namespaces",
                    format!("[{i}] `{ns}` is listed twice"),
                ));
            }
        }
        if self.retention.keep_tags == Some(0) {
            return Err(BuildError::at(
                "hosted.retention.keep_tags",
                "0 would remove every tag as soon as it is pushed; use at least 1, or leave it out to keep all",
            ));
        }
        Ok(())
    }

    /// Whether the first component of a request's name is hosted.
    pub fn hosts(&self, name: &[String]) -> bool {
        name.first()
            .is_some_and(|first| self.namespaces.contains(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(namespaces: &[&str]) -> HostedConfig {
        HostedConfig {
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            token_file: PathBuf::from("/dev/null"),
            retention: Retention::default(),
        }
    }

    #[test]
    fn a_namespace_that_is_an_alias_is_refused_with_its_field_path() {
        let aliases = vec!["docker.io".to_string(), "ghcr".to_string()];
        let err = cfg(&["ci", "ghcr"]).check(&aliases).unwrap_err();
        let text = err.render("images");
        assert!(
            text.starts_with("repositories.images.hosted.namespaces: [1] `ghcr`"),
            "{text}"
        );
        assert!(text.contains("upstream alias"), "{text}");
        assert!(cfg(&["ci", "cache"]).check(&aliases).is_ok());
    }

    #[test]
    fn bad_namespaces_are_refused() {
        for bad in [&[][..], &["a/b"], &["UP"], &["ci", "ci"]] {
            assert!(cfg(bad).check(&[]).is_err(), "{bad:?}");
        }
        let mut keep0 = cfg(&["ci"]);
        keep0.retention.keep_tags = Some(0);
        assert_eq!(
            keep0.check(&[]).unwrap_err().key,
            Some("hosted.retention.keep_tags")
        );
    }

    #[test]
    fn hosts_matches_the_first_component_only() {
        let c = cfg(&["ci"]);
        let name = |s: &str| s.split('/').map(str::to_string).collect::<Vec<_>>();
        assert!(c.hosts(&name("ci/app")));
        assert!(!c.hosts(&name("library/ci")));
        assert!(!c.hosts(&name("cix/app")));
    }
}
