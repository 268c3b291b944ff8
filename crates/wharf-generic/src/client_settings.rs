//! What `wharf env` prints for a generic repository: the URLs curl and wget fetch files through.

use url::Url;

/// Client settings for the repository served at `base` (e.g. `http://wharf:8080/releases/`).
pub fn client_settings(name: &str, base: &Url) -> String {
    let base = base.as_str();
    format!(
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
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_give_curl_and_wget_urls() {
        let base = Url::parse("http://127.0.0.1:8080/rel-eases/").unwrap();
        let text = client_settings("rel-eases", &base);
        assert!(text.contains("export WHARF_REL_EASES_URL=http://127.0.0.1:8080/rel-eases/\n"));
        assert!(text.contains("curl -fLO http://127.0.0.1:8080/rel-eases/<path>"));
        assert!(text.contains("wget http://127.0.0.1:8080/rel-eases/<path>"));
    }
}
