//! Bodies handed to clients: a stored blob, or a download still being written.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::watch::Receiver;
use wharf_store::Entry;

use crate::flight::FlightState;
use crate::Outcome;

pub type BodyStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Memory budget for the read buffers of all bodies being sent at once; each body reads chunks of
/// `BUFFER_BUDGET / active bodies`, between [`MIN_CHUNK`] and [`MAX_CHUNK`]: large reads (fewer syscalls) for a
/// few big downloads, small ones when a burst of clients streams at once, so memory stays flat.
const BUFFER_BUDGET: u64 = 16 * 1024 * 1024;
const MIN_CHUNK: u64 = 16 * 1024;
const MAX_CHUNK: u64 = 1024 * 1024;

static ACTIVE_BODIES: AtomicUsize = AtomicUsize::new(0);

/// Counts a body as active for as long as it lives.
struct ActiveBody;

impl ActiveBody {
    fn new() -> ActiveBody {
        ACTIVE_BODIES.fetch_add(1, Ordering::Relaxed);
        ActiveBody
    }

    fn chunk(&self) -> u64 {
        let active = ACTIVE_BODIES.load(Ordering::Relaxed).max(1) as u64;
        (BUFFER_BUDGET / active).clamp(MIN_CHUNK, MAX_CHUNK)
    }
}

impl Drop for ActiveBody {
    fn drop(&mut self) {
        ACTIVE_BODIES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An answer from the engine: where it came from, its entry (status, type, validators, kept headers), and
/// its body.
pub struct Served {
    pub outcome: Outcome,
    pub entry: Entry,
    /// Bytes this request caused to be fetched from upstream (grows while the fetch runs); `None` when the
    /// request fetched nothing itself (hits, coalesced joins).
    pub upstream_bytes: Option<Arc<AtomicU64>>,
    pub(crate) source: Source,
}

pub(crate) enum Source {
    File {
        file: Arc<File>,
        len: u64,
    },
    Growing {
        rx: Receiver<FlightState>,
        len: Option<u64>,
    },
}

impl Served {
    /// The body length, when known before streaming (always for stored blobs; for downloads when upstream
    /// announced it). A client told this length detects truncation itself.
    pub fn len(&self) -> Option<u64> {
        match &self.source {
            Source::File { len, .. } => Some(*len),
            Source::Growing { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The whole body as a stream. A download that fails ends the stream with an error.
    pub fn into_stream(self) -> BodyStream {
        self.into_range_stream(0, None)
    }

    /// The bytes `[start, end)` (`end` = `None`: to the end). The caller checked the range against [`Self::len`].
    pub fn into_range_stream(self, start: u64, end: Option<u64>) -> BodyStream {
        match self.source {
            Source::File { file, len } => file_stream(file, start, end.unwrap_or(len).min(len)),
            Source::Growing { rx, .. } => growing_stream(rx, start, end),
        }
    }

    /// The whole body in memory, for small documents a format must parse (index pages). Fails when the body
    /// exceeds `limit` bytes or the download fails.
    pub async fn into_bytes(self, limit: u64) -> io::Result<Bytes> {
        if let Some(len) = self.len() {
            if len > limit {
                return Err(io::Error::other(format!(
                    "document of {len} bytes exceeds the {limit}-byte limit"
                )));
            }
        }
        let mut out = Vec::with_capacity(self.len().unwrap_or(0) as usize);
        let mut stream = self.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if out.len() as u64 + chunk.len() as u64 > limit {
                return Err(io::Error::other(format!(
                    "document exceeds the {limit}-byte limit"
                )));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }
}

async fn read_chunk(file: Arc<File>, pos: u64, len: u64) -> io::Result<Bytes> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, pos)?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(io::Error::other)?
}

fn file_stream(file: Arc<File>, start: u64, end: u64) -> BodyStream {
    let active = Arc::new(ActiveBody::new());
    Box::pin(futures_util::stream::try_unfold(start, move |pos| {
        let (file, active) = (file.clone(), active.clone());
        async move {
            if pos >= end {
                return Ok(None);
            }
            let n = active.chunk().min(end - pos);
            let chunk = read_chunk(file, pos, n).await?;
            Ok(Some((chunk, pos + n)))
        }
    }))
}

fn growing_stream(rx: Receiver<FlightState>, start: u64, end: Option<u64>) -> BodyStream {
    let active = ActiveBody::new();
    Box::pin(futures_util::stream::try_unfold(
        (rx, start, active),
        move |(mut rx, pos, active)| async move {
            loop {
                let state = rx.borrow_and_update().clone();
                let (file, available, complete) = match state {
                    FlightState::Body { file, written, .. } => (file, written, false),
                    FlightState::Complete { file, size, .. } => (file, size, true),
                    FlightState::Failed(e) => return Err(io::Error::other(e.to_string())),
                    FlightState::Pending | FlightState::NotModified(_) => {
                        return Err(io::Error::other("download is in an unexpected state"))
                    }
                };
                let limit = end.map_or(available, |e| e.min(available));
                if pos < limit {
                    let n = active.chunk().min(limit - pos);
                    let chunk = read_chunk(file, pos, n).await?;
                    return Ok(Some((chunk, (rx, pos + n, active))));
                }
                if complete || end.is_some_and(|e| pos >= e) {
                    return Ok(None);
                }
                if rx.changed().await.is_err()
                    && !matches!(&*rx.borrow(), FlightState::Complete { .. })
                {
                    return Err(io::Error::other("upstream download was abandoned"));
                }
            }
        },
    ))
}
