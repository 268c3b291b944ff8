//! The environment that sends the go command's module downloads through a Go repository served by wharf.

use url::Url;

/// Client settings for the repository served at `base` (wharf's URL for it, e.g. `http://wharf:8080/go/`).
pub fn client_settings(name: &str, base: &Url, checksum_databases: &[String]) -> String {
    let proxy = base.as_str().trim_end_matches('/');
    let sumdb = if checksum_databases.is_empty() {
        "# no checksum database is proxied (checksum_databases is empty): the go command asks its GOSUMDB\n\
         # directly, or set GONOSUMDB / GOPRIVATE for private modules\n"
            .to_string()
    } else {
        format!(
            "# checksum databases proxied through wharf: {}\n",
            checksum_databases.join(", ")
        )
    };
    format!(
        "# {name} (go)\n\
         export GOPROXY={proxy}\n\
         {sumdb}\
         # modules wharf must not see (private code): GONOPROXY=<module path patterns>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_proxy() {
        let base = Url::parse("http://127.0.0.1:8080/go/").unwrap();
        assert!(client_settings("go", &base, &[]).contains("GOPROXY=http://127.0.0.1:8080/go\n"));
        assert!(
            client_settings("go", &base, &["sum.example.org".into()]).contains("sum.example.org")
        );
    }
}
