//! The deployment files: the Helm chart rendered by a real `helm`, its manifests validated against the
//! Kubernetes API schemas (`kubernetes-validate`, offline) and its ServiceMonitor and PrometheusRule against the
//! prometheus-operator CRD schemas (`@kubernetes-models/prometheus-operator`, with node), bad values refused with the field path, the
//! rendered wharf config accepted by `wharf config check`, alert rules checked and unit-tested by `promtool`
//! (`deploy/tests/alerts.test.yaml`), every metric the rules and the dashboard name exported by a running
//! wharf, the runner examples and the Dockerfile.
//!
//! `scripts/test` installs the tools into `~/.cache/wharf/test-tools` (see `tool_dir`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;
use serde_yaml_ng::Value;
use wharf_testkit::{wheel, Project, PypiUpstream};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chart_dir() -> PathBuf {
    repo_root().join("deploy/helm/wharf")
}

fn examples_dir() -> PathBuf {
    repo_root().join("deploy/examples")
}

/// Where `scripts/test` puts the tools: `$WHARF_TOOLS_DIR`, else `~/.cache/wharf/test-tools`.
fn tool_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WHARF_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/wharf/test-tools")
}

fn required() -> bool {
    std::env::var("WHARF_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

fn missing(what: &str) -> Option<Command> {
    assert!(
        !required(),
        "{what} is required (WHARF_REQUIRE_TOOLS=1) but not available; run scripts/test to install it"
    );
    eprintln!("SKIP: {what} is not available (scripts/test installs it)");
    None
}

/// A command for `name` from the tool directory or `PATH`, or `None` (test skips; fails under CI).
fn tool(name: &str, probe: &[&str]) -> Option<Command> {
    let local = tool_dir().join("bin").join(name);
    let program = if local.is_file() {
        local.into_os_string()
    } else {
        name.into()
    };
    let works = Command::new(&program)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        Some(Command::new(program))
    } else {
        missing(&format!("`{name}`"))
    }
}

/// `python3 -m kubernetes_validate` with the package from the tool directory.
fn kubernetes_validate() -> Option<Command> {
    let py = tool_dir().join("py");
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", &py)
        .args(["-m", "kubernetes_validate"]);
    let works = Command::new("python3")
        .env("PYTHONPATH", &py)
        .args(["-m", "kubernetes_validate", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        Some(cmd)
    } else {
        missing("the `kubernetes-validate` Python package")
    }
}

/// Runs `deploy/tests/validate-crds.mjs` (prometheus-operator CRD schemas, from the npm package in the tool
/// directory) over `docs`; returns its output, or `None` when node or the package is missing.
fn validate_custom_resources(docs: &[&Value]) -> Option<(bool, String)> {
    let modules = tool_dir().join("node/node_modules");
    let node_works = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_works
        || !modules
            .join("@kubernetes-models/prometheus-operator")
            .is_dir()
    {
        missing("node with the `@kubernetes-models/prometheus-operator` package");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(&modules, dir.path().join("node_modules")).expect("symlink");
    let script = dir.path().join("validate-crds.mjs");
    std::fs::copy(repo_root().join("deploy/tests/validate-crds.mjs"), &script).expect("copy");
    let mut input = String::new();
    for doc in docs {
        input.push_str(&serde_json::to_string(doc).expect("json"));
        input.push('\n');
    }
    let mut child = Command::new("node")
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run node");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write");
    }
    let out = child.wait_with_output().expect("node");
    Some((out.status.success(), text(&out)))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `helm template wharf <chart> -n wharf <args>`.
fn helm_template(helm: &mut Command, args: &[&str]) -> Output {
    helm.args(["template", "wharf"])
        .arg(chart_dir())
        .args(["--namespace", "wharf"])
        .args(args)
        .output()
        .expect("run helm")
}

fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .filter_map(|doc| serde_yaml_ng::from_str::<Value>(doc).ok())
        .filter(|v| v.is_mapping())
        .collect()
}

fn kind_of(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    docs.iter().find(|d| kind_of(d) == kind)
}

/// The value sets every rendering test covers: defaults, each chart example, everything optional on.
fn value_sets() -> Vec<(&'static str, Vec<String>)> {
    let example = |name: &str| {
        vec![
            "-f".to_string(),
            examples_dir().join(name).display().to_string(),
        ]
    };
    vec![
        ("defaults", Vec::new()),
        ("values-minimal.yaml", example("values-minimal.yaml")),
        ("values-ci.yaml", example("values-ci.yaml")),
        ("values-s3.yaml", example("values-s3.yaml")),
        ("values-production.yaml", example("values-production.yaml")),
        (
            // npm and cargo set on the command line, with no publicUrl: the chart gives wharf its
            // in-cluster URL, so `serve` starts (it used to crash-loop asking for public_url).
            "npm and cargo through --set",
            [
                "--set",
                "repositories.npm.format=npm",
                "--set",
                "repositories.npm.upstream=https://npm.example.com/",
                "--set",
                "repositories.crates.format=cargo",
                "--set",
                "repositories.crates.upstream=https://cargo.example.com/index/",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "all optional parts",
            [
                "--set",
                "ingress.enabled=true",
                "--set",
                "ingress.hosts[0].host=wharf.example.com",
                "--set",
                "serviceMonitor.enabled=true",
                "--set",
                "prometheusRule.enabled=true",
                "--set",
                "grafanaDashboard.enabled=true",
                "--set",
                "persistence.enabled=false",
                "--set",
                "server.max_connections=2048",
                "--set",
                "server.idle_timeout=2m",
                "--set",
                "server.max_header_size=16KiB",
                "--set",
                "repositories.pypi.format=pypi",
                "--set",
                "repositories.pypi.upstream=https://pypi.example.com/simple/",
                "--set",
                "networkPolicy.enabled=true",
                "--set",
                "networkPolicy.ingressFrom[0].namespaceSelector.matchLabels.team=ci",
                "--set",
                "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.purpose=monitoring",
                "--set",
                "networkPolicy.egressTo[0].cidr=203.0.113.0/24",
                "--set",
                "networkPolicy.egressTo[0].ports[0]=443",
                "--set",
                "storeRepair=true",
                "--set",
                "usage.pods.enabled=true",
                "--set",
                "usage.pods.label=team",
                "--set",
                "http.dns_refresh=1m",
                "--set",
                "log.access_log_sample=0.1",
                "--set",
                "log.access_log_probes=false",
                "--set",
                "storage.min_free=10%",
                "--set",
                "storage.max_negative_entries=5000",
                "--set",
                "credentials.existingSecret=wharf-upstreams",
                "--set",
                "extraVolumes[0].name=ca",
                "--set",
                "extraVolumes[0].configMap.name=corporate-ca",
                "--set",
                "extraVolumeMounts[0].name=ca",
                "--set",
                "extraVolumeMounts[0].mountPath=/etc/ssl/corporate",
                "--set",
                "topologySpreadConstraints[0].maxSkew=1",
                "--set",
                "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
                "--set",
                "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
            ]
            .map(String::from)
            .to_vec(),
        ),
    ]
}

/// Validates `yaml` with kubernetes-validate in strict mode (unknown fields are errors); returns the
/// resources it checked against a schema. Custom resources (no schema there) are reported as skipped.
fn validate_manifests(validator: &mut Command, yaml: &str, what: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, yaml).expect("write manifests");
    let out = validator
        .arg("--strict")
        .arg(&file)
        .output()
        .expect("run kubernetes-validate");
    let log = text(&out);
    assert!(
        out.status.success() && !log.contains("ERROR"),
        "{what}: manifests do not validate:\n{log}"
    );
    log.lines()
        .filter(|l| l.contains(" passed for resource "))
        .filter_map(|l| l.split(" passed for resource ").nth(1))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn chart_renders_valid_manifests_for_defaults_and_examples() {
    let (Some(_), Some(_)) = (tool("helm", &["version"]), kubernetes_validate()) else {
        return;
    };
    let mut validated_kinds = BTreeSet::new();
    for (name, args) in value_sets() {
        let mut helm = tool("helm", &["version"]).expect("helm");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = helm_template(&mut helm, &args);
        assert!(
            out.status.success(),
            "{name}: helm template failed:\n{}",
            text(&out)
        );
        let yaml = String::from_utf8_lossy(&out.stdout).to_string();
        let docs = documents(&yaml);

        let sts = find(&docs, "StatefulSet").unwrap_or_else(|| panic!("{name}: no StatefulSet"));
        let pod = &sts["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"],
            Value::Bool(true),
            "{name}"
        );
        assert_eq!(
            container["securityContext"]["readOnlyRootFilesystem"],
            Value::Bool(true),
            "{name}"
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz")
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz")
        );
        assert_eq!(
            container["resources"]["requests"], container["resources"]["limits"],
            "{name}: requests equal limits (Guaranteed QoS)"
        );
        let mounts: Vec<&str> = container["volumeMounts"]
            .as_sequence()
            .expect("mounts")
            .iter()
            .filter_map(|m| m["mountPath"].as_str())
            .collect();
        assert!(mounts.contains(&"/var/lib/wharf"), "{name}: {mounts:?}");
        assert!(
            mounts.contains(&"/etc/wharf/admin"),
            "{name}: admin token mounted"
        );
        let config = find(&docs, "ConfigMap").expect("config map")["data"]["wharf.yaml"]
            .as_str()
            .expect("wharf.yaml")
            .to_string();
        assert!(
            config.contains("token_file: /etc/wharf/admin/token"),
            "{name}:\n{config}"
        );
        assert!(find(&docs, "Service").is_some() && find(&docs, "PodDisruptionBudget").is_some());
        match name {
            "values-s3.yaml" => {
                assert!(config.contains("bucket: ci-cache"), "{config}");
                let env = container["env"].as_sequence().expect("env");
                assert!(env.iter().any(|e| e["name"] == "AWS_ACCESS_KEY_ID"
                    && e["valueFrom"]["secretKeyRef"]["name"] == "wharf-s3"));
                assert!(find(&docs, "ServiceAccount").is_some());
                assert_eq!(sts["spec"]["replicas"].as_u64(), Some(3));
            }
            "values-ci.yaml" => {
                assert!(
                    find(&docs, "Secret").is_none(),
                    "existing Secret used, none generated"
                );
                assert!(
                    find(&docs, "Ingress").is_some() && find(&docs, "PrometheusRule").is_some()
                );
                assert!(
                    sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "gp3"
                );
            }
            "defaults" => {
                let secret = find(&docs, "Secret").expect("a generated admin Secret");
                assert!(secret["data"]["token"]
                    .as_str()
                    .is_some_and(|t| t.len() >= 40));
                assert!(
                    sts["spec"]["volumeClaimTemplates"].is_sequence(),
                    "PVC by default"
                );
                assert!(
                    find(&docs, "NetworkPolicy").is_none(),
                    "the NetworkPolicy is opt-in"
                );
            }
            _ => {}
        }
        if name == "all optional parts" {
            let monitor = find(&docs, "ServiceMonitor").expect("ServiceMonitor");
            assert_eq!(
                monitor["spec"]["endpoints"][0]["path"].as_str(),
                Some("/metrics")
            );
            assert_eq!(
                monitor["spec"]["endpoints"][0]["port"].as_str(),
                Some("http")
            );
            let dashboard = docs
                .iter()
                .find(|d| d["metadata"]["name"].as_str() == Some("wharf-dashboard"))
                .expect("dashboard ConfigMap");
            let json: serde_json::Value =
                serde_json::from_str(dashboard["data"]["wharf.json"].as_str().expect("json"))
                    .expect("dashboard JSON parses");
            assert!(json["panels"].as_array().is_some_and(|p| p.len() >= 10));
            // Only the listed peers reach wharf's port; wharf reaches only DNS and the listed upstreams.
            let policy = &find(&docs, "NetworkPolicy").expect("NetworkPolicy")["spec"];
            assert_eq!(
                policy["podSelector"]["matchLabels"],
                sts["spec"]["selector"]["matchLabels"]
            );
            let from = &policy["ingress"][0]["from"];
            assert_eq!(from.as_sequence().map(Vec::len), Some(2), "{from:?}");
            assert_eq!(
                from[0]["namespaceSelector"]["matchLabels"]["team"].as_str(),
                Some("ci")
            );
            assert_eq!(
                policy["ingress"][0]["ports"][0]["port"].as_str(),
                Some("http")
            );
            let egress = policy["egress"].as_sequence().expect("egress rules");
            assert_eq!(egress.len(), 2, "DNS and one upstream: {egress:?}");
            assert_eq!(egress[0]["ports"][0]["port"].as_u64(), Some(53));
            assert_eq!(
                egress[1]["to"][0]["ipBlock"]["cidr"].as_str(),
                Some("203.0.113.0/24")
            );
            assert_eq!(egress[1]["ports"][0]["port"].as_u64(), Some(443));
        }

        let custom: Vec<&Value> = docs
            .iter()
            .filter(|d| {
                d["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("monitoring.coreos.com/"))
            })
            .collect();
        if !custom.is_empty() {
            if let Some((ok, log)) = validate_custom_resources(&custom) {
                assert!(
                    ok,
                    "{name}: custom resources do not match their CRD schemas:\n{log}"
                );
                for doc in &custom {
                    let line = format!(
                        "valid {}/{}",
                        kind_of(doc),
                        doc["metadata"]["name"].as_str().unwrap_or("")
                    );
                    assert!(log.contains(&line), "{name}: {line} missing:\n{log}");
                    validated_kinds.insert(kind_of(doc).to_string());
                }
            }
        }

        let mut validator = kubernetes_validate().expect("validator");
        let passed = validate_manifests(&mut validator, &yaml, name);
        for doc in &docs {
            let kind = kind_of(doc);
            if doc["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("monitoring.coreos.com/"))
            {
                continue; // custom resources: checked above against their CRD schemas
            }
            let expected = format!(
                "{}/{}",
                kind.to_lowercase(),
                doc["metadata"]["name"].as_str().unwrap_or("")
            );
            assert!(
                passed.contains(&expected),
                "{name}: {expected} was not validated: {passed:?}"
            );
            validated_kinds.insert(kind.to_string());
        }
    }
    eprintln!("validated against the Kubernetes API schemas: {validated_kinds:?}");

    // The notes printed after `helm install` tell each client its setting.
    let out = tool("helm", &["version"])
        .expect("helm")
        .args([
            "install",
            "wharf",
            "--dry-run=client",
            "--namespace",
            "wharf",
        ])
        .arg(chart_dir())
        .arg("-f")
        .arg(examples_dir().join("values-ci.yaml"))
        .output()
        .expect("helm install --dry-run");
    let notes = text(&out);
    assert!(out.status.success(), "{notes}");
    for line in [
        "PIP_INDEX_URL=http://wharf.wharf.svc:8080/pypi/simple/",
        // pip ignores a plain-HTTP index it is not told to trust.
        "PIP_TRUSTED_HOST=wharf.wharf.svc",
        "npm_config_registry=http://wharf.wharf.svc:8080/npm/",
        // containerd runs on the node, outside cluster DNS: never the Service's name.
        "containerd on the nodes cannot resolve wharf.wharf.svc",
        "http://<the node's own IP>:30500",
        "sparse+http://wharf.wharf.svc:8080/cargo/",
        "get secret wharf-admin",
    ] {
        assert!(notes.contains(line), "NOTES lack `{line}`:\n{notes}");
    }

    let out = tool("helm", &["version"])
        .expect("helm")
        .args(["lint", "--strict"])
        .arg(chart_dir())
        .arg("-f")
        .arg(examples_dir().join("values-ci.yaml"))
        .output()
        .expect("helm lint");
    assert!(out.status.success(), "helm lint --strict:\n{}", text(&out));

    // The validator does catch mistakes (so a pass above means something).
    let mut validator = kubernetes_validate().expect("validator");
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: \"eighty\"}]\n  selectr: {}\n",
    )
    .expect("write");
    let out = validator.arg("--strict").arg(&bad).output().expect("run");
    assert!(
        !out.status.success(),
        "a broken Service must fail validation:\n{}",
        text(&out)
    );
    let bad_monitor: Value = serde_yaml_ng::from_str(
        "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: bad}\n\
         spec:\n  selector: {}\n  endpoints: [{port: http, interval: 30}]\n",
    )
    .expect("yaml");
    if let Some((ok, log)) = validate_custom_resources(&[&bad_monitor]) {
        assert!(
            !ok && log.contains("interval"),
            "a wrong interval type must fail:\n{log}"
        );
    }
}

#[test]
fn bad_values_are_refused_with_the_field_path() {
    let Some(_) = tool("helm", &["version"]) else {
        return;
    };
    let cases: [(&[&str], &[&str]); 12] = [
        (
            &[
                "--set",
                "repositories.pypi.format=pipy",
                "--set",
                "repositories.pypi.upstream=https://pypi.example.com/simple/",
                "--set",
                "networkPolicy.enabled=true",
                "--set",
                "networkPolicy.ingressFrom[0].namespaceSelector.matchLabels.team=ci",
                "--set",
                "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.purpose=monitoring",
                "--set",
                "networkPolicy.egressTo[0].cidr=203.0.113.0/24",
                "--set",
                "networkPolicy.egressTo[0].ports[0]=443",
            ],
            &[
                "/repositories/pypi/format",
                // The list is generated from the format registry.
                "must be one of 'pypi', 'oci', 'npm', 'cargo', 'go', 'generic'",
            ],
        ),
        (
            &["--set", "repositories.pypi.format=pypi"],
            &["/repositories/pypi", "missing property 'upstream'"],
        ),
        (
            &["--set", "repositories.images.format=oci"],
            &["/repositories/images", "missing property 'upstreams'"],
        ),
        (&["--set", "replicas=two"], &["/replicas", "want integer"]),
        (
            &[
                "--set",
                "networkPolicy.egressTo[0].cidr=upstream.example.com",
            ],
            &["/networkPolicy/egressTo/0", "ports"],
        ),
        (
            &[
                "--set",
                "repositories.pypi.format=pypi",
                "--set",
                "repositories.pypi.upstream=https://pypi.example.com/",
                "--set",
                "repositories.pypi.metadata_tll=10m",
            ],
            &["/repositories/pypi", "metadata_tll"],
        ),
        (
            &[
                "--set",
                "repositories.pypi.format=pypi",
                "--set",
                "repositories.pypi.upstream=ftp://pypi.example.com/",
            ],
            &["/repositories/pypi/upstream", "does not match pattern"],
        ),
        (
            &["--set", "storage.s3.region=us-east-1"],
            &["/storage/s3", "missing property 'bucket'"],
        ),
        (
            &["--set", "server.max_connections=0"],
            &["/server/max_connections", "minimum"],
        ),
        (
            &["--set", "server.keepalive_timeout=5s"],
            &["/server", "keepalive_timeout"],
        ),
        (
            &["--set", "storage.min_free=150%"],
            &["/storage/min_free", "does not match pattern"],
        ),
        (
            &["--set", "log.access_log_sample=0"],
            &["/log/access_log_sample", "exclusiveMinimum"],
        ),
    ];
    for (args, expected) in cases {
        let mut helm = tool("helm", &["version"]).expect("helm");
        let out = helm_template(&mut helm, args);
        let log = text(&out);
        assert!(!out.status.success(), "{args:?} was accepted:\n{log}");
        for needle in expected {
            assert!(
                log.contains(needle),
                "{args:?}: `{needle}` missing from:\n{log}"
            );
        }
    }
}

#[test]
fn rendered_config_passes_wharf_config_check() {
    let Some(_) = tool("helm", &["version"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // `config check` reads the admin token file as `serve` does: stand in for the Secret the pod mounts.
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").expect("write token");
    for (i, (name, args)) in value_sets().into_iter().enumerate() {
        let mut helm = tool("helm", &["version"]).expect("helm");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = helm_template(&mut helm, &args);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let docs = documents(&String::from_utf8_lossy(&out.stdout));
        let config = docs
            .iter()
            .find(|d| kind_of(d) == "ConfigMap" && d["data"]["wharf.yaml"].is_string())
            .expect("config map")["data"]["wharf.yaml"]
            .as_str()
            .expect("wharf.yaml")
            .to_string();
        let file = dir.path().join(format!("wharf-{i}.yaml"));
        let local = config.replace("/etc/wharf/admin/token", &token.display().to_string());
        std::fs::write(&file, &local).expect("write");
        let out = Command::new(WHARF)
            .args(["config", "check"])
            .arg(&file)
            .output()
            .expect("run wharf");
        assert!(
            out.status.success(),
            "{name}: wharf config check refused the rendered config:\n{config}\n{}",
            text(&out)
        );
    }
}

/// Metric names a running wharf exports after a hit, a miss and a failing upstream, from the `# TYPE` lines,
/// with the suffixes Prometheus queries use.
async fn exported_metric_names() -> BTreeSet<String> {
    let up = PypiUpstream::start(vec![
        Project::new("demo", vec![wheel("demo", "1.0")]),
        Project::new("broken", vec![wheel("broken", "1.0")]),
    ])
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "http:\n  retries: 0",
    );
    let client = http();
    for _ in 0..2 {
        let page = client
            .get(wharf.url("/pypi/simple/demo/"))
            .send()
            .await
            .expect("get");
        assert_eq!(page.status(), 200);
    }
    up.faults().fail_next(503, 5);
    let page = client
        .get(wharf.url("/pypi/simple/broken/"))
        .send()
        .await
        .expect("get");
    assert!(page.status().is_server_error(), "{}", page.status());
    let scrape = client
        .get(wharf.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        for s in suffixes {
            names.insert(format!("{name}{s}"));
        }
    }
    names
}

fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(pos) = rest.find("wharf_") {
        let before = rest[..pos].chars().last();
        let tail = &rest[pos..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            found.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_parse_with_promtool_and_name_real_metrics() {
    let Some(_) = tool("helm", &["version"]) else {
        return;
    };
    let mut helm = tool("helm", &["version"]).expect("helm");
    let out = helm_template(&mut helm, &["--set", "prometheusRule.enabled=true"]);
    assert!(out.status.success(), "{}", text(&out));
    let docs = documents(&String::from_utf8_lossy(&out.stdout));
    let rule = find(&docs, "PrometheusRule").expect("PrometheusRule");
    let groups = &rule["spec"]["groups"];
    let alerts: BTreeSet<&str> = groups[0]["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for alert in [
        "WharfUpstreamErrors",
        "WharfHitRatioCollapsed",
        "WharfStoreVolumeNearlyFull",
        "WharfEvictionsChurning",
        "WharfPodRestarting",
    ] {
        assert!(alerts.contains(alert), "{alert} missing: {alerts:?}");
    }
    let rules_yaml = serde_yaml_ng::to_string(&rule["spec"]).expect("yaml");

    if let Some(mut promtool) = tool("promtool", &["--version"]) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("rules.yaml");
        std::fs::write(&file, &rules_yaml).expect("write");
        let out = promtool
            .args(["check", "rules"])
            .arg(&file)
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool check rules:\n{}",
            text(&out)
        );
        assert!(
            text(&out).contains(&format!("{} rules found", alerts.len())),
            "{}",
            text(&out)
        );
        // Each alert fires on the series it is meant for, with its labels and text, and not on others.
        std::fs::copy(
            repo_root().join("deploy/tests/alerts.test.yaml"),
            dir.path().join("alerts.test.yaml"),
        )
        .expect("copy alert tests");
        let out = tool("promtool", &["--version"])
            .expect("promtool")
            .current_dir(dir.path())
            .args(["test", "rules", "alerts.test.yaml"])
            .output()
            .expect("promtool");
        assert!(out.status.success(), "promtool test rules:\n{}", text(&out));
    }

    let exported = exported_metric_names().await;
    let dashboard =
        std::fs::read_to_string(chart_dir().join("dashboards/wharf.json")).expect("dashboard");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let titles: Vec<&str> = json["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for wanted in [
        "Hit ratio",
        "Bytes saved",
        "Fetched upstream",
        "Request latency",
        "Store size",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(wanted)),
            "{wanted}: {titles:?}"
        );
    }
    for (what, text) in [
        ("alert rules", rules_yaml.as_str()),
        ("dashboard", dashboard.as_str()),
    ] {
        let used = referenced_metrics(text);
        assert!(used.len() >= 5, "{what}: {used:?}");
        let unknown: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
        assert!(
            unknown.is_empty(),
            "{what} use metrics wharf does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
}

fn load_yaml_docs(path: &Path) -> Vec<Value> {
    documents(&std::fs::read_to_string(path).expect("read example"))
}

/// `(name, value)` of each plain env entry of a container.
fn plain_env(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or("").to_string(),
                e["value"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The client settings every runner example gives its jobs: the chart's Service, as in values-ci.yaml.
fn expected_client_env() -> Vec<(&'static str, String)> {
    vec![
        ("PIP_INDEX_URL", format!("{BASE}/pypi/simple/")),
        ("PIP_TRUSTED_HOST", "wharf.wharf.svc".to_string()),
        ("UV_DEFAULT_INDEX", format!("{BASE}/pypi/simple/")),
        ("npm_config_registry", format!("{BASE}/npm/")),
        ("GOPROXY", format!("{BASE}/go")),
    ]
}

fn assert_client_env(what: &str, container: &Value) {
    let env = plain_env(container);
    for (name, value) in expected_client_env() {
        assert!(
            env.iter().any(|(n, v)| n == name && *v == value),
            "{what}: {name}={value} missing from {env:?}"
        );
    }
}

/// The container mounts cargo's settings at /.cargo (a parent of every working directory), from `volume`.
fn assert_cargo_mount(what: &str, container: &Value, volumes: &Value) {
    let mount = container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"].as_str() == Some("/.cargo"))
        .unwrap_or_else(|| panic!("{what}: nothing at /.cargo"));
    let volume = volumes
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("{what}: no volume {:?}", mount["name"]));
    assert_eq!(
        volume["configMap"]["name"].as_str(),
        Some("wharf-cargo-config")
    );
}

fn assert_cargo_config_map(what: &str, doc: &Value) {
    assert_eq!(kind_of(doc), "ConfigMap", "{what}");
    assert_eq!(doc["metadata"]["name"].as_str(), Some("wharf-cargo-config"));
    let toml = doc["data"]["config.toml"].as_str().expect("config.toml");
    assert!(
        toml.contains(&format!("registry = \"sparse+{BASE}/cargo/\""))
            && toml.contains("[source.crates-io]\nreplace-with = \"wharf\""),
        "{what}: {toml}"
    );
}

#[test]
fn runner_examples_point_every_job_at_the_chart_service() {
    let ci = &load_yaml_docs(&examples_dir().join("values-ci.yaml"))[0];
    let repos = ci["repositories"].as_mapping().expect("repositories");
    for repo in ["pypi", "npm", "cargo", "go", "images"] {
        assert!(repos.contains_key(repo), "values-ci.yaml has no `{repo}`");
    }
    let mut objects: Vec<Value> = Vec::new();
    let pod_template = |name: &str, template: &Value| -> Value {
        serde_yaml_ng::to_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": name},
            "template": serde_json::to_value(template).expect("json"),
        }))
        .expect("yaml")
    };

    // ARC, Docker-in-Docker: the runner's steps get the settings, the daemon pulls Docker Hub images
    // through wharf.
    let dind = load_yaml_docs(&examples_dir().join("arc-runner-scale-set.yaml"));
    let spec = &dind[0]["template"]["spec"];
    let containers = spec["containers"].as_sequence().expect("containers");
    let runner = containers
        .iter()
        .find(|c| c["name"] == "runner")
        .expect("runner");
    assert_client_env("ARC dind runner", runner);
    assert_cargo_mount("ARC dind runner", runner, &spec["volumes"]);
    let daemon = containers
        .iter()
        .find(|c| c["name"] == "dind")
        .expect("dind");
    let args: Vec<&str> = daemon["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&"--registry-mirror=http://wharf.wharf.svc:8080")
            && args.contains(&"--insecure-registry=wharf.wharf.svc:8080"),
        "{args:?}"
    );
    assert_cargo_config_map("ARC dind", &dind[1]);
    objects.push(pod_template("arc-dind", &dind[0]["template"]));
    objects.push(dind[1].clone());

    // ARC, kubernetes mode: the hooks create the job pods from a template that carries the settings.
    let kube = load_yaml_docs(&examples_dir().join("arc-runner-scale-set-kubernetes.yaml"));
    assert_eq!(
        kube[0]["containerMode"]["type"].as_str(),
        Some("kubernetes")
    );
    let runner = &kube[0]["template"]["spec"]["containers"][0];
    let template_path = plain_env(runner)
        .into_iter()
        .find(|(n, _)| n == "ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE")
        .expect("hook template variable")
        .1;
    let mount = runner["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .find(|m| {
            m["mountPath"]
                .as_str()
                .is_some_and(|p| template_path.starts_with(&format!("{p}/")))
        })
        .expect("the template is mounted where the variable says");
    let file = template_path.rsplit('/').next().expect("file name");
    let template_map = kube
        .iter()
        .find(|d| d["metadata"]["name"].as_str() == Some("wharf-job-template"))
        .expect("hook template ConfigMap");
    let volumes = &kube[0]["template"]["spec"]["volumes"];
    assert!(volumes
        .as_sequence()
        .expect("volumes")
        .iter()
        .any(|v| v["name"] == mount["name"]
            && v["configMap"]["name"] == template_map["metadata"]["name"]));
    let job_template: Value =
        serde_yaml_ng::from_str(template_map["data"][file].as_str().expect("template"))
            .expect("hook template parses");
    let job = &job_template["spec"]["containers"][0];
    assert_eq!(job["name"].as_str(), Some("$job"));
    assert_client_env("ARC job pod template", job);
    assert_cargo_mount(
        "ARC job pod template",
        job,
        &job_template["spec"]["volumes"],
    );
    assert_cargo_config_map("ARC kubernetes mode", &kube[2]);
    objects.push(pod_template("arc-kubernetes-runner", &kube[0]["template"]));
    objects.push(pod_template("arc-job", &job_template));
    objects.push(kube[1].clone());
    objects.push(kube[2].clone());

    // GitLab's Kubernetes executor.
    let gitlab = load_yaml_docs(&examples_dir().join("gitlab-runner.yaml"));
    let toml = gitlab[0]["runners"]["config"]
        .as_str()
        .expect("runners.config");
    for (name, value) in expected_client_env() {
        assert!(
            toml.contains(&format!("\"{name}={value}\"")),
            "GitLab example: {name}"
        );
    }
    assert!(
        toml.contains("mount_path = \"/.cargo\"") && !toml.contains("\"CARGO_HOME="),
        "cargo's settings where cargo looks whatever CARGO_HOME is:\n{toml}"
    );
    // Environment variables cannot replace cargo's source: only the file does.
    assert!(!toml.contains("CARGO_REGISTRIES_"), "{toml}");
    assert_cargo_config_map("GitLab", &gitlab[1]);
    objects.push(gitlab[1].clone());

    // No example mounts into the runner's home, where the mount point would be root-owned for uid 1001.
    for file in [
        "arc-runner-scale-set.yaml",
        "arc-runner-scale-set-kubernetes.yaml",
        "gitlab-runner.yaml",
    ] {
        let text = std::fs::read_to_string(examples_dir().join(file)).expect("example");
        assert!(!text.contains("/home/runner/.cargo"), "{file}");
    }

    // containerd on each node: the NodePort on the node's own address (any kube-proxy mode), not the
    // Service's name (no cluster DNS on the node) nor 127.0.0.1 (iptables mode only).
    let hosts = load_yaml_docs(&examples_dir().join("containerd-hosts-daemonset.yaml"));
    let node_port = ci["service"]["nodePort"].as_u64().expect("nodePort");
    let hosts_toml = hosts[0]["data"]["docker.io.toml"]
        .as_str()
        .expect("hosts.toml");
    assert!(hosts_toml.contains(&format!("[host.\"http://NODE_ADDRESS:{node_port}\"]")));
    assert!(hosts_toml.contains("capabilities = [\"pull\", \"resolve\"]"));
    assert!(!hosts_toml.contains("127.0.0.1") && !hosts_toml.contains(".svc"));
    let init = &hosts[1]["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(
        init["env"][0]["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("status.hostIP")
    );
    // The init container's script, run here on a scratch directory for an IPv4 and an IPv6 node.
    let script = init["command"][2].as_str().expect("script");
    for (ip, host) in [("10.0.3.7", "10.0.3.7"), ("fd00:10:3::7", "[fd00:10:3::7]")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config");
        let certs = dir.path().join("certs.d");
        std::fs::create_dir_all(&config).expect("mkdir");
        std::fs::write(config.join("docker.io.toml"), hosts_toml).expect("write");
        let local = script
            .replace("/certs.d", &certs.display().to_string())
            .replace("/config/", &format!("{}/", config.display()));
        let out = Command::new("sh")
            .args(["-c", &local])
            .env("NODE_IP", ip)
            .output()
            .expect("sh");
        assert!(out.status.success(), "{}", text(&out));
        let written =
            std::fs::read_to_string(certs.join("docker.io/hosts.toml")).expect("hosts.toml");
        assert!(
            written.contains(&format!("[host.\"http://{host}:{node_port}\"]")),
            "{written}"
        );
    }
    objects.extend(hosts.iter().cloned());
    assert!(ci["repositories"]["images"]["upstreams"]["docker.io"].is_string());

    // Bottlerocket: a registry mirror in its settings, at an address nodes resolve.
    let bottlerocket = examples_dir().join("bottlerocket-settings.toml");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], 'rb'))))",
        ])
        .arg(&bottlerocket)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", text(&out));
    let settings: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mirror = &settings["settings"]["container-registry"]["mirrors"][0];
    assert_eq!(mirror["registry"], "docker.io");
    let endpoint = mirror["endpoint"][0].as_str().expect("endpoint");
    assert!(
        endpoint.starts_with("http") && !endpoint.contains(".svc"),
        "{endpoint}"
    );

    // Every Kubernetes object in the examples is valid (pod templates as PodTemplates).
    let Some(mut validator) = kubernetes_validate() else {
        return;
    };
    let all: Vec<String> = objects
        .iter()
        .map(|d| serde_json::to_string(d).expect("json"))
        .collect();
    let passed = validate_manifests(&mut validator, &all.join("\n---\n"), "runner examples");
    for name in [
        "podtemplate/arc-dind",
        "podtemplate/arc-kubernetes-runner",
        "podtemplate/arc-job",
        "configmap/wharf-job-template",
        "daemonset/wharf-containerd-hosts",
        "configmap/wharf-cargo-config",
    ] {
        assert!(passed.iter().any(|p| p == name), "{name}: {passed:?}");
    }
}

