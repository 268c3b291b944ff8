//! What `wharf env` prints for an Actions cache repository.

use url::Url;

/// The runner environment for wharf's root `base` and the repository at `repo_base`.
pub fn client_settings(name: &str, base: &Url, repo_base: &Url) -> String {
    format!(
        "# {name} (actions-cache): the runner's job environment (see the README for how to set it)\n\
         ACTIONS_RESULTS_URL={base}\n\
         ACTIONS_CACHE_SERVICE_V2=true\n\
         # v1 clients (GitHub Enterprise Server): ACTIONS_CACHE_URL={repo_base}\n\
         # BuildKit: --cache-to type=gha,url_v2={base},token=$ACTIONS_RUNTIME_TOKEN,mode=max\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_both_services() {
        let base = Url::parse("http://wharf:8080/").unwrap();
        let repo = Url::parse("http://wharf:8080/actions/").unwrap();
        let text = client_settings("actions", &base, &repo);
        assert!(text.contains("ACTIONS_RESULTS_URL=http://wharf:8080/\n"));
        assert!(text.contains("ACTIONS_CACHE_URL=http://wharf:8080/actions/"));
        assert!(text.contains("url_v2=http://wharf:8080/"));
    }
}
