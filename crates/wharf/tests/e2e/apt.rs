//! apt archives through a generic repository with `preset: apt`: the test builds a one-package archive
//! (`dpkg-deb`, `apt-ftparchive`, a throwaway `gpg` key signing `InRelease` and `Release.gpg`, indexes also
//! published by hash), serves it from a local upstream, and runs real `apt-get update` and
//! `apt-get install --download-only` through wharf; then stops the upstream, lets the indexes go stale and
//! runs both again: the stale indexes and the kept package are served, so both still succeed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use wharf_testkit::FixtureUpstream;

fn sh(cmd: &mut Command) -> String {
    let (ok, text) = run(cmd);
    assert!(ok, "{cmd:?} failed:\n{text}");
    text
}

/// Builds a signed archive under `root/archive` (suite `stable`, component `main`, amd64, one package
/// `wharf-hello`); returns the archive directory and the keyring apt should trust.
fn build_archive(root: &Path) -> (PathBuf, PathBuf) {
    let pkg = root.join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/share/doc/wharf-hello")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: wharf-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: Test <test@invalid>\n\
         Description: a package for wharf's apt test\n",
    )
    .unwrap();
    std::fs::write(pkg.join("usr/share/doc/wharf-hello/README"), "hello\n").unwrap();
    let archive = root.join("archive");
    let index_dir = archive.join("dists/stable/main/binary-amd64");
    std::fs::create_dir_all(archive.join("pool/main")).unwrap();
    std::fs::create_dir_all(index_dir.join("by-hash/SHA256")).unwrap();
    std::fs::create_dir_all(index_dir.join("by-hash/SHA512")).unwrap();
    sh(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&pkg)
        .arg(archive.join("pool/main/wharf-hello_1.0_all.deb")));
    let packages = sh(Command::new("apt-ftparchive")
        .args(["packages", "pool"])
        .current_dir(&archive));
    let packages = packages.trim_end().to_string() + "\n";
    std::fs::write(index_dir.join("Packages"), &packages).unwrap();
    sh(Command::new("gzip")
        .args(["-k", "-n"])
        .arg(index_dir.join("Packages")));
    for file in ["Packages", "Packages.gz"] {
        let bytes = std::fs::read(index_dir.join(file)).unwrap();
        use sha2::Digest;
        let sha512: String = sha2::Sha512::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(index_dir.join("by-hash/SHA512").join(sha512), &bytes).unwrap();
        std::fs::write(
            index_dir.join("by-hash/SHA256").join(sha256_hex(&bytes)),
            bytes,
        )
        .unwrap();
    }
    let release = sh(Command::new("apt-ftparchive")
        .args([
            "-o",
            "APT::FTPArchive::Release::Suite=stable",
            "-o",
            "APT::FTPArchive::Release::Codename=stable",
            "-o",
            "APT::FTPArchive::Release::Components=main",
            "-o",
            "APT::FTPArchive::Release::Architectures=amd64",
            "-o",
            "APT::FTPArchive::Release::Acquire-By-Hash=yes",
            "release",
            "dists/stable",
        ])
        .current_dir(&archive));
    std::fs::write(archive.join("dists/stable/Release"), release).unwrap();
    let gnupg = root.join("gnupg");
    std::fs::create_dir_all(&gnupg).unwrap();
    let gpg = |args: &[&str]| {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", &gnupg)
            .args(["--batch", "--yes", "--quiet", "--passphrase", ""])
            .args(args)
            .current_dir(&archive);
        cmd
    };
    sh(&mut gpg(&[
        "--quick-gen-key",
        "wharf apt test <test@invalid>",
        "ed25519",
        "sign",
        "never",
    ]));
    sh(&mut gpg(&[
        "--clearsign",
        "-o",
        "dists/stable/InRelease",
        "dists/stable/Release",
    ]));
    sh(&mut gpg(&[
        "-abs",
        "-o",
        "dists/stable/Release.gpg",
        "dists/stable/Release",
    ]));
    let keyring = root.join("trusted.gpg");
    let key = gpg(&["--export"]).output().expect("gpg --export").stdout;
    assert!(!key.is_empty(), "gpg exported no key");
    std::fs::write(&keyring, key).unwrap();
    (archive, keyring)
}