#[test]
fn dockerfile_builds_a_static_unprivileged_image_matching_the_chart() {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let last_from = froms.last().expect("final stage");
    assert!(
        last_from.contains("distroless/static") || last_from.contains("scratch"),
        "final stage is static/distroless: {last_from}"
    );
    let final_stage: Vec<&&str> = lines
        .iter()
        .skip_while(|l| !std::ptr::eq(**l, **last_from))
        .collect();
    let directive = |name: &str| -> Vec<String> {
        final_stage
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(str::to_string)
            .collect()
    };
    let user = directive("USER");
    assert_eq!(user.len(), 1, "one USER in the final stage");
    let uid: u32 = user[0]
        .split(':')
        .next()
        .unwrap_or("")
        .parse()
        .expect("numeric uid");
    assert_ne!(uid, 0, "runs as non-root");
    assert_eq!(directive("EXPOSE"), vec!["8080"]);
    assert!(directive("VOLUME")
        .iter()
        .any(|v| v.contains("/var/lib/wharf")));
    assert!(
        directive("HEALTHCHECK").is_empty(),
        "Kubernetes probes, not a HEALTHCHECK"
    );
    assert!(directive("ENTRYPOINT").iter().any(|e| e.contains("wharf")));
    assert!(text.contains("--locked") && text.contains("x86_64-unknown-linux-musl"));

    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values"),
    )
    .expect("values parse");
    assert_eq!(
        values["podSecurityContext"]["runAsUser"].as_u64(),
        Some(u64::from(uid)),
        "the chart runs the image's user"
    );
    assert_eq!(
        values["securityContext"]["readOnlyRootFilesystem"],
        Value::Bool(true)
    );
}

