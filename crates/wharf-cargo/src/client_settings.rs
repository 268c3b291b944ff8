//! The cargo configuration that sends crate downloads through a cargo repository served by wharf.

use url::Url;

/// Client settings for the repository served at `base` (wharf's URL for it, e.g. `http://wharf:8080/cargo/`).
pub fn client_settings(name: &str, base: &Url) -> String {
    format!(
        "# {name} (cargo): cargo cannot be redirected by environment variables alone (source replacement\n\
         # exists only in configuration files). Put this in $CARGO_HOME/config.toml or .cargo/config.toml:\n\
         [source.crates-io]\n\
         replace-with = \"wharf\"\n\
         [source.wharf]\n\
         registry = \"sparse+{base}\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_replace_the_default_source() {
        let text = client_settings(
            "cargo",
            &Url::parse("http://127.0.0.1:8080/cargo/").unwrap(),
        );
        assert!(text.contains("[source.crates-io]\nreplace-with = \"wharf\""));
        assert!(text.contains("registry = \"sparse+http://127.0.0.1:8080/cargo/\""));
    }
}
