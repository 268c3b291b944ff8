//! What `wharf env` prints for an oci repository: a containerd `hosts.toml` per upstream registry, a
//! `registries.conf` mirror entry per registry for CRI-O and podman, and Docker's `registry-mirrors` when a
//! `docker.io` upstream exists.

use std::fmt::Write as _;

use url::Url;

use crate::route::DOCKER_HUB;

/// Client settings for repository `repo` whose upstreams are `upstreams` (alias, URL), with wharf reachable at
/// `wharf` (its root URL: the registry API is always at `/v2/`).
pub fn client_settings(repo: &str, upstreams: &[(String, Url)], wharf: &Url) -> String {
    let mut root = wharf.clone();
    root.set_path("");
    root.set_query(None);
    let host_url = root.as_str().trim_end_matches('/').to_string();
    let authority = match (root.host_str(), root.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        _ => host_url.clone(),
    };
    let insecure = root.scheme() == "http";
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {repo} (oci): container images through wharf at {host_url}/v2/"
    );
    for (alias, url) in upstreams {
        let server = url.as_str().trim_end_matches('/');
        let _ = writeln!(
            out,
            "\n# containerd: /etc/containerd/certs.d/{alias}/hosts.toml (with config_path = \"/etc/containerd/certs.d\")\n\
             server = \"{server}\"\n\n\
             [host.\"{host_url}\"]\n  capabilities = [\"pull\", \"resolve\"]"
        );
    }
    let _ = writeln!(
        out,
        "\n# CRI-O and podman: /etc/containers/registries.conf.d/wharf.conf"
    );
    for (alias, url) in upstreams {
        let location = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            _ => alias.clone(),
        };
        let _ = writeln!(
            out,
            "[[registry]]\nprefix = \"{alias}\"\nlocation = \"{location}\"\n[[registry.mirror]]\nlocation = \"{authority}/{alias}\"{}",
            if insecure { "\ninsecure = true" } else { "" }
        );
    }
    if upstreams.iter().any(|(alias, _)| alias == DOCKER_HUB) {
        let _ = writeln!(
            out,
            "\n# Docker daemon (Docker Hub images only): /etc/docker/daemon.json\n{{\"registry-mirrors\": [\"{host_url}\"]{}}}",
            if insecure {
                format!(", \"insecure-registries\": [\"{authority}\"]")
            } else {
                String::new()
            }
        );
    }
    out
}

/// What `wharf env` adds for hosted namespaces: how CI pushes images and build caches there.
pub fn hosted_settings(hosted: &crate::hosted::HostedConfig, wharf: &Url) -> String {
    let mut root = wharf.clone();
    root.set_path("");
    root.set_query(None);
    let authority = match (root.host_str(), root.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        _ => root.as_str().trim_end_matches('/').to_string(),
    };
    let insecure = root.scheme() == "http";
    let token = hosted.token_file.display();
    let first = hosted.namespaces.first().map_or("ci", String::as_str);
    let cache = hosted
        .namespaces
        .iter()
        .find(|n| n.as_str() == "cache")
        .map_or(first, String::as_str);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n# Hosted namespaces (push here; never forwarded upstream): {}",
        hosted
            .namespaces
            .iter()
            .map(|n| format!("{authority}/{n}/"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "# Pushes need the token in {token} as the password (any user name); pulls are anonymous.\n\
         # skopeo copy{tls} --dest-creds \"ci:$(cat {token})\" docker-archive:image.tar docker://{authority}/{first}/app:$TAG\n\
         # docker login {authority} -u ci --password-stdin < {token}\n\
         # docker buildx build --cache-to type=registry,ref={authority}/{cache}/app:buildcache,mode=max \\\n\
         #   --cache-from type=registry,ref={authority}/{cache}/app:buildcache .\n\
         # kaniko: --cache=true --cache-repo={authority}/{cache}/app{kaniko}",
        tls = if insecure { " --dest-tls-verify=false" } else { "" },
        kaniko = if insecure {
            format!(" --insecure-registry={authority}")
        } else {
            String::new()
        },
    );
    if insecure {
        let _ = writeln!(
            out,
            "\n# BuildKit (buildkitd.toml) for a plain-HTTP registry:\n[registry.\"{authority}\"]\n  http = true\n  insecure = true"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_toml_per_upstream_and_mirrors() {
        let upstreams = vec![
            (
                "docker.io".to_string(),
                Url::parse("https://hub-mirror.example.com/").unwrap(),
            ),
            (
                "ghcr.io".to_string(),
                Url::parse("https://ghcr.example.com:8443/").unwrap(),
            ),
        ];
        let text = client_settings(
            "images",
            &upstreams,
            &Url::parse("http://wharf.ci:8080/images/").unwrap(),
        );
        assert!(text.contains("/etc/containerd/certs.d/docker.io/hosts.toml"));
        assert!(text.contains("server = \"https://hub-mirror.example.com\""));
        assert!(text
            .contains("[host.\"http://wharf.ci:8080\"]\n  capabilities = [\"pull\", \"resolve\"]"));
        assert!(text.contains("prefix = \"ghcr.io\"\nlocation = \"ghcr.example.com:8443\""));
        assert!(text.contains("location = \"wharf.ci:8080/ghcr.io\"\ninsecure = true"));
        assert!(text.contains("\"registry-mirrors\": [\"http://wharf.ci:8080\"]"));
    }

    #[test]
    fn hosted_namespaces_get_push_lines() {
        let hosted = crate::hosted::HostedConfig {
            namespaces: vec!["ci".into(), "cache".into()],
            token_file: "/etc/wharf/push-token".into(),
            retention: Default::default(),
        };
        let text = hosted_settings(&hosted, &Url::parse("http://wharf.ci:8080/").unwrap());
        assert!(
            text.contains("wharf.ci:8080/ci/, wharf.ci:8080/cache/"),
            "{text}"
        );
        assert!(
            text.contains("--dest-creds \"ci:$(cat /etc/wharf/push-token)\""),
            "{text}"
        );
        assert!(
            text.contains("ref=wharf.ci:8080/cache/app:buildcache,mode=max"),
            "{text}"
        );
        assert!(
            text.contains("[registry.\"wharf.ci:8080\"]\n  http = true"),
            "{text}"
        );
        assert!(
            text.contains("--cache-repo=wharf.ci:8080/cache/app --insecure-registry=wharf.ci:8080"),
            "{text}"
        );
        let https = hosted_settings(&hosted, &Url::parse("https://wharf.example/").unwrap());
        assert!(
            !https.contains("http = true") && !https.contains("tls-verify"),
            "{https}"
        );
    }
}