/// The chart rendered with `args` (`None`: helm is missing and the test skips); panics with helm's output when
/// rendering fails.
fn render(args: &[&str]) -> Option<Vec<Value>> {
    let mut helm = tool("helm", &["version"])?;
    let out = helm_template(&mut helm, args);
    assert!(
        out.status.success(),
        "{args:?}: helm template failed:\n{}",
        text(&out)
    );
    Some(documents(&String::from_utf8_lossy(&out.stdout)))
}

/// helm's output for a rendering that must fail.
fn render_refused(args: &[&str]) -> String {
    let mut helm = tool("helm", &["version"]).expect("helm");
    let out = helm_template(&mut helm, args);
    let log = text(&out);
    assert!(!out.status.success(), "{args:?} was accepted:\n{log}");
    log
}

fn rendered_config(docs: &[Value]) -> String {
    docs.iter()
        .find(|d| kind_of(d) == "ConfigMap" && d["data"]["wharf.yaml"].is_string())
        .expect("config map")["data"]["wharf.yaml"]
        .as_str()
        .expect("wharf.yaml")
        .to_string()
}

fn example(name: &str) -> String {
    examples_dir().join(name).display().to_string()
}

const NPM_AND_CARGO: [&str; 8] = [
    "--set",
    "repositories.npm.format=npm",
    "--set",
    "repositories.npm.upstream=https://npm.example.com/",
    "--set",
    "repositories.crates.format=cargo",
    "--set",
    "repositories.crates.upstream=https://cargo.example.com/index/",
];