/// Every file under `dir`, as paths relative to it with `/` separators.
fn files(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.file_type().unwrap().is_dir() {
            files(&entry.path(), &format!("{name}/"), out);
        } else {
            out.push((name, entry.path()));
        }
    }
}

/// wharf with a `preset: apt` repository `debian` in front of `<upstream>debian/`, indexes fresh for 1 s.
fn start_debian(root: &Path, upstream: &str) -> Wharf {
    Wharf::start(
        &root.join("data"),
        &format!(
            "  debian:\n    format: generic\n    upstream: \"{upstream}debian/\"\n    preset: apt\n    metadata_ttl: 1s\n"
        ),
        "http:\n  retries: 0",
    )
}

/// `apt-get` with all its state, cache and configuration in `root` (the sources name the key they trust).
fn apt_get(root: &Path, args: &[&str]) -> (bool, String) {
    let opt = |k: &str, v: &Path| format!("{k}={}", v.display());
    let mut cmd = Command::new("apt-get");
    for o in [
        opt("Dir::State", &root.join("state")),
        opt("Dir::Cache", &root.join("cache")),
        opt("Dir::Etc::SourceList", &root.join("sources.list")),
        "Dir::Etc::Trusted=/dev/null".into(),
        "Dir::Etc::SourceParts=/dev/null".into(),
        "Dir::Etc::TrustedParts=/dev/null".into(),
        "Dir::Etc::Parts=/dev/null".into(),
        "Dir::State::status=/dev/null".into(),
        "Debug::NoLocking=1".into(),
        "APT::Sandbox::User=root".into(),
        "APT::Architecture=amd64".into(),
        "APT::Architectures=amd64".into(),
        "Acquire::Languages=none".into(),
        "Acquire::Retries=0".into(),
        "Acquire::http::Proxy=DIRECT".into(),
    ] {
        cmd.args(["-o", &o]);
    }
    cmd.args(["-q", "-y"]).args(args).env_remove("http_proxy");
    run(&mut cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apt_update_and_download_through_the_preset_then_with_the_upstream_down() {
    for (tool, probe) in [
        ("apt-get", &["--version"][..]),
        ("apt-ftparchive", &["--version"][..]),
        ("gpg", &["--version"][..]),
        ("dpkg-deb", &["--version"][..]),
    ] {
        if !require_tool(tool, probe) {
            return;
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (archive, keyring) = build_archive(tmp.path());
    let up = FixtureUpstream::start().await;
    let mut all = Vec::new();
    files(&archive, "", &mut all);
    for (rel, path) in &all {
        up.put(
            &format!("/debian/{rel}"),
            std::fs::read(path).unwrap(),
            "application/octet-stream",
        );
    }
    let wharf = start_debian(tmp.path(), &up.url());
    let client = tmp.path().join("client");
    std::fs::create_dir_all(client.join("state/lists/partial")).unwrap();
    std::fs::create_dir_all(client.join("cache/archives/partial")).unwrap();
    std::fs::write(
        client.join("sources.list"),
        format!(
            "deb [signed-by={}] {} stable main\n",
            keyring.display(),
            wharf.url("/debian/")
        ),
    )
    .unwrap();
    let deb = client.join("cache/archives/wharf-hello_1.0_all.deb");

    let (ok, text) = apt_get(&client, &["update"]);
    assert!(
        ok && !text.contains("W: ") && !text.contains("E: ") && !text.contains("Ign:"),
        "{text}\n{:#?}",
        wharf.access_log()
    );
    let (ok, text) = apt_get(&client, &["install", "--download-only", "wharf-hello"]);
    assert!(ok, "{text}");
    assert_eq!(
        std::fs::read(&deb).unwrap(),
        std::fs::read(archive.join("pool/main/wharf-hello_1.0_all.deb")).unwrap()
    );
    assert_eq!(up.requests_for("/debian/dists/stable/InRelease"), 1);
    assert!(
        up.requests_under("/debian/dists/stable/main/binary-amd64/by-hash/") >= 1,
        "apt fetched the indexes by hash"
    );
    assert_eq!(
        up.requests_for("/debian/pool/main/wharf-hello_1.0_all.deb"),
        1
    );

    // `wharf env` gives the deb822 stanza for the repository.
    let env = Command::new(WHARF)
        .args(["env", "--config"])
        .arg(&wharf.config_path)
        .output()
        .expect("wharf env");
    let env = String::from_utf8_lossy(&env.stdout);
    assert!(
        env.contains(&format!("# URIs: {}", wharf.url("/debian/"))),
        "{env}"
    );

    // Upstream gone and the indexes past metadata_ttl: update and download still work from what wharf kept.
    up.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    std::fs::remove_file(&deb).unwrap();
    std::fs::remove_dir_all(client.join("state/lists")).unwrap();
    std::fs::create_dir_all(client.join("state/lists/partial")).unwrap();
    let (ok, text) = apt_get(&client, &["update"]);
    assert!(
        ok && !text.contains("E: ") && !text.contains("Err:"),
        "{text}"
    );
    let (ok, text) = apt_get(&client, &["install", "--download-only", "wharf-hello"]);
    assert!(ok, "{text}");
    assert!(
        deb.exists(),
        "the package was served with the upstream down"
    );
}

/// A suite's `Release` listing its two indexes with their sha256.
fn release_listing(packages: &[u8]) -> String {
    format!(
        "Suite: stable\nSHA256:\n {} {} main/binary-amd64/Packages\n",
        sha256_hex(packages),
        packages.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhashed_index_is_the_one_the_served_release_file_names_during_an_upstream_update() {
    // An archive without by-hash files, updated upstream in two steps (index first, release file later):
    // between the steps, upstream's `Release` and `Packages` disagree, and wharf keeps serving the pair that
    // agrees; after the second step it serves the new pair. (With by-hash files upstream, each generation is
    // kept under its by-hash path like any immutable file: the first test's apt fetches indexes that way.)
    let up = FixtureUpstream::start().await;
    let v1 = b"Package: hello\nVersion: 1.0\n\n".to_vec();
    let v2 = b"Package: hello\nVersion: 2.0\n\n".to_vec();
    let index = "/debian/dists/stable/main/binary-amd64/Packages";
    up.put(
        "/debian/dists/stable/Release",
        release_listing(&v1),
        "text/plain",
    );
    up.put(index, v1.clone(), "text/plain");
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = start_debian(tmp.path(), &up.url());
    let client = http();
    let get = |path: &str| {
        let client = client.clone();
        let url = wharf.url(path);
        async move {
            let resp = client.get(url).send().await.expect("request");
            let status = resp.status().as_u16();
            // A body cut short (a download that failed its sha256 midway) reads as empty.
            (
                status,
                resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
            )
        }
    };
    let unhashed = "/debian/dists/stable/main/binary-amd64/Packages";
    assert_eq!(get(unhashed).await, (200, v1.clone()));

    // Step one upstream: the new index, the old release file.
    up.put(index, v2.clone(), "text/plain");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(unhashed).await,
        (200, v1.clone()),
        "the index the served Release names, not upstream's newer one"
    );

    // Step two: the new release file. The index follows it.
    up.put(
        "/debian/dists/stable/Release",
        release_listing(&v2),
        "text/plain",
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(unhashed).await, (200, v2.clone()));
    // The index the Release names is kept: served with upstream's copy gone.
    up.remove(index);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(unhashed).await, (200, v2.clone()));
    // A Release that names an index upstream no longer matches: refused, never served as that index.
    up.put(
        "/debian/dists/stable/Release",
        release_listing(b"something else"),
        "text/plain",
    );
    up.put(index, v2.clone(), "text/plain");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = get(unhashed).await;
    assert!(status != 200 || body != v2, "{status}");
}
