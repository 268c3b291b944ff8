//! What `wharf env` prints for a generic repository: the URLs curl and wget fetch files through.

use url::Url;

/// Client settings for the repository served at `base` (e.g. `http://wharf:8080/releases/`); with the `apt`
/// preset, a deb822 `sources` stanza too.
pub fn client_settings(name: &str, preset: Option<&str>, base: &Url) -> String {
    let base = base.as_str();
    let mut text = format!(
        "# {name} (generic): <path> is what follows the upstream URL\n\
         export WHARF_{var}_URL={base}\n\
         # curl -fLO {base}<path>\n\
         # wget {base}<path>\n",
        var = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            })
            .collect::<String>(),
    );
    if preset == Some("apt") {
        text.push_str(&format!(
            "# apt: /etc/apt/sources.list.d/{name}.sources (suites and components as the archive has them;\n\
             # keep the archive's signing key in Signed-By)\n\
             # Types: deb\n\
             # URIs: {base}\n\
             # Suites: <suite>\n\
             # Components: main\n\
             # Signed-By: /usr/share/keyrings/<archive keyring>.gpg\n\
             # or one sources.list line: deb [signed-by=/usr/share/keyrings/<archive keyring>.gpg] {base} <suite> main\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_give_curl_and_wget_urls() {
        let base = Url::parse("http://127.0.0.1:8080/rel-eases/").unwrap();
        let text = client_settings("rel-eases", None, &base);
        assert!(text.contains("export WHARF_REL_EASES_URL=http://127.0.0.1:8080/rel-eases/\n"));
        assert!(text.contains("curl -fLO http://127.0.0.1:8080/rel-eases/<path>"));
        assert!(text.contains("wget http://127.0.0.1:8080/rel-eases/<path>"));
        assert!(!text.contains("URIs:"));
    }

    #[test]
    fn apt_preset_adds_a_deb822_stanza() {
        let base = Url::parse("http://127.0.0.1:8080/debian/").unwrap();
        let text = client_settings("debian", Some("apt"), &base);
        assert!(
            text.contains("# URIs: http://127.0.0.1:8080/debian/\n"),
            "{text}"
        );
        assert!(text.contains("# Types: deb\n"), "{text}");
        assert!(text.contains("deb [signed-by="), "{text}");
    }
}