#[test]
fn chart_gives_npm_and_cargo_the_in_cluster_url_or_refuses_them_at_lint() {
    let Some(docs) = render(&NPM_AND_CARGO) else {
        return;
    };
    // In-cluster jobs are handed tarball and crate URLs on the Service, not on an ingress.
    let config = rendered_config(&docs);
    assert!(
        config.contains("public_url: \"http://wharf.wharf.svc:8080/\""),
        "{config}"
    );
    let mut args = NPM_AND_CARGO.to_vec();
    args.extend(["--set", "publicUrl=https://wharf.ci.example.com/"]);
    let config = rendered_config(&render(&args).expect("helm"));
    // With an ingress too, the Service stays first and the ingress is the second address: jobs that reach
    // wharf through the Service keep getting Service links.
    assert!(
        config.contains("public_url: \"http://wharf.wharf.svc:8080/\"")
            && config.contains("public_urls: [\"https://wharf.ci.example.com/\"]"),
        "{config}"
    );
    args.extend(["--set", "inClusterUrl=false"]);
    let config = rendered_config(&render(&args).expect("helm"));
    assert!(
        config.contains("public_url: \"https://wharf.ci.example.com/\"")
            && !config.contains("public_urls"),
        "{config}"
    );
    // No URL at all: refused when the values are checked, naming the two fields that would fix it.
    let mut args = NPM_AND_CARGO.to_vec();
    args.extend(["--set", "inClusterUrl=false"]);
    let log = render_refused(&args);
    assert!(
        log.contains("/inClusterUrl") && log.contains("/publicUrl"),
        "{log}"
    );
    let out = tool("helm", &["version"])
        .expect("helm")
        .arg("lint")
        .arg(chart_dir())
        .args(&args)
        .output()
        .expect("helm lint");
    assert!(
        !out.status.success() && text(&out).contains("/publicUrl"),
        "helm lint accepted npm without a public URL:\n{}",
        text(&out)
    );
    // Formats that write no absolute URLs need none.
    let ok = render(&[
        "--set",
        "inClusterUrl=false",
        "--set",
        "repositories.pypi.format=pypi",
        "--set",
        "repositories.pypi.upstream=https://pypi.example.com/simple/",
    ])
    .expect("helm");
    assert!(!rendered_config(&ok).contains("public_url"));
}

