//! apt archives (`preset: apt`): a consistent view of a suite's indexes.
//!
//! `dists/<suite>/InRelease` (or `Release`) names every index of the suite with its sha256. An archive
//! that is being updated upstream can, for a while, serve a new `Packages` beside the old `InRelease`
//! (or the reverse), and a client that reads the two then fails with "Hash Sum mismatch". So for an un-hashed
//! index wharf serves the bytes the `InRelease` it currently serves names: it looks the index up in that
//! file and serves the content by its sha256, kept under the index's `by-hash/SHA256/<sum>` path (fetched
//! from upstream's by-hash path, or from the un-hashed path and verified against the sum when upstream
//! publishes no by-hash files). Contents named by hash are immutable, so the previous generation of every
//! index stays available after a new `InRelease` is served, for clients that read the previous one and
//! fetch by hash (apt does, when the archive says `Acquire-By-Hash: yes`).

/// The suite directory (`dists/<suite>`) and the index path within it, for a request path under `dists/`
/// that names an index (not the release files themselves, nor anything already named by hash).
pub fn index_in_suite(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("dists/")?;
    let (suite, rel) = rest.split_once('/')?;
    if suite.is_empty() || rel.is_empty() || rel.ends_with('/') {
        return None;
    }
    if matches!(rel, "InRelease" | "Release" | "Release.gpg") || rel.contains("/by-hash/") {
        return None;
    }
    Some((&path[.."dists/".len() + suite.len()], rel))
}

/// The sha256 the release file `text` (an `InRelease`, clear-signed, or a `Release`) lists for `rel`.
pub fn listed_sha256(text: &[u8], rel: &str) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    let mut in_sha256 = false;
    for line in text.lines() {
        if line.starts_with("-----BEGIN PGP SIGNATURE") {
            break;
        }
        if !line.starts_with(' ') {
            // A field: the `SHA256:` list continues on the following indented lines.
            in_sha256 = line.trim_end() == "SHA256:";
            continue;
        }
        if !in_sha256 {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(sum), Some(_size), Some(name), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if name == rel && sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(sum.to_ascii_lowercase());
        }
    }
    None
}

/// The request path of the by-hash copy of the index at `path` with sha256 `sum`.
pub fn by_hash_path(path: &str, sum: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/by-hash/SHA256/{sum}"),
        None => format!("by-hash/SHA256/{sum}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IN_RELEASE: &str = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nSuite: stable\n\
        Acquire-By-Hash: yes\nMD5Sum:\n 0123456789abcdef0123456789abcdef 10 main/binary-amd64/Packages\n\
        SHA256:\n aaaa000000000000000000000000000000000000000000000000000000000001 10 main/binary-amd64/Packages\n \
        BBBB000000000000000000000000000000000000000000000000000000000002 8 main/binary-amd64/Packages.gz\n\
        -----BEGIN PGP SIGNATURE-----\n\n SHA256:\n cccc000000000000000000000000000000000000000000000000000000000003 1 x\n";

    #[test]
    fn the_sha256_list_names_each_index() {
        let text = IN_RELEASE.as_bytes();
        assert_eq!(
            listed_sha256(text, "main/binary-amd64/Packages").as_deref(),
            Some("aaaa000000000000000000000000000000000000000000000000000000000001")
        );
        assert_eq!(
            listed_sha256(text, "main/binary-amd64/Packages.gz").as_deref(),
            Some("bbbb000000000000000000000000000000000000000000000000000000000002")
        );
        assert_eq!(listed_sha256(text, "main/binary-i386/Packages"), None);
        assert_eq!(
            listed_sha256(text, "x"),
            None,
            "nothing after the signature"
        );
        assert_eq!(listed_sha256(&[0xff], "x"), None);
    }

    #[test]
    fn indexes_are_paths_under_a_suite_but_not_release_files_or_by_hash() {
        assert_eq!(
            index_in_suite("dists/stable/main/binary-amd64/Packages.gz"),
            Some(("dists/stable", "main/binary-amd64/Packages.gz"))
        );
        assert_eq!(index_in_suite("dists/stable/InRelease"), None);
        assert_eq!(index_in_suite("dists/stable/Release.gpg"), None);
        assert_eq!(
            index_in_suite("dists/stable/main/binary-amd64/by-hash/SHA256/ab"),
            None
        );
        assert_eq!(index_in_suite("pool/main/a.deb"), None);
        assert_eq!(index_in_suite("dists/stable"), None);
        assert_eq!(
            by_hash_path("dists/stable/main/binary-amd64/Packages", "ab"),
            "dists/stable/main/binary-amd64/by-hash/SHA256/ab"
        );
    }
}
