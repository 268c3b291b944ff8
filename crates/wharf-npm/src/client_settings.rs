//! The settings that point npm, pnpm and yarn at an npm repository served by wharf.

use url::Url;

/// Client settings for the repository served at `base` (wharf's URL for it, e.g. `http://wharf:8080/npm/`).
pub fn client_settings(name: &str, base: &Url) -> String {
    format!(
        "# {name} (npm)\n\
         # environment (npm, pnpm, yarn 1):\n\
         export npm_config_registry={base}\n\
         # yarn 2+:\n\
         export YARN_NPM_REGISTRY_SERVER={base}\n\
         # or .npmrc (per project or ~/.npmrc):\n\
         registry={base}\n\
         # Lock files record each tarball's URL: lock files written through wharf point at wharf. For lock files\n\
         # written against another registry, npm replaces that registry's host with this one; npm releases that\n\
         # keep only the host drop the `/{name}/` path, so regenerate such lock files through wharf.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_registry() {
        let text = client_settings("npm", &Url::parse("http://127.0.0.1:8080/npm/").unwrap());
        assert!(text.contains("npm_config_registry=http://127.0.0.1:8080/npm/"));
        assert!(text.contains("YARN_NPM_REGISTRY_SERVER=http://127.0.0.1:8080/npm/"));
        assert!(text.contains("registry=http://127.0.0.1:8080/npm/\n"));
    }
}