#[test]
fn generated_admin_secret_is_created_once_by_helm_and_renders_are_stable() {
    let Some(first) = render(&[]) else {
        return;
    };
    let second = render(&[]).expect("helm");
    let is_hook = |d: &Value| d["metadata"]["annotations"]["helm.sh/hook"].is_string();
    let manifest = |docs: &[Value]| -> Vec<String> {
        docs.iter()
            .filter(|d| !is_hook(d))
            .map(|d| serde_yaml_ng::to_string(d).expect("yaml"))
            .collect()
    };
    // What Helm applies and compares at every upgrade (and what helm-diff shows) is the same on every
    // render: the token is not part of it.
    assert_eq!(manifest(&first), manifest(&second));
    let secret = find(&first, "Secret").expect("a generated admin Secret");
    let annotations = &secret["metadata"]["annotations"];
    assert_eq!(annotations["helm.sh/hook"].as_str(), Some("pre-install"));
    assert_eq!(
        annotations["helm.sh/resource-policy"].as_str(),
        Some("keep")
    );
    assert!(secret["data"]["token"]
        .as_str()
        .is_some_and(|t| t.len() >= 40));
    let sts = find(&first, "StatefulSet").expect("StatefulSet");
    let volumes = sts["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .expect("volumes");
    assert!(volumes
        .iter()
        .any(|v| v["secret"]["secretName"].as_str() == Some("wharf-admin")));
    // GitOps: the Secret comes from the user's secret store, the chart renders none.
    let gitops = render(&["--set", "admin.existingSecret=ci-wharf-admin"]).expect("helm");
    assert!(find(&gitops, "Secret").is_none());
    assert_eq!(manifest(&gitops), {
        let again = render(&["--set", "admin.existingSecret=ci-wharf-admin"]).expect("helm");
        manifest(&again)
    });
}

#[test]
fn credentials_secret_and_extra_volumes_are_mounted_for_credentials_files() {
    let Some(docs) = render(&[
        "--set",
        "repositories.images.format=oci",
        "--set",
        "repositories.images.upstreams.docker\\.io=https://registry.example.com",
        "--set",
        "repositories.images.credentials_file=/etc/wharf/credentials/registry.json",
        "--set",
        "credentials.existingSecret=wharf-upstreams",
        "--set",
        "extraVolumes[0].name=ca",
        "--set",
        "extraVolumes[0].configMap.name=corporate-ca",
        "--set",
        "extraVolumeMounts[0].name=ca",
        "--set",
        "extraVolumeMounts[0].mountPath=/etc/ssl/corporate",
        "--set",
        "extraVolumeMounts[0].readOnly=true",
    ]) else {
        return;
    };
    let pod = &find(&docs, "StatefulSet").expect("StatefulSet")["spec"]["template"]["spec"];
    let volume = |name: &str| {
        pod["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no volume {name}: {:?}", pod["volumes"]))
            .clone()
    };
    assert_eq!(
        volume("credentials")["secret"]["secretName"].as_str(),
        Some("wharf-upstreams")
    );
    assert_eq!(
        volume("ca")["configMap"]["name"].as_str(),
        Some("corporate-ca")
    );
    let mounts = pod["containers"][0]["volumeMounts"]
        .as_sequence()
        .expect("mounts");
    let mounted = |path: &str, name: &str| {
        mounts.iter().any(|m| {
            m["mountPath"].as_str() == Some(path)
                && m["name"].as_str() == Some(name)
                && m["readOnly"] == Value::Bool(true)
        })
    };
    assert!(
        mounted("/etc/wharf/credentials", "credentials") && mounted("/etc/ssl/corporate", "ca"),
        "{mounts:?}"
    );
    assert!(
        rendered_config(&docs).contains("credentials_file: /etc/wharf/credentials/registry.json")
    );
}

