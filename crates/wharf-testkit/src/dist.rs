//! Building real Python distributions in memory.
//!
//! Everything here is deterministic: the same arguments (and seed) always give the same bytes, so
//! hashes can be compared across runs. No network, no Python needed to build.
//!
//! - [`wheel`] / [`wheel_with_payload`]: a pure-Python `py3-none-any` wheel (a zip with stored,
//!   uncompressed entries) with a correct `.dist-info` (`METADATA`, `WHEEL`, `top_level.txt` and a
//!   `RECORD` whose hashes and sizes match). Installs with `pip install` and `uv pip install`.
//! - [`sdist`]: a `.tar.gz` source distribution (ustar archive, gzip with stored deflate blocks) with
//!   `PKG-INFO`, a setuptools `pyproject.toml` and the module.

use base64::Engine as _;
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// One distribution file as served by the upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dist {
    /// The project name as given by the caller (not normalised).
    pub project: String,
    pub version: String,
    /// The file name, e.g. `my_pkg-1.0-py3-none-any.whl` or `my_pkg-1.0.tar.gz`.
    pub filename: String,
    /// The whole file.
    pub bytes: Bytes,
    /// Hex sha256 of [`Dist::bytes`].
    pub sha256: String,
    /// The core metadata file (`METADATA`) for wheels, served as `{filename}.metadata` (PEP 658).
    pub metadata: Option<Bytes>,
    /// `requires-python` advertised on the index page.
    pub requires_python: Option<String>,
    /// `Some("")` = yanked without a reason, `Some(reason)` = yanked with a reason (PEP 592).
    pub yanked: Option<String>,
    /// PEP 700 `upload-time` on JSON pages (RFC 3339); `None` = a fixed old date.
    pub upload_time: Option<String>,
}

impl Dist {
    /// Builds a `Dist` around arbitrary bytes (computes the sha256). Handy for hand-made files.
    pub fn from_bytes(
        project: &str,
        version: &str,
        filename: &str,
        bytes: impl Into<Bytes>,
    ) -> Dist {
        let bytes = bytes.into();
        Dist {
            project: project.to_string(),
            version: version.to_string(),
            filename: filename.to_string(),
            sha256: sha256_hex(&bytes),
            bytes,
            metadata: None,
            requires_python: None,
            yanked: None,
            upload_time: None,
        }
    }

    /// Advertises `requires-python` on the index page. The file's bytes are unchanged (the
    /// `METADATA` inside does not carry it).
    pub fn with_requires_python(mut self, spec: &str) -> Self {
        self.requires_python = Some(spec.to_string());
        self
    }

    /// Marks the file yanked (PEP 592); an empty reason means "yanked, no reason".
    /// Advertises `upload-time` (RFC 3339) on JSON index pages, for release-cooldown tests.
    pub fn uploaded_at(mut self, rfc3339: &str) -> Self {
        self.upload_time = Some(rfc3339.to_string());
        self
    }

    pub fn yanked(mut self, reason: &str) -> Self {
        self.yanked = Some(reason.to_string());
        self
    }

    /// Hex sha256 of the metadata file, when there is one.
    pub fn metadata_sha256(&self) -> Option<String> {
        self.metadata.as_ref().map(|m| sha256_hex(m))
    }

    /// The Python module name the distribution installs.
    pub fn import_name(&self) -> String {
        import_name(&self.project)
    }
}

/// Hex-encoded sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// PEP 503 normalisation: lowercase, runs of `-`, `_`, `.` become one `-`.
pub fn normalize_name(name: &str) -> String {
    collapse_separators(name, '-')
}

/// The module name for a project: `-` and `.` become `_`, lowercased.
pub fn import_name(project: &str) -> String {
    project
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The distribution name as used in file names (runs of `-_.` become `_`, lowercased).
fn file_name_part(project: &str) -> String {
    collapse_separators(project, '_')
}

fn collapse_separators(name: &str, sep: char) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push(sep);
            }
            in_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_run = false;
        }
    }
    out
}

/// A pure-Python wheel `{name}-{version}-py3-none-any.whl` with module `{import_name}`.
pub fn wheel(project: &str, version: &str) -> Dist {
    build_wheel(project, version, None)
}

/// Like [`wheel`] plus `{import_name}/data.bin`: `payload_bytes` pseudo-random bytes derived from
/// `seed`, stored uncompressed (a 20 MB payload gives a ~20 MB wheel).
pub fn wheel_with_payload(project: &str, version: &str, payload_bytes: usize, seed: u64) -> Dist {
    build_wheel(project, version, Some(pseudo_random(payload_bytes, seed)))
}

