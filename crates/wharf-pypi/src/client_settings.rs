//! The Python side of the user's machine: which index pip/uv are set up to use (so `wharf serve` with no
//! configuration can stand in front of it), and the settings that point pip, uv and poetry at wharf.

use std::path::PathBuf;
use std::process::Command;

use url::Url;

/// The index the user's own Python tooling uses, and where that was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectedIndex {
    pub url: Url,
    pub source: String,
}

/// Finds the user's index: `PIP_INDEX_URL`, `UV_DEFAULT_INDEX`/`UV_INDEX_URL`, pip's configuration files, and
/// last pip's own built-in default (asked from the installed pip, so wharf itself names no index).
pub fn detect_index() -> Option<DetectedIndex> {
    for var in ["PIP_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX_URL"] {
        if let Some(url) = std::env::var(var).ok().and_then(|v| parse_index_url(&v)) {
            return Some(DetectedIndex {
                url,
                source: format!("environment variable {var}"),
            });
        }
    }
    // pip reads these in order; a later file overrides an earlier one.
    let mut found = None;
    for path in pip_config_files() {
        if let Some(url) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| index_url_from_ini(&t))
        {
            found = Some(DetectedIndex {
                url,
                source: format!("pip configuration {}", path.display()),
            });
        }
    }
    if found.is_some() {
        return found;
    }
    pip_builtin_default()
}

fn parse_index_url(text: &str) -> Option<Url> {
    let url = Url::parse(text.split_whitespace().next()?).ok()?;
    matches!(url.scheme(), "http" | "https").then_some(url)
}

fn pip_config_files() -> Vec<PathBuf> {
    let mut files = vec![
        PathBuf::from("/etc/pip.conf"),
        PathBuf::from("/etc/xdg/pip/pip.conf"),
    ];
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(home) = &home {
        files.push(home.join(".pip/pip.conf"));
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".config")));
    if let Some(xdg) = xdg {
        files.push(xdg.join("pip/pip.conf"));
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        files.push(PathBuf::from(venv).join("pip.conf"));
    }
    match std::env::var_os("PIP_CONFIG_FILE") {
        // pip's way to say "read no configuration file".
        Some(f) if f == "/dev/null" || f == "os.devnull" => Vec::new(),
        Some(f) => {
            files.push(PathBuf::from(f));
            files
        }
        None => files,
    }
}

/// `index-url` from the `[global]` or `[install]` section of a pip INI file.
fn index_url_from_ini(text: &str) -> Option<Url> {
    let mut section = String::new();
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_ascii_lowercase();
            continue;
        }
        if section != "global" && section != "install" {
            continue;
        }
        if let Some((key, value)) = line.split_once(['=', ':']) {
            let key = key.trim().replace('_', "-").to_ascii_lowercase();
            if key == "index-url" {
                found = parse_index_url(value.trim()).or(found);
            }
        }
    }
    found
}

fn pip_builtin_default() -> Option<DetectedIndex> {
    const ASK: &str = "from pip._internal.models.index import PyPI; print(PyPI.simple_url)";
    for python in ["python3", "python"] {
        let Ok(out) = Command::new(python).args(["-c", ASK]).output() else {
            continue;
        };
        if !out.status.success() {
            continue;
        }
        if let Some(url) = parse_index_url(String::from_utf8_lossy(&out.stdout).trim()) {
            return Some(DetectedIndex {
                url,
                source: format!("the default index of the pip installed for {python}"),
            });
        }
    }
    None
}

/// Client settings pointing pip, uv and poetry at the repository served at `base` (wharf's URL for it,
/// e.g. `http://wharf:8080/pypi/`).
pub fn client_settings(name: &str, base: &Url) -> String {
    let index = base
        .join("simple/")
        .map(|u| u.to_string())
        .unwrap_or_else(|_| format!("{base}simple/"));
    let host = base.host_str().unwrap_or("localhost");
    let insecure = if base.scheme() == "http" {
        format!("\ntrusted-host = {host}")
    } else {
        String::new()
    };
    let insecure_env = if base.scheme() == "http" {
        format!("\nexport PIP_TRUSTED_HOST={host}")
    } else {
        String::new()
    };
    format!(
        "# {name} (pypi)\n\
         # environment (pip, uv):\n\
         export PIP_INDEX_URL={index}{insecure_env}\n\
         export UV_DEFAULT_INDEX={index}\n\
         # or pip.conf:\n\
         [global]\n\
         index-url = {index}{insecure}\n\
         # or uv.toml / pyproject [tool.uv]:\n\
         [[index]]\n\
         url = \"{index}\"\n\
         default = true\n\
         # poetry (per project):\n\
         #   poetry source add --priority=primary wharf {index}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_index_url() {
        let text = "[global]\ntimeout = 60\nindex-url = https://idx.example/simple/\n[install]\n";
        assert_eq!(
            index_url_from_ini(text).unwrap().as_str(),
            "https://idx.example/simple/"
        );
        let text = "[install]\nindex_url: http://127.0.0.1:9/simple\n";
        assert_eq!(
            index_url_from_ini(text).unwrap().as_str(),
            "http://127.0.0.1:9/simple"
        );
        assert!(index_url_from_ini("[freeze]\nindex-url = https://x.example/\n").is_none());
        assert!(index_url_from_ini("[global]\nindex-url = not a url\n").is_none());
    }

    #[test]
    fn settings_name_the_index() {
        let text = client_settings("pypi", &Url::parse("http://127.0.0.1:8080/pypi/").unwrap());
        assert!(text.contains("PIP_INDEX_URL=http://127.0.0.1:8080/pypi/simple/"));
        assert!(text.contains("trusted-host = 127.0.0.1"));
    }
}