#[test]
fn production_values_spread_two_replicas_drain_before_stopping_and_fit_the_volume() {
    let production = example("values-production.yaml");
    let Some(docs) = render(&["-f", &production]) else {
        return;
    };
    let sts = find(&docs, "StatefulSet").expect("StatefulSet");
    assert_eq!(sts["spec"]["replicas"].as_u64(), Some(2));
    let config = rendered_config(&docs);
    assert!(config.contains("bucket: ci-cache"), "{config}");
    let pod = &sts["spec"]["template"]["spec"];
    let spread = pod["topologySpreadConstraints"]
        .as_sequence()
        .expect("topology spread");
    let keys: Vec<&str> = spread
        .iter()
        .filter_map(|c| c["topologyKey"].as_str())
        .collect();
    assert_eq!(
        keys,
        ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    );
    for constraint in spread {
        assert_eq!(
            constraint["labelSelector"]["matchLabels"], sts["spec"]["selector"]["matchLabels"],
            "the chart fills in its own pods"
        );
    }
    // The image has no `sleep`: the kubelet's sleep action keeps the pod serving while it leaves the
    // endpoints, and the grace period covers it and wharf's own drain.
    let container = &pod["containers"][0];
    let sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("preStop sleep");
    assert!(sleep >= 5, "{sleep}");
    assert!(pod["terminationGracePeriodSeconds"].as_u64() >= Some(sleep + 30));
    assert!(container["lifecycle"]["preStop"]["exec"].is_null());
    let pdb = find(&docs, "PodDisruptionBudget").expect("PDB");
    assert_eq!(pdb["spec"]["maxUnavailable"].as_u64(), Some(1));
    assert!(
        !config.contains("drain_delay"),
        "one delay, not two:\n{config}"
    );
    // Before Kubernetes 1.30 there is no sleep action: no preStop rather than an invalid one, and wharf
    // keeps serving after SIGTERM itself (server.drain_delay), as `wharf config check` accepts.
    let old = render(&["-f", &production, "--kube-version", "1.29.0"]).expect("helm");
    let old_sts = find(&old, "StatefulSet").expect("StatefulSet");
    assert!(old_sts["spec"]["template"]["spec"]["containers"][0]["lifecycle"].is_null());
    let old_config = rendered_config(&old);
    assert!(
        old_config.contains(&format!("drain_delay: {sleep}s")),
        "{old_config}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").expect("write token");
    let file = dir.path().join("wharf.yaml");
    let local = old_config.replace("/etc/wharf/admin/token", &token.display().to_string());
    std::fs::write(&file, local).expect("write");
    let out = Command::new(WHARF)
        .args(["config", "check"])
        .arg(&file)
        .output()
        .expect("wharf");
    assert!(out.status.success(), "{}", text(&out));

    // storage.max_size larger than the volume is refused when rendering (and so at lint), not found out
    // when the volume fills.
    let log = render_refused(&["--set", "storage.max_size=60GiB"]);
    assert!(
        log.contains("storage.max_size (60GiB) is larger than the volume (persistence.size 50Gi)"),
        "{log}"
    );
    let log = render_refused(&["-f", &production, "--set", "persistence.size=80Gi"]);
    assert!(log.contains("storage.max_size (90GiB)"), "{log}");
    for fits in [
        vec!["--set", "storage.max_size=45GiB"],
        // 50 GB is less than the 50 GiB volume.
        vec!["--set", "storage.max_size=50GB"],
        // No volume to compare with (an emptyDir).
        vec![
            "--set",
            "persistence.enabled=false",
            "--set",
            "storage.max_size=60GiB",
        ],
    ] {
        render(&fits).expect("helm");
    }
}

#[test]
fn ci_ingress_routes_only_the_repositories_and_the_network_policy_names_its_peers() {
    let Some(docs) = render(&["-f", &example("values-ci.yaml")]) else {
        return;
    };
    let ingress = find(&docs, "Ingress").expect("Ingress");
    let paths: BTreeSet<&str> = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_sequence()
        .expect("paths")
        .iter()
        .filter_map(|p| p["path"].as_str())
        .collect();
    // The web UI (/), /status, /metrics and /admin are not reachable through the load balancer.
    assert_eq!(
        paths,
        BTreeSet::from(["/cargo/", "/go/", "/npm/", "/pypi/", "/v2/"]),
        "the repositories and OCI's /v2/ only"
    );
    let policy = &find(&docs, "NetworkPolicy").expect("NetworkPolicy")["spec"];
    let from = serde_json::to_string(&policy["ingress"][0]["from"]).expect("json");
    for namespace in [
        "arc-runners",
        "gitlab-runner",
        "ingress-nginx",
        "monitoring",
        // the nodes' subnet: containerd pulling through the NodePort
        "10.0.0.0/16",
    ] {
        assert!(from.contains(namespace), "{namespace} missing: {from}");
    }
    let egress = policy["egress"].as_sequence().expect("egress");
    let upstream = &egress[1]["to"][0]["ipBlock"];
    assert_eq!(upstream["cidr"].as_str(), Some("0.0.0.0/0"));
    assert!(upstream["except"]
        .as_sequence()
        .expect("except")
        .iter()
        .any(|c| c.as_str() == Some("169.254.0.0/16")));
    // An explicit path list still wins.
    let all = render(&[
        "--set",
        "ingress.enabled=true",
        "--set",
        "ingress.hosts[0].host=wharf.example.com",
        "--set",
        "ingress.hosts[0].paths[0]=/",
    ])
    .expect("helm");
    assert_eq!(
        find(&all, "Ingress").expect("Ingress")["spec"]["rules"][0]["http"]["paths"][0]["path"]
            .as_str(),
        Some("/")
    );
}

/// `python3` with `package_dir` (a directory `scripts/test` installs into the tool directory) on `PYTHONPATH`,
/// or `None` when `module` does not import from it (the test skips; fails under CI).
fn python_with(package_dir: &str, module: &str) -> Option<Command> {
    let dirs = std::env::join_paths([tool_dir().join(package_dir), tool_dir().join("py")])
        .expect("PYTHONPATH");
    let works = Command::new("python3")
        .env("PYTHONPATH", &dirs)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        return missing(&format!("the Python module `{module}`"));
    }
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", &dirs);
    Some(cmd)
}

