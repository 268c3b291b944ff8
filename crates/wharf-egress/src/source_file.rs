//! Opening input files: gzip is recognised by its magic bytes and decompressed on the fly, so every reader
//! sees plain bytes; every error names the file. Flow logs are inflated on a thread of their own
//! ([`open_plain_threaded`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc;

use flate2::read::MultiGzDecoder;

use crate::error::{EgressError, Result};

/// The first two bytes of a gzip member.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
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

/// Like [`open_plain`], but gzip is inflated on a thread of its own, a few blocks ahead of the reader, so
/// inflating and parsing use two cores. The thread stops when the reader is dropped.
pub fn open_plain_threaded(
    path: &Path,
    on_read: impl FnMut(u64) + Send + 'static,
) -> Result<Box<dyn BufRead + Send>> {
    let head = sniff(path)?;
    if head[..2] != GZIP_MAGIC {
        return open_plain(path, on_read);
    }
    let file = File::open(path).map_err(|e| EgressError::read(path, e))?;
    let counted = CountingReader {
        inner: file,
        on_read,
    };
    let mut decoder = MultiGzDecoder::new(BufReader::with_capacity(256 * 1024, counted));
    let (full_tx, full_rx) = mpsc::sync_channel::<std::io::Result<Vec<u8>>>(BLOCKS_AHEAD);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::Builder::new()
        .name("wharf-egress-inflate".into())
        .spawn(move || loop {
            let mut block = empty_rx.try_recv().unwrap_or_default();
            block.resize(BLOCK_SIZE, 0);
            let mut filled = 0;
            let result = loop {
                match decoder.read(&mut block[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == block.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            block.truncate(filled);
            let last = filled == 0;
            let message = match result {
                Ok(()) => Ok(block),
                Err(e) => Err(e),
            };
            let failed = message.is_err();
            if full_tx.send(message).is_err() || last || failed {
                return;
            }
        })
        .map_err(|e| EgressError::read(path, e))?;
    Ok(Box::new(BlockReader {
        full: full_rx,
        empty: empty_tx,
        current: Vec::new(),
        position: 0,
        finished: false,
    }))
}

const BLOCK_SIZE: usize = 1 << 20;
const BLOCKS_AHEAD: usize = 4;

/// Plain bytes arriving in blocks from the inflating thread; an empty block marks the end.
struct BlockReader {
    full: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    empty: mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    position: usize,
    finished: bool,
}

impl Read for BlockReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for BlockReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.position == self.current.len() && !self.finished {
            match self.full.recv() {
                Ok(Ok(block)) => {
                    let used = std::mem::replace(&mut self.current, block);
                    // The inflating thread may be gone already; the block is then just freed.
                    let _ = self.empty.send(used);
                    self.position = 0;
                    self.finished = self.current.is_empty();
                }
                Ok(Err(e)) => {
                    self.finished = true;
                    return Err(e);
                }
                Err(_) => {
                    self.finished = true;
                    return Err(std::io::Error::other("the gzip inflating thread stopped"));
                }
            }
        }
        Ok(&self.current[self.position..])
    }

    fn consume(&mut self, amount: usize) {
        self.position = (self.position + amount).min(self.current.len());
    }
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
