//! Opening input files: gzip is recognised by its magic bytes and decompressed on the fly, so every reader
//! sees plain bytes; every error names the file.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{EgressError, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Parquet files start (and end) with these four bytes.
pub const PARQUET_MAGIC: [u8; 4] = *b"PAR1";

/// The first bytes of a file, to tell formats apart.
pub fn sniff(path: &Path) -> Result<[u8; 4]> {
    let mut head = [0u8; 4];
    let mut file = File::open(path).map_err(|e| EgressError::read(path, e))?;
    let mut filled = 0;
    while filled < head.len() {
        match file
            .read(&mut head[filled..])
            .map_err(|e| EgressError::read(path, e))?
        {
            0 => break,
            n => filled += n,
        }
    }
    Ok(head)
}

/// A buffered reader over the file's plain content; `on_read` is told how many raw bytes were consumed.
pub fn open_plain(
    path: &Path,
    on_read: impl FnMut(u64) + Send + 'static,
) -> Result<Box<dyn BufRead + Send>> {
    let head = sniff(path)?;
    let file = File::open(path).map_err(|e| EgressError::read(path, e))?;
    let counted = CountingReader {
        inner: file,
        on_read,
    };
    Ok(if head[..2] == GZIP_MAGIC {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            MultiGzDecoder::new(BufReader::with_capacity(256 * 1024, counted)),
        ))
    } else {
        Box::new(BufReader::with_capacity(256 * 1024, counted))
    })
}

/// The whole plain content of a (possibly gzip-compressed) file.
pub fn read_plain(path: &Path) -> Result<Vec<u8>> {
    let mut content = Vec::new();
    open_plain(path, |_| {})?
        .read_to_end(&mut content)
        .map_err(|e| EgressError::read(path, e))?;
    Ok(content)
}

struct CountingReader<R, F> {
    inner: R,
    on_read: F,
}

impl<R: Read, F: FnMut(u64)> Read for CountingReader<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.on_read)(n as u64);
        Ok(n)
    }
}