/// Runs `cmd` with `input` on stdin; returns success and stdout + stderr.
fn run_with_input(mut cmd: Command, input: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The chart with pypi, npm, cargo and go repositories and both admission policies for two runner namespaces.
fn injection_args(api_version: &str) -> Vec<String> {
    let mut args: Vec<String> = ["-f", &example("values-ci.yaml")]
        .map(String::from)
        .to_vec();
    for set in [
        "injection.mutatingAdmissionPolicy.enabled=true",
        "injection.kyverno.enabled=true",
        "injection.namespaces={arc-runners,gitlab-runner}",
        "injection.podSelector.matchLabels.ci=job",
    ] {
        args.push("--set".into());
        args.push(set.into());
    }
    args.push("--set".into());
    args.push(format!(
        "injection.mutatingAdmissionPolicy.apiVersion={api_version}"
    ));
    args
}

const BASE: &str = "http://wharf.wharf.svc:8080";

#[test]
fn admission_policies_match_the_kubernetes_and_kyverno_schemas() {
    let Some(_) = tool("helm", &["version"]) else {
        return;
    };
    let defaults = render(&["-f", &example("values-ci.yaml")]).expect("helm");
    for kind in [
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "ClusterPolicy",
    ] {
        assert!(find(&defaults, kind).is_none(), "{kind} is opt-in");
    }
    let mut kyverno_policy = None;
    for api_version in ["v1", "v1beta1", "v1alpha1"] {
        let args = injection_args(&format!("admissionregistration.k8s.io/{api_version}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let docs = render(&args).expect("helm");
        let policy = find(&docs, "MutatingAdmissionPolicy").expect("policy");
        let binding = find(&docs, "MutatingAdmissionPolicyBinding").expect("binding");
        assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
        let selector = &binding["spec"]["matchResources"];
        assert_eq!(
            selector["namespaceSelector"]["matchExpressions"][0]["values"],
            serde_yaml_ng::from_str::<Value>("[arc-runners, gitlab-runner]").expect("yaml")
        );
        assert_eq!(
            selector["objectSelector"]["matchLabels"]["ci"].as_str(),
            Some("job")
        );
        // Pods can opt out.
        let opt_out = &selector["objectSelector"]["matchExpressions"][0];
        assert_eq!(opt_out["key"].as_str(), Some("wharf.dev/inject"));
        assert_eq!(opt_out["operator"].as_str(), Some("NotIn"));
        // cargo's settings are in each runner namespace, where pods can mount them.
        let cargo: Vec<&Value> = docs
            .iter()
            .filter(|d| d["metadata"]["name"].as_str() == Some("wharf-cargo-config"))
            .collect();
        let namespaces: Vec<&str> = cargo
            .iter()
            .filter_map(|d| d["metadata"]["namespace"].as_str())
            .collect();
        assert_eq!(namespaces, ["arc-runners", "gitlab-runner"]);
        let toml = cargo[0]["data"]["config.toml"]
            .as_str()
            .expect("config.toml");
        assert!(
            toml.contains("replace-with = \"wharf\"")
                && toml.contains(&format!("registry = \"sparse+{BASE}/cargo/\"")),
            "{toml}"
        );

        // The Kubernetes objects against the API server's schemas (strict: no unknown field).
        if let Some(mut validator) = kubernetes_validate() {
            validate_admission_objects(&mut validator, &docs, api_version);
        }
        if api_version == "v1" {
            kyverno_policy = find(&docs, "ClusterPolicy").cloned();
        }
    }

    // Kyverno's policy against the kyverno.io/v1 schema (one run: loading the models takes seconds).
    let kyverno = kyverno_policy.expect("ClusterPolicy");
    let rules: Vec<&str> = kyverno["spec"]["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(
        rules,
        [
            "env-containers",
            "cargo-containers",
            "env-init-containers",
            "cargo-init-containers",
            "cargo-volume"
        ]
    );
    if let Some(mut python) = python_with("kyverno-py", "cloudcoil.models.kyverno.v1") {
        python.arg(repo_root().join("deploy/tests/validate-kyverno.py"));
        let line = serde_json::to_string(&kyverno).expect("json");
        // The check does catch a misplaced field.
        let broken = line.replacen("\"foreach\"", "\"forEach\"", 1).replacen(
            "wharf-client-settings",
            "broken",
            1,
        );
        let (ok, out, err) = run_with_input(python, &format!("{line}\n{broken}\n"));
        assert!(
            out.contains("valid ClusterPolicy/wharf-client-settings\n"),
            "{out}{err}"
        );
        assert!(
            !ok && out.contains("invalid ClusterPolicy/broken") && out.contains("forEach"),
            "{out}{err}"
        );
    }

    // Over HTTPS, pip needs no trusted host; a format can be left out.
    let docs = render(&[
        "-f",
        &example("values-ci.yaml"),
        "--set",
        "injection.mutatingAdmissionPolicy.enabled=true",
        "--set",
        "injection.namespaces={ci}",
        "--set",
        "injection.url=https://wharf.ci.example.com",
        "--set",
        "injection.repositories.npm=-",
    ])
    .expect("helm");
    let expression = find(&docs, "MutatingAdmissionPolicy").expect("policy")["spec"]["mutations"]
        [0]["applyConfiguration"]["expression"]
        .as_str()
        .expect("expression")
        .to_string();
    assert!(
        expression.contains("\"https://wharf.ci.example.com/pypi/simple/\"")
            && !expression.contains("PIP_TRUSTED_HOST")
            && !expression.contains("npm_config_registry"),
        "{expression}"
    );
    // Misconfigurations are refused when rendering.
    let log = render_refused(&[
        "--set",
        "injection.kyverno.enabled=true",
        "--set",
        "injection.namespaces={ci}",
    ]);
    assert!(
        log.contains("no pypi, npm, go or cargo repository"),
        "{log}"
    );
    let log = render_refused(&["--set", "injection.kyverno.enabled=true"]);
    assert!(log.contains("/injection/namespaces"), "{log}");
    let log = render_refused(&[
        "-f",
        &example("values-ci.yaml"),
        "--set",
        "injection.kyverno.enabled=true",
        "--set",
        "injection.namespaces={ci}",
        "--set",
        "injection.repositories.pypi=npm",
    ]);
    assert!(log.contains("injection.repositories.pypi"), "{log}");
}

/// Validates the chart's Kubernetes objects in `docs` (not the custom resources) with kubernetes-validate and
/// checks the admission objects were among them.
fn validate_admission_objects(validator: &mut Command, docs: &[Value], api_version: &str) {
    let kube: Vec<String> = docs
        .iter()
        .filter(|d| kind_of(d) != "ClusterPolicy")
        .filter(|d| {
            !d["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("monitoring.coreos.com/"))
        })
        // JSON is YAML, and keeps "off" a string (YAML 1.1 readers take a bare off as false).
        .map(|d| serde_json::to_string(d).expect("json"))
        .collect();
    let passed = validate_manifests(validator, &kube.join("\n---\n"), api_version);
    for name in [
        "mutatingadmissionpolicy/wharf-client-settings",
        "mutatingadmissionpolicybinding/wharf-client-settings",
        "configmap/wharf-cargo-config",
    ] {
        assert!(
            passed.iter().any(|p| p == name),
            "{api_version}: {name}: {passed:?}"
        );
    }
}

/// Sample pods as runners create them: an ARC job pod (kubernetes mode) with a service container that sets
/// its own npm registry, a GitLab build pod whose build container has its own index (from a Secret) and its own
/// /.cargo, with an init container, and a bare pod.
fn sample_pods() -> serde_json::Value {
    serde_json::from_str(
        r#"[
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "arc-job", "namespace": "arc-runners"},
         "spec": {"containers": [
            {"name": "job", "image": "ubuntu:24.04", "workingDir": "/__w/repo/repo",
             "env": [{"name": "GITHUB_ACTIONS", "value": "true"}],
             "volumeMounts": [{"name": "work", "mountPath": "/__w"}]},
            {"name": "verdaccio", "image": "node:22",
             "env": [{"name": "npm_config_registry", "value": "http://127.0.0.1:4873/"}]}],
          "volumes": [{"name": "work", "persistentVolumeClaim": {"claimName": "arc-work"}}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gitlab-build", "namespace": "gitlab-runner"},
         "spec": {"initContainers": [{"name": "init-permissions", "image": "busybox:1.36"}],
          "containers": [
            {"name": "build", "image": "python:3.12",
             "env": [{"name": "PIP_INDEX_URL",
                      "valueFrom": {"secretKeyRef": {"name": "private-index", "key": "url"}}}],
             "volumeMounts": [{"name": "own-cargo", "mountPath": "/.cargo"}]},
            {"name": "helper", "image": "gitlab-runner-helper:latest"}],
          "volumes": [{"name": "own-cargo", "configMap": {"name": "team-cargo"}}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare", "namespace": "arc-runners"},
         "spec": {"containers": [{"name": "c", "image": "rust:1"}]}}
    ]"#,
    )
    .expect("sample pods")
}

/// `pods` after the policy's mutations, evaluated by cel-python (`deploy/tests/eval-admission-policy.py`).
fn evaluate_policy(policy: &Value, pods: &serde_json::Value) -> Option<Vec<serde_json::Value>> {
    let mut python = python_with("cel-py", "celpy")?;
    python.arg(repo_root().join("deploy/tests/eval-admission-policy.py"));
    let schemas =
        tool_dir().join("py/kubernetes_validate/kubernetes-json-schema/v1.37.0-local-strict");
    let input = serde_json::json!({
        "policy": serde_json::to_value(policy).expect("json"),
        "pods": pods,
        "schemas": schemas,
    });
    let (ok, out, err) = run_with_input(python, &input.to_string());
    assert!(ok, "evaluating the policy failed:\n{out}\n{err}");
    let results: Vec<serde_json::Value> = serde_json::from_str(&out).expect("results");
    Some(
        results
            .into_iter()
            .map(|r| {
                assert!(
                    r["error"].is_null(),
                    "CEL evaluation failed: {}",
                    r["error"]
                );
                r["pod"].clone()
            })
            .collect(),
    )
}

fn env_of(container: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    container["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|e| {
                    let value = if e["value"].is_null() {
                        e["valueFrom"].clone()
                    } else {
                        e["value"].clone()
                    };
                    (e["name"].as_str().unwrap_or("").to_string(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn admission_policy_cel_gives_job_pods_only_the_settings_they_lack() {
    let Some(_) = tool("helm", &["version"]) else {
        return;
    };
    let args = injection_args("admissionregistration.k8s.io/v1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let docs = render(&args).expect("helm");
    let policy = find(&docs, "MutatingAdmissionPolicy").expect("policy");
    let Some(pods) = evaluate_policy(policy, &sample_pods()) else {
        return;
    };
    let wanted = [
        ("PIP_INDEX_URL", format!("{BASE}/pypi/simple/")),
        ("PIP_TRUSTED_HOST", "wharf.wharf.svc".to_string()),
        ("UV_DEFAULT_INDEX", format!("{BASE}/pypi/simple/")),
        ("npm_config_registry", format!("{BASE}/npm/")),
        ("GOPROXY", format!("{BASE}/go")),
    ];
    let container = |pod: &serde_json::Value, list: &str, name: &str| {
        pod["spec"][list]
            .as_array()
            .expect("containers")
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no container {name}"))
            .clone()
    };
    let cargo_mount = |c: &serde_json::Value| {
        c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["mountPath"] == "/.cargo")
            .map(|m| m["name"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    let has_all = |c: &serde_json::Value, except: &[&str]| {
        let env = env_of(c);
        for (name, value) in &wanted {
            if except.contains(name) {
                continue;
            }
            let found: Vec<_> = env.iter().filter(|(n, _)| n == name).collect();
            assert_eq!(found.len(), 1, "{name} in {}: {env:?}", c["name"]);
            assert_eq!(found[0].1.as_str(), Some(value.as_str()), "{name}");
        }
    };

    // ARC job pod: the job container gets everything, its own variables stay first and untouched.
    let job = container(&pods[0], "containers", "job");
    has_all(&job, &[]);
    assert_eq!(env_of(&job)[0].0, "GITHUB_ACTIONS");
    assert_eq!(cargo_mount(&job), ["wharf-cargo-config"]);
    // The service container keeps its own registry.
    let service = container(&pods[0], "containers", "verdaccio");
    has_all(&service, &["npm_config_registry"]);
    let registry: Vec<_> = env_of(&service)
        .into_iter()
        .filter(|(n, _)| n == "npm_config_registry")
        .collect();
    assert_eq!(
        registry,
        [(
            "npm_config_registry".to_string(),
            serde_json::json!("http://127.0.0.1:4873/")
        )]
    );
    let volume = pods[0]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "wharf-cargo-config")
        .expect("cargo volume")
        .clone();
    assert_eq!(
        volume["projected"]["sources"][0]["configMap"],
        serde_json::json!({"name": "wharf-cargo-config", "optional": true})
    );

    // GitLab build pod: the build container's own index (from a Secret) and /.cargo win.
    let build = container(&pods[1], "containers", "build");
    has_all(&build, &["PIP_INDEX_URL"]);
    let index: Vec<_> = env_of(&build)
        .into_iter()
        .filter(|(n, _)| n == "PIP_INDEX_URL")
        .collect();
    assert_eq!(index.len(), 1);
    assert_eq!(index[0].1["secretKeyRef"]["name"], "private-index");
    assert_eq!(cargo_mount(&build), ["own-cargo"]);
    let helper = container(&pods[1], "containers", "helper");
    has_all(&helper, &[]);
    assert_eq!(cargo_mount(&helper), ["wharf-cargo-config"]);
    let init = container(&pods[1], "initContainers", "init-permissions");
    has_all(&init, &[]);
    let bare = container(&pods[2], "containers", "c");
    has_all(&bare, &[]);
    assert_eq!(cargo_mount(&bare), ["wharf-cargo-config"]);

    // Evaluated again (reinvocation after another mutation), the policy changes nothing.
    let again = evaluate_policy(policy, &serde_json::Value::Array(pods.clone())).expect("celpy");
    assert_eq!(again, pods, "the policy is idempotent");

    // The mutated pods are valid Pods.
    let Some(mut validator) = kubernetes_validate() else {
        return;
    };
    let yaml: Vec<String> = pods
        .iter()
        .map(|p| serde_json::to_string(p).expect("json"))
        .collect();
    let passed = validate_manifests(&mut validator, &yaml.join("\n---\n"), "mutated pods");
    for name in ["pod/arc-job", "pod/gitlab-build", "pod/bare"] {
        assert!(passed.iter().any(|p| p == name), "{name}: {passed:?}");
    }
}

#[test]
fn store_repair_runs_the_binary_check_before_wharf_starts() {
    let Some(docs) = render(&["--set", "storeRepair=true"]) else {
        return;
    };
    let pod = &find(&docs, "StatefulSet").expect("StatefulSet")["spec"]["template"]["spec"];
    let init = &pod["initContainers"][0];
    assert_eq!(init["name"].as_str(), Some("store-repair"));
    assert_eq!(init["image"], pod["containers"][0]["image"]);
    assert!(init["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .any(|m| m["name"] == "data" && m["mountPath"] == "/var/lib/wharf"));
    // The image's entrypoint is wharf: its arguments, run here on a scratch data directory, are a command the
    // binary accepts and completes.
    let args: Vec<String> = init["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .map(String::from)
        .collect();
    // A store wharf wrote (the check refuses a directory that holds none, such as a new volume).
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let wharf = Wharf::start(
        &data_dir,
        &pypi_repo("pypi", "http://127.0.0.1:9/simple/", ""),
        "",
    );
    wharf.terminate();
    let data = data_dir.display().to_string();
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            if a == "/var/lib/wharf" {
                data.clone()
            } else {
                a
            }
        })
        .collect();
    let out = Command::new(WHARF).args(&args).output().expect("wharf");
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    assert!(render(&[])
        .expect("helm")
        .iter()
        .all(|d| d["spec"]["template"]["spec"]["initContainers"].is_null()));
}

/// The rules of every Role and ClusterRole rendered, with their kind, name and namespace.
fn rbac_rules(docs: &[Value]) -> Vec<(String, String, Value)> {
    docs.iter()
        .filter(|d| matches!(kind_of(d), "Role" | "ClusterRole"))
        .map(|d| {
            let name = d["metadata"]["name"].as_str().unwrap_or("").to_string();
            let ns = d["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (format!("{}/{name}", kind_of(d)), ns, d["rules"].clone())
        })
        .collect()
}

#[test]
fn usage_pods_reads_pods_with_get_list_watch_only_and_is_off_by_default() {
    let Some(off) = render(&[]) else {
        return;
    };
    assert!(rbac_rules(&off).is_empty(), "no role by default");
    assert!(!off
        .iter()
        .any(|d| matches!(kind_of(d), "RoleBinding" | "ClusterRoleBinding")));
    let sts = find(&off, "StatefulSet").expect("statefulset");
    assert_eq!(
        sts["spec"]["template"]["spec"]["automountServiceAccountToken"],
        Value::Bool(false)
    );
    assert!(!rendered_config(&off).contains("pods:"));

    let only_pods: Value = serde_yaml_ng::from_str(
        "- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get, list, watch]\n",
    )
    .expect("yaml");
    // The whole cluster: one ClusterRole bound to wharf's own service account (created for it), the token
    // mounted, the config wired.
    let docs = render(&[
        "--set",
        "usage.pods.enabled=true",
        "--set",
        "usage.pods.label=team",
    ])
    .expect("helm");
    let rules = rbac_rules(&docs);
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(rules[0].0.starts_with("ClusterRole/"), "{rules:?}");
    assert_eq!(rules[0].2, only_pods);
    let binding = find(&docs, "ClusterRoleBinding").expect("binding");
    let account = find(&docs, "ServiceAccount").expect("a service account of its own");
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], account["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["namespace"], "wharf");
    assert_eq!(
        binding["roleRef"]["name"],
        find(&docs, "ClusterRole").unwrap()["metadata"]["name"]
    );
    let pod = &find(&docs, "StatefulSet").expect("statefulset")["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], Value::Bool(true));
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    let config: Value = serde_yaml_ng::from_str(&rendered_config(&docs)).expect("config");
    assert_eq!(config["usage"]["pods"]["enabled"], Value::Bool(true));
    assert_eq!(config["usage"]["pods"]["label"], "team");
    assert_eq!(config["usage"]["max_namespaces"], 50);

    // Listed namespaces: a Role and a RoleBinding in each, no cluster-wide role.
    let docs = render(&[
        "--set",
        "usage.pods.enabled=true",
        "--set",
        "usage.pods.namespaces={ci-a,ci-b}",
        "--set",
        "usage.max_namespaces=10",
    ])
    .expect("helm");
    let rules = rbac_rules(&docs);
    let namespaces: Vec<&str> = rules.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(namespaces, ["ci-a", "ci-b"], "{rules:?}");
    assert!(
        rules
            .iter()
            .all(|r| r.0.starts_with("Role/") && r.2 == only_pods),
        "{rules:?}"
    );
    let bindings: Vec<&Value> = docs
        .iter()
        .filter(|d| kind_of(d) == "RoleBinding")
        .collect();
    assert_eq!(bindings.len(), 2);
    assert!(bindings
        .iter()
        .all(|b| b["roleRef"]["kind"] == "Role" && b["subjects"][0]["namespace"] == "wharf"));
    let config: Value = serde_yaml_ng::from_str(&rendered_config(&docs)).expect("config");
    assert_eq!(config["usage"]["max_namespaces"], 10);
    assert_eq!(config["usage"]["pods"]["namespaces"][1], "ci-b");

    // A named existing account gets the binding and no account is created.
    let docs = render(&[
        "--set",
        "usage.pods.enabled=true",
        "--set",
        "serviceAccount.name=ci-cache",
    ])
    .expect("helm");
    assert!(find(&docs, "ServiceAccount").is_none());
    assert_eq!(
        find(&docs, "ClusterRoleBinding").unwrap()["subjects"][0]["name"],
        "ci-cache"
    );

    let log = render_refused(&[
        "--set",
        "usage.pods.enabled=true",
        "--set",
        "usage.pods.namespaces={CI_Jobs}",
    ]);
    assert!(log.contains("/usage/pods/namespaces/0"), "{log}");
    let log = render_refused(&["--set", "usage.max_namespaces=0"]);
    assert!(log.contains("/usage/max_namespaces"), "{log}");
}