/// A source distribution `{name}-{version}.tar.gz` (setuptools backend). `metadata` is `None`.
pub fn sdist(project: &str, version: &str) -> Dist {
    let fname = file_name_part(project);
    let module = import_name(project);
    let base = format!("{fname}-{version}");
    let pkg_info = metadata_text(project, version);
    let pyproject = format!(
        "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
         [project]\nname = \"{}\"\nversion = \"{}\"\ndescription = \"{}\"\n\n\
         [tool.setuptools]\npackages = [\"{module}\"]\n",
        py_escape(project),
        py_escape(version),
        summary(project),
    );
    let entries: Vec<(String, Vec<u8>)> = vec![
        (format!("{base}/PKG-INFO"), pkg_info.into_bytes()),
        (format!("{base}/pyproject.toml"), pyproject.into_bytes()),
        (
            format!("{base}/{module}/__init__.py"),
            init_py(project, version).into_bytes(),
        ),
    ];
    let tar = tar_archive(&entries);
    let bytes = Bytes::from(gzip_stored(&tar));
    Dist {
        project: project.to_string(),
        version: version.to_string(),
        filename: format!("{base}.tar.gz"),
        sha256: sha256_hex(&bytes),
        bytes,
        metadata: None,
        requires_python: None,
        yanked: None,
        upload_time: None,
    }
}

fn build_wheel(project: &str, version: &str, payload: Option<Vec<u8>>) -> Dist {
    let fname = file_name_part(project);
    let module = import_name(project);
    let dist_info = format!("{fname}-{version}.dist-info");
    let metadata = metadata_text(project, version).into_bytes();

    let mut files: Vec<(String, Vec<u8>)> = vec![(
        format!("{module}/__init__.py"),
        init_py(project, version).into_bytes(),
    )];
    if let Some(p) = payload {
        files.push((format!("{module}/data.bin"), p));
    }
    files.push((format!("{dist_info}/METADATA"), metadata.clone()));
    files.push((
        format!("{dist_info}/WHEEL"),
        b"Wheel-Version: 1.0\nGenerator: wharf-testkit\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            .to_vec(),
    ));
    files.push((
        format!("{dist_info}/top_level.txt"),
        format!("{module}\n").into_bytes(),
    ));

    let mut record = String::new();
    for (name, data) in &files {
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(data));
        record.push_str(&format!("{name},sha256={digest},{}\n", data.len()));
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    files.push((format!("{dist_info}/RECORD"), record.into_bytes()));

    let bytes = Bytes::from(zip_stored(&files));
    Dist {
        project: project.to_string(),
        version: version.to_string(),
        filename: format!("{fname}-{version}-py3-none-any.whl"),
        sha256: sha256_hex(&bytes),
        bytes,
        metadata: Some(Bytes::from(metadata)),
        requires_python: None,
        yanked: None,
        upload_time: None,
    }
}

fn summary(project: &str) -> String {
    format!(
        "Test distribution {} generated by wharf-testkit",
        py_escape(project)
    )
}

fn metadata_text(project: &str, version: &str) -> String {
    format!(
        "Metadata-Version: 2.1\nName: {project}\nVersion: {version}\nSummary: {}\n",
        summary(project)
    )
}

fn py_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn init_py(project: &str, version: &str) -> String {
    format!(
        "VERSION = \"{v}\"\n\n\ndef hello():\n    return \"{p} {v}\"\n",
        v = py_escape(version),
        p = py_escape(project)
    )
}

/// Deterministic pseudo-random bytes (splitmix64).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut state = seed;
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------------------------
// CRC-32 (IEEE), zip, tar and gzip writers.

fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    table
}

