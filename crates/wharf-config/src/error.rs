//! Configuration errors: one [`ConfigError`] per problem, each pointing at a field path and saying what
//! would fix it, and [`ConfigErrors`], the non-empty list a load or validation returns.
//!
//! This module only formats; deciding what is wrong lives in `walk` (shape and values) and `check`
//! (semantics).

use std::fmt;

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the offending field, e.g. `repositories.pypi.upstream`; empty for the whole file.
    pub path: String,
    /// What is wrong with the value found.
    pub message: String,
    /// What would fix it, when there is something useful to say.
    pub hint: Option<String>,
}

impl ConfigError {
    /// An error at `path` without a hint. A `user:password@` in a URL the message quotes is redacted, so
    /// no error, wherever it is printed, echoes a credential from the config.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: redacted(message.into()),
            hint: None,
        }
    }

    /// Adds (or replaces) the hint (redacted like the message).
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(redacted(hint.into()));
        self
    }
}

fn redacted(text: String) -> String {
    match crate::net::redact_secrets(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(clean) => clean,
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration, in the order they were found (file order where possible).
///
/// Displays as one error per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no errors (never the case for an `Err` returned by this crate).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors in order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// The first error whose path is exactly `path`, if any.
    pub fn at(&self, path: &str) -> Option<&ConfigError> {
        self.0.iter().find(|e| e.path == path)
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_puts_one_error_per_line_with_path_and_hint() {
        let errors = ConfigErrors(vec![
            ConfigError::new("storage.max_size", "\"lots\" is not a size")
                .with_hint("expected a size like \"50GiB\""),
            ConfigError::new("", "cannot read `wharf.yaml`"),
        ]);
        assert_eq!(
            errors.to_string(),
            "storage.max_size: \"lots\" is not a size (hint: expected a size like \"50GiB\")\n\
             cannot read `wharf.yaml`"
        );
    }

    #[test]
    fn no_error_echoes_a_credential_from_the_config() {
        let yaml = "listen: \"http://alice:PASSWORD@h:8080\"\n\
                    public_url: \"http://alice:PASSWORD@h:99999/\"\n\
                    repositories:\n  p:\n    format: pypi\n\
                    \x20   upstream: \"http://alice:PASSWORD@h/simple/\"\n\
                    \x20   file_hosts: [\"alice:PASSWORD@h\", \"http://alice:PASSWORD@h/\"]\n\
                    \x20   metadata_ttl: \"http://alice:PASSWORD@x\"\n";
        let errors = crate::Config::from_yaml_str(yaml, crate::fixture::FORMATS).unwrap_err();
        assert!(errors.len() >= 5, "{errors}");
        let shown = errors.to_string();
        assert!(!shown.contains("PASSWORD"), "{shown}");
    }
}