/// CRC-32 as used by zip and gzip.
pub fn crc32(data: &[u8]) -> u32 {
    let table = crc32_table();
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

/// A zip archive of stored (uncompressed) entries, fixed timestamps (1980-01-01 00:00).
pub(crate) fn zip_stored(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    const DOS_TIME: u16 = 0;
    const DOS_DATE: u16 = (1 << 5) | 1; // 1980-01-01
    let total: usize = files.iter().map(|(n, d)| d.len() + 2 * n.len() + 100).sum();
    let mut out = Vec::with_capacity(total + 64);
    let mut central = Vec::new();
    for (name, data) in files {
        let crc = crc32(data);
        let offset = out.len() as u32;
        let size = data.len() as u32;
        // local file header
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0x0800u16.to_le_bytes()); // flags: UTF-8 names
        out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        out.extend_from_slice(&DOS_TIME.to_le_bytes());
        out.extend_from_slice(&DOS_DATE.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra length
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // central directory record
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: unix, 2.0
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&0x0800u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&DOS_TIME.to_le_bytes());
        central.extend_from_slice(&DOS_DATE.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
        central.extend_from_slice(&(0o100644u32 << 16).to_le_bytes()); // external attrs: -rw-r--r--
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn put_octal(field: &mut [u8], value: u64) {
    // width-1 octal digits, zero padded, NUL terminated
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    field[..width].copy_from_slice(&s.as_bytes()[s.len() - width..]);
    field[width] = 0;
}

/// A ustar archive of regular files (mode 0644, mtime 0, owner root).
pub(crate) fn tar_archive(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, data) in files {
        let mut h = [0u8; 512];
        let (prefix, name) = if path.len() <= 100 {
            ("", path.as_str())
        } else {
            // split at a '/' so that name fits in 100 and prefix in 155 bytes
            let idx = path[..path.len().min(156)].rfind('/').unwrap_or(0);
            (&path[..idx], &path[idx + 1..])
        };
        let name_len = name.len().min(100);
        h[..name_len].copy_from_slice(&name.as_bytes()[..name_len]);
        put_octal(&mut h[100..108], 0o644);
        put_octal(&mut h[108..116], 0);
        put_octal(&mut h[116..124], 0);
        put_octal(&mut h[124..136], data.len() as u64);
        put_octal(&mut h[136..148], 0);
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        let plen = prefix.len().min(155);
        h[345..345 + plen].copy_from_slice(&prefix.as_bytes()[..plen]);
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        let chk = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(chk.as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// A gzip member whose deflate stream uses only stored blocks (valid, uncompressed).
pub(crate) fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 65535 * 5 + 32);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut chunks = data.chunks(65535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        out.push(u8::from(last));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// Reads the entries of a zip made of stored entries (as written here): `(name, data)` pairs,
/// taken from the central directory. For tests and for checking what a cache hands out.
pub fn read_stored_zip(zip: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let u16_at = |b: &[u8], i: usize| -> Option<u16> {
        Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
    };
    let u32_at = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
    };
    let eocd = zip.len().checked_sub(22)?;
    if u32_at(zip, eocd)? != 0x0605_4b50 {
        return None;
    }
    let count = u16_at(zip, eocd + 10)? as usize;
    let mut p = u32_at(zip, eocd + 16)? as usize;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if u32_at(zip, p)? != 0x0201_4b50 || u16_at(zip, p + 10)? != 0 {
            return None;
        }
        let crc = u32_at(zip, p + 16)?;
        let size = u32_at(zip, p + 20)? as usize;
        let nlen = u16_at(zip, p + 28)? as usize;
        let elen = u16_at(zip, p + 30)? as usize;
        let clen = u16_at(zip, p + 32)? as usize;
        let off = u32_at(zip, p + 42)? as usize;
        let name = String::from_utf8(zip.get(p + 46..p + 46 + nlen)?.to_vec()).ok()?;
        if u32_at(zip, off)? != 0x0403_4b50 {
            return None;
        }
        let lstart = off + 30 + u16_at(zip, off + 26)? as usize + u16_at(zip, off + 28)? as usize;
        let data = zip.get(lstart..lstart + size)?.to_vec();
        if crc32(&data) != crc {
            return None;
        }
        out.push((name, data));
        p += 46 + nlen + elen + clen;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalize_name("Foo.Bar__baz"), "foo-bar-baz");
        assert_eq!(import_name("My-Pkg.x"), "my_pkg_x");
        assert_eq!(file_name_part("My-Pkg.x"), "my_pkg_x");
    }

    #[test]
    fn crc_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn wheel_structure_and_record() {
        let d = wheel("Demo-Pkg", "1.2.3");
        assert_eq!(d.filename, "demo_pkg-1.2.3-py3-none-any.whl");
        assert_eq!(d.sha256, sha256_hex(&d.bytes));
        let entries = read_stored_zip(&d.bytes).expect("valid zip");
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "demo_pkg/__init__.py",
                "demo_pkg-1.2.3.dist-info/METADATA",
                "demo_pkg-1.2.3.dist-info/WHEEL",
                "demo_pkg-1.2.3.dist-info/top_level.txt",
                "demo_pkg-1.2.3.dist-info/RECORD",
            ]
        );
        let get = |n: &str| {
            entries
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, d)| d.clone())
                .unwrap()
        };
        let init = String::from_utf8(get("demo_pkg/__init__.py")).unwrap();
        assert!(init.contains("VERSION = \"1.2.3\""));
        assert!(init.contains("return \"Demo-Pkg 1.2.3\""));
        let metadata = get("demo_pkg-1.2.3.dist-info/METADATA");
        assert_eq!(d.metadata.as_deref(), Some(&metadata[..]));
        let meta = String::from_utf8(metadata).unwrap();
        assert!(meta.starts_with("Metadata-Version: 2.1\nName: Demo-Pkg\nVersion: 1.2.3\n"));
        // every RECORD line but its own has a matching hash and size
        let record = String::from_utf8(get("demo_pkg-1.2.3.dist-info/RECORD")).unwrap();
        let mut checked = 0;
        for line in record.lines() {
            let parts: Vec<&str> = line.split(',').collect();
            assert_eq!(parts.len(), 3, "{line}");
            if parts[0].ends_with("/RECORD") {
                assert_eq!(&parts[1..], ["", ""]);
                continue;
            }
            let data = get(parts[0]);
            let want =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&data));
            assert_eq!(parts[1], format!("sha256={want}"));
            assert_eq!(parts[2], data.len().to_string());
            checked += 1;
        }
        assert_eq!(checked, 4);
        // deterministic
        assert_eq!(wheel("Demo-Pkg", "1.2.3"), d);
    }

    #[test]
    fn payload_wheel_is_stored_and_deterministic() {
        let d = wheel_with_payload("big", "1.0", 1_000_000, 7);
        assert!(
            d.bytes.len() > 1_000_000 && d.bytes.len() < 1_002_000,
            "{}",
            d.bytes.len()
        );
        let entries = read_stored_zip(&d.bytes).unwrap();
        let data = &entries.iter().find(|(n, _)| n == "big/data.bin").unwrap().1;
        assert_eq!(data.len(), 1_000_000);
        assert_eq!(data, &pseudo_random(1_000_000, 7));
        assert_eq!(
            wheel_with_payload("big", "1.0", 1_000_000, 7).sha256,
            d.sha256
        );
        assert_ne!(
            wheel_with_payload("big", "1.0", 1_000_000, 8).sha256,
            d.sha256
        );
        let record = String::from_utf8(
            entries
                .iter()
                .find(|(n, _)| n.ends_with("RECORD"))
                .unwrap()
                .1
                .clone(),
        )
        .unwrap();
        assert!(record.contains("big/data.bin,sha256="));
    }

    #[test]
    fn sdist_is_gzip_tar() {
        let d = sdist("Demo-Pkg", "0.1");
        assert_eq!(d.filename, "demo_pkg-0.1.tar.gz");
        assert!(d.metadata.is_none());
        let b = &d.bytes;
        assert_eq!(&b[..3], &[0x1f, 0x8b, 8]);
        // undo the stored deflate blocks
        let mut p = 10;
        let mut tar = Vec::new();
        loop {
            let last = b[p] & 1 == 1;
            assert_eq!(b[p] & 6, 0, "stored block");
            let len = u16::from_le_bytes([b[p + 1], b[p + 2]]) as usize;
            tar.extend_from_slice(&b[p + 5..p + 5 + len]);
            p += 5 + len;
            if last {
                break;
            }
        }
        assert_eq!(
            u32::from_le_bytes(b[p..p + 4].try_into().unwrap()),
            crc32(&tar)
        );
        assert_eq!(&tar[257..263], b"ustar\0");
        assert!(tar.starts_with(b"demo_pkg-0.1/PKG-INFO"));
        let text = String::from_utf8_lossy(&tar);
        assert!(text.contains("build-backend = \"setuptools.build_meta\""));
        assert!(text.contains("def hello():"));
        assert_eq!(tar.len() % 512, 0);
    }

    #[test]
    fn builders() {
        let d = wheel("a", "1").with_requires_python(">=3.8").yanked("");
        assert_eq!(d.requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(d.yanked.as_deref(), Some(""));
        assert_eq!(
            d.metadata_sha256(),
            Some(sha256_hex(d.metadata.as_ref().unwrap()))
        );
    }
}
