//! Bodies handed to clients: a stored blob, or a download still being written.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use futures_util::{Stream, StreamExt};
use tokio::sync::watch::Receiver;
use wharf_store::Entry;

use crate::flight::FlightState;
use crate::FetchError;
use crate::Outcome;

pub type BodyStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Memory budget for the read buffers of all bodies being sent at once. A chunk lives from its read until
/// the socket has taken all of it, so what is in flight is what sockets could not take yet. Each read takes
/// a [`SHARE`]th of the budget not yet in flight, rounded down to a power of two between [`MIN_CHUNK`] and
/// [`MAX_CHUNK`]: large reads (fewer syscalls per byte) while sockets drain, smaller ones as buffers pile up
/// behind slow sockets. Past the budget a body keeps one chunk in flight instead of [`WINDOW`], so the
/// overshoot is at most one [`MIN_CHUNK`] per body. (Sizing reads by the number of bodies instead, as an
/// earlier version did, gave a burst of 1,000 loopback clients 16 KiB reads while only ~50 KiB were in
/// flight: 1.6x the time to deliver the burst. With this rule it peaks at ~12 MiB in flight.)
const BUFFER_BUDGET: u64 = 8 * 1024 * 1024;
const SHARE: u64 = 16;
const MIN_CHUNK: u64 = 16 * 1024;
const MAX_CHUNK: u64 = 1024 * 1024;
/// Idle read buffers kept for reuse (see [`BufferPool`]).
const IDLE_BUDGET: u64 = BUFFER_BUDGET / 4;
/// Size classes of read buffers: `MIN_CHUNK << i` for `i < CLASSES`.
const CLASSES: usize = (MAX_CHUNK / MIN_CHUNK).trailing_zeros() as usize + 1;

/// Chunks of one body handed to hyper and not yet written to the socket, at most this many (one while the
/// budget is spent): the next chunk is ready when the socket takes the last. hyper keeps taking chunks a body
/// has ready until ~400 KiB are queued per connection; with reads served from the page cache a chunk is
/// always ready, so without this bound every slow client of a burst would hold that much.
const WINDOW: usize = 2;

/// Bytes of read buffers reserved or handed out and not yet written (dropped).
static IN_FLIGHT_BYTES: AtomicU64 = AtomicU64::new(0);

/// A body being sent: limited to [`WINDOW`] chunks in flight, one while the budget is spent.
#[derive(Default)]
struct ActiveBody {
    window: Arc<Window>,
}

#[derive(Default)]
struct Window {
    in_flight: AtomicUsize,
    waker: AtomicWaker,
}

impl ActiveBody {
    /// The next chunk, `[pos, min(end, pos + chunk size))`, once the window has room for it.
    async fn read(&self, file: Arc<File>, pos: u64, end: u64) -> io::Result<Bytes> {
        std::future::poll_fn(|cx| {
            self.window.waker.register(cx.waker());
            let window = if IN_FLIGHT_BYTES.load(Ordering::Relaxed) < BUFFER_BUDGET {
                WINDOW
            } else {
                1
            };
            if self.window.in_flight.load(Ordering::Acquire) < window {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        let reserved = Reserved::for_read(end - pos);
        read_chunk(file, pos, end, reserved, self.window.clone()).await
    }
}

/// Bytes of [`IN_FLIGHT_BYTES`] held for one read buffer, from before the read until the chunk is written;
/// released when dropped (also when a read fails or its body is dropped mid-read).
struct Reserved {
    class: usize,
}

impl Reserved {
    /// Reserves the buffer for a read of at most `want` bytes (see [`BUFFER_BUDGET`]); the reservation is
    /// atomic, so bodies starting together in a burst cannot all size their reads on the same free budget.
    fn for_read(want: u64) -> Reserved {
        let mut in_flight = IN_FLIGHT_BYTES.load(Ordering::Relaxed);
        loop {
            let class = read_class(BUFFER_BUDGET.saturating_sub(in_flight), want);
            let size = MIN_CHUNK << class;
            match IN_FLIGHT_BYTES.compare_exchange_weak(
                in_flight,
                in_flight + size,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Reserved { class },
                Err(now) => in_flight = now,
            }
        }
    }

    fn size(&self) -> u64 {
        MIN_CHUNK << self.class
    }
}

/// The size class of a read of at most `want` bytes while `free` bytes of the budget are not in flight.
fn read_class(free: u64, want: u64) -> usize {
    let chunk = (free / SHARE)
        .min(want.min(MAX_CHUNK).next_power_of_two())
        .clamp(MIN_CHUNK, MAX_CHUNK);
    (chunk / MIN_CHUNK).ilog2() as usize
}

impl Drop for Reserved {
    fn drop(&mut self) {
        IN_FLIGHT_BYTES.fetch_sub(self.size(), Ordering::Relaxed);
    }
}

/// Read buffers, reused. A fresh buffer costs zeroing and a page fault per 4 KiB on every chunk (musl's
/// allocator maps each large allocation anew); a reused one costs only the read into it. Up to
/// [`IDLE_BUDGET`] bytes of idle buffers are kept, by size class: buffers turn over as fast as sockets take
/// them, so a few idle ones cover it, and memory after a burst stays near the in-flight budget.
struct BufferPool {
    classes: [Mutex<Vec<Buffer>>; CLASSES],
    idle_bytes: AtomicU64,
}

static POOL: BufferPool = BufferPool {
    classes: [const { Mutex::new(Vec::new()) }; CLASSES],
    idle_bytes: AtomicU64::new(0),
};

impl BufferPool {
    /// A buffer of exactly `MIN_CHUNK << class` initialised bytes (contents unspecified).
    fn take(&self, class: usize) -> Buffer {
        let reused = self.classes[class]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        match reused {
            Some(buf) => {
                self.idle_bytes
                    .fetch_sub(buf.len() as u64, Ordering::Relaxed);
                buf
            }
            None => Buffer::new((MIN_CHUNK << class) as usize),
        }
    }

    fn give_back(&self, buf: Buffer) {
        let len = buf.len() as u64;
        if self.idle_bytes.fetch_add(len, Ordering::Relaxed) + len > IDLE_BUDGET {
            self.idle_bytes.fetch_sub(len, Ordering::Relaxed);
            return;
        }
        let class = (len / MIN_CHUNK).ilog2() as usize;
        self.classes[class]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buf);
    }
}

const PAGE: usize = 4096;

/// A read buffer whose bytes start on a page boundary, like the page-cache pages the kernel copies into it:
/// the copy (`rep movsb`) runs at a fraction of its speed on some CPUs when source and destination sit at
/// different offsets within a page (AMD EPYC, one client on a cached 256 MiB file: 1.4 GiB/s with buffers 16
/// bytes past a page boundary, 3.2 GiB/s aligned).
struct Buffer {
    mem: Vec<u8>,
    start: usize,
}

impl Buffer {
    fn new(len: usize) -> Buffer {
        let mem = vec![0u8; len + PAGE];
        // `align_offset` may decline (usize::MAX); the buffer then works, unaligned.
        let start = mem.as_ptr().align_offset(PAGE).min(PAGE);
        Buffer { mem, start }
    }

    fn len(&self) -> usize {
        self.mem.len() - PAGE
    }

    fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        &mut self.mem[self.start..self.start + len]
    }
}

/// The first `len` bytes of a pooled buffer, handed to hyper as [`Bytes`]; when the last reference is dropped
/// (after the socket write) the buffer goes back to the pool and the body's window gets room for another.
struct PooledChunk {
    buf: Option<Buffer>,
    len: usize,
    window: Arc<Window>,
    _reserved: Reserved,
}

impl AsRef<[u8]> for PooledChunk {
    fn as_ref(&self) -> &[u8] {
        self.buf
            .as_ref()
            .map_or(&[][..], |b| &b.mem[b.start..b.start + self.len])
    }
}

impl Drop for PooledChunk {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            POOL.give_back(buf);
        }
        self.window.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.window.waker.wake();
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
    /// No body at hand: the answer to a `HEAD` that upstream's own `HEAD` gave, with the length it announced.
    Headers {
        len: Option<u64>,
    },
}

impl Served {
    /// The body length, when known before streaming (always for stored blobs; for downloads when upstream
    /// announced it). A client told this length detects truncation itself.
    pub fn len(&self) -> Option<u64> {
        match &self.source {
            Source::File { len, .. } => Some(*len),
            Source::Growing { len, .. } | Source::Headers { len } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The error of a download that has failed already (its bytes are gone): nothing of it can be served.
    pub fn failed(&self) -> Option<FetchError> {
        match &self.source {
            Source::Growing { rx, .. } => match &*rx.borrow() {
                FlightState::Failed(e) => Some(e.clone()),
                _ => None,
            },
            Source::File { .. } | Source::Headers { .. } => None,
        }
    }

    /// Waits until a download being written has ended (verified or failed) without reading its bytes;
    /// returns at once for anything else.
    pub(crate) async fn finished(self) {
        if let Source::Growing { mut rx, .. } = self.source {
            while matches!(&*rx.borrow_and_update(), FlightState::Body { .. }) {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }

    /// The whole body as a stream. A download that fails ends the stream with an error. At most two chunks
    /// of a body are alive at once (see [`WINDOW`]): the stream yields the next one after the consumer dropped
    /// an earlier one, so a consumer copies chunks out (as [`Self::into_bytes`] does) rather than keeping them.
    pub fn into_stream(self) -> BodyStream {
        self.into_range_stream(0, None)
    }

    /// The bytes `[start, end)` (`end` = `None`: to the end). The caller checked the range against [`Self::len`].
    pub fn into_range_stream(self, start: u64, end: Option<u64>) -> BodyStream {
        self.stream(start, end, false)
    }

    /// Like [`Self::into_range_stream`], for a response: a stored blob polled by a connection that sends from
    /// files (see [`crate::zero_copy`]) comes as mappings its writer sends with `sendfile`.
    pub(crate) fn into_response_stream(self, start: u64, end: Option<u64>) -> BodyStream {
        self.stream(start, end, true)
    }

    fn stream(self, start: u64, end: Option<u64>, response: bool) -> BodyStream {
        match self.source {
            Source::File { file, len } => {
                let end = end.unwrap_or(len).min(len);
                #[cfg(target_os = "linux")]
                if let Some(regions) = response.then(crate::zero_copy::current).flatten() {
                    return mapped_stream(file, start, end, regions);
                }
                let _ = response;
                file_stream(file, start, end)
            }
            Source::Growing { rx, len } => {
                #[cfg(target_os = "linux")]
                if let (Some(total), Some(regions)) =
                    (len, response.then(crate::zero_copy::current).flatten())
                {
                    let end = end.map_or(total, |e| e.min(total));
                    return growing_mapped_stream(rx, start, end, regions);
                }
                let _ = len;
                growing_stream(rx, start, end)
            }
            Source::Headers { .. } => Box::pin(futures_util::stream::empty()),
        }
    }

    /// The whole body in memory, for small documents a format must parse (index pages). Fails when the body
    /// exceeds `limit` bytes or the download fails.
    /// The whole body of a document the format must parse (`url` is where it came from, for messages): over
    /// `limit` is [`FetchError::TooLarge`], a download that failed underway is upstream's failure, a stored
    /// copy that cannot be read is the store's.
    pub async fn into_document(self, limit: u64, url: &str) -> Result<Bytes, crate::FetchError> {
        use crate::FetchError;
        if let Some(len) = self.len().filter(|len| *len > limit) {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
                what: format!("sent a document of {len} bytes"),
                limit,
                why: "documents are read whole into memory",
            });
        }
        let downloading = matches!(self.source, Source::Growing { .. });
        self.into_bytes(limit).await.map_err(|e| {
            if e.to_string().contains("-byte limit") {
                FetchError::TooLarge {
                    url: url.to_string(),
                    what: "sent a larger document".into(),
                    limit,
                    why: "documents are read whole into memory",
                }
            } else if downloading {
                FetchError::Unreachable {
                    url: url.to_string(),
                    reason: format!("the download failed: {e}"),
                }
            } else {
                FetchError::Store(format!("cannot read the stored copy of {url}: {e}"))
            }
        })
    }

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

/// Reads up to one chunk of the reserved size at `pos`, not past `end`. What the page cache holds is
/// read right here; only the rest (a cold blob on a slow disk) goes to the blocking pool, so a hit served
/// from memory costs no thread hand-off per chunk.
async fn read_chunk(
    file: Arc<File>,
    pos: u64,
    end: u64,
    reserved: Reserved,
    window: Arc<Window>,
) -> io::Result<Bytes> {
    let mut buf = POOL.take(reserved.class);
    let len = (end - pos).min(buf.len() as u64) as usize;
    let done = read_cached(&file, buf.bytes_mut(len), pos);
    if done < len {
        buf = tokio::task::spawn_blocking(move || {
            file.read_exact_at(&mut buf.bytes_mut(len)[done..], pos + done as u64)
                .map(|()| buf)
        })
        .await
        .map_err(io::Error::other)??;
    }
    window.in_flight.fetch_add(1, Ordering::AcqRel);
    Ok(Bytes::from_owner(PooledChunk {
        buf: Some(buf),
        len,
        window,
        _reserved: reserved,
    }))
}

/// Set when the kernel or filesystem refuses `RWF_NOWAIT`; every read then goes to the blocking pool.
static NOWAIT_UNSUPPORTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Reads into `buf` from `pos` what can be read without waiting for the disk (`preadv2` with `RWF_NOWAIT`);
/// returns how many bytes it read. Errors are left to the blocking read that follows, which reports them.
#[cfg(target_os = "linux")]
fn read_cached(file: &File, buf: &mut [u8], pos: u64) -> usize {
    use rustix::io::{Errno, ReadWriteFlags};
    if NOWAIT_UNSUPPORTED.load(Ordering::Relaxed) {
        return 0;
    }
    let mut done = 0;
    while done < buf.len() {
        let mut slices = [io::IoSliceMut::new(&mut buf[done..])];
        match rustix::io::preadv2(file, &mut slices, pos + done as u64, ReadWriteFlags::NOWAIT) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => {
                NOWAIT_UNSUPPORTED.store(true, Ordering::Relaxed);
                break;
            }
            Err(_) => break,
        }
    }
    done
}

#[cfg(not(target_os = "linux"))]
fn read_cached(_file: &File, _buf: &mut [u8], _pos: u64) -> usize {
    NOWAIT_UNSUPPORTED.store(true, Ordering::Relaxed);
    0
}

fn file_stream(file: Arc<File>, start: u64, end: u64) -> BodyStream {
    let active = Arc::new(ActiveBody::default());
    Box::pin(futures_util::stream::try_unfold(start, move |pos| {
        let (file, active) = (file.clone(), active.clone());
        async move {
            if pos >= end {
                return Ok(None);
            }
            let chunk = active.read(file, pos, end).await?;
            let next = pos + chunk.len() as u64;
            Ok(Some((chunk, next)))
        }
    }))
}

#[cfg(target_os = "linux")]
/// Largest chunk of a mapped body: hyper takes the next one once the socket has taken most of this one.
const MAPPED_CHUNK: u64 = 8 * 1024 * 1024;

/// A stored blob's `[start, end)` for a connection that sends from files: one mapping of the range, handed out
/// in chunks of [`MAPPED_CHUNK`]; a chunk not wholly in the page cache is read into a buffer as
/// [`file_stream`] does (so a cold blob never makes `sendfile` wait for the disk on a runtime thread), and a
/// range that cannot be mapped is read that way throughout.
#[cfg(target_os = "linux")]
fn mapped_stream(
    file: Arc<File>,
    start: u64,
    end: u64,
    regions: Arc<crate::zero_copy::Regions>,
) -> BodyStream {
    struct State {
        file: Arc<File>,
        pos: u64,
        /// The mapping of `[start, end)`, made at the first poll (a body never polled maps nothing).
        mapped: Option<Bytes>,
        tried: bool,
        scratch: Vec<u8>,
        active: ActiveBody,
        regions: Arc<crate::zero_copy::Regions>,
    }
    let state = State {
        file,
        pos: start,
        mapped: None,
        tried: false,
        scratch: Vec::new(),
        active: ActiveBody::default(),
        regions,
    };
    Box::pin(futures_util::stream::try_unfold(
        state,
        move |mut st| async move {
            if st.pos >= end {
                return Ok(None);
            }
            if !st.tried {
                st.tried = true;
                match crate::zero_copy::Mapped::new(&st.file, start, end, st.regions.clone()) {
                    Ok(mapped) => st.mapped = Some(crate::zero_copy::into_bytes(mapped)),
                    Err(e) => tracing::debug!(error = %e, "cannot map a blob: reading it instead"),
                }
            }
            let to = (st.pos + MAPPED_CHUNK).min(end);
            if let Some(mapped) = &st.mapped {
                let part = mapped.slice((st.pos - start) as usize..(to - start) as usize);
                if crate::zero_copy::resident(&part, &mut st.scratch) {
                    st.pos = to;
                    return Ok(Some((part, st)));
                }
            }
            let chunk = st.active.read(st.file.clone(), st.pos, to).await?;
            st.pos += chunk.len() as u64;
            Ok(Some((chunk, st)))
        },
    ))
}

/// A download still being written, for a connection that sends from files (see [`crate::zero_copy`]): one
/// mapping of `[start, end)` of the temporary file, where `end` is within the length upstream announced, made
/// when the first bytes are there, and handed out as the download publishes progress, in chunks of at most
/// [`MAPPED_CHUNK`]. Only bytes already written (never the withheld last byte before verification) are handed
/// out, and the connection's writer sends them with `sendfile` from the file, so pages of the mapping past what
/// is written are never touched. The temporary file is only appended to, then renamed into the store or
/// unlinked, never truncated, so the mapping stays valid for as long as a chunk lives. Bytes the page cache
/// does not hold, or a range that cannot be mapped, are read as [`growing_stream`] does.
#[cfg(target_os = "linux")]
fn growing_mapped_stream(
    rx: Receiver<FlightState>,
    start: u64,
    end: u64,
    regions: Arc<crate::zero_copy::Regions>,
) -> BodyStream {
    struct State {
        rx: Receiver<FlightState>,
        pos: u64,
        /// The file mapped and its mapping of `[start, end)`.
        mapped: Option<(Arc<File>, Bytes)>,
        tried: bool,
        scratch: Vec<u8>,
        active: ActiveBody,
        regions: Arc<crate::zero_copy::Regions>,
    }
    let state = State {
        rx,
        pos: start,
        mapped: None,
        tried: false,
        scratch: Vec::new(),
        active: ActiveBody::default(),
        regions,
    };
    Box::pin(futures_util::stream::try_unfold(
        state,
        move |mut st| async move {
            loop {
                let state = st.rx.borrow_and_update().clone();
                let (file, available, complete) = match state {
                    FlightState::Body { file, written, .. } => (file, written, false),
                    FlightState::Complete { file, size, .. } => (file, size, true),
                    FlightState::Failed(e) => {
                        // As in `growing_stream`: the response head goes out before the error.
                        if st.pos == start {
                            tokio::task::yield_now().await;
                        }
                        return Err(io::Error::other(e.to_string()));
                    }
                    FlightState::Pending | FlightState::NotModified(_) => {
                        return Err(io::Error::other("download is in an unexpected state"))
                    }
                };
                let limit = end.min(available);
                if st.pos < limit {
                    if !st.tried {
                        st.tried = true;
                        match crate::zero_copy::Mapped::new(&file, start, end, st.regions.clone()) {
                            Ok(mapped) => {
                                st.mapped =
                                    Some((file.clone(), crate::zero_copy::into_bytes(mapped)))
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "cannot map a download: reading it instead")
                            }
                        }
                    }
                    let to = (st.pos + MAPPED_CHUNK).min(limit);
                    if let Some((mapped_file, mapped)) = &st.mapped {
                        if Arc::ptr_eq(mapped_file, &file) {
                            let part =
                                mapped.slice((st.pos - start) as usize..(to - start) as usize);
                            if crate::zero_copy::resident(&part, &mut st.scratch) {
                                st.pos = to;
                                return Ok(Some((part, st)));
                            }
                        }
                    }
                    let chunk = st.active.read(file, st.pos, to).await?;
                    st.pos += chunk.len() as u64;
                    return Ok(Some((chunk, st)));
                }
                if complete || st.pos >= end {
                    return Ok(None);
                }
                if st.rx.changed().await.is_err()
                    && !matches!(&*st.rx.borrow(), FlightState::Complete { .. })
                {
                    return Err(io::Error::other("upstream download was abandoned"));
                }
            }
        },
    ))
}

/// The bytes of a download in progress. A download that fails ends the stream with an error; when that
/// happens before the stream yielded anything, the error comes one poll later. A server writing the stream
/// as a response has then sent the response head it built, so the client sees a response cut short, not a
/// connection closed with no answer (hyper buffers the head and writes it only once the body is pending
/// or has data; a body that fails on its first poll ends the connection with the head unsent).
fn growing_stream(rx: Receiver<FlightState>, start: u64, end: Option<u64>) -> BodyStream {
    let active = ActiveBody::default();
    Box::pin(futures_util::stream::try_unfold(
        (rx, start, active),
        move |(mut rx, pos, active)| async move {
            loop {
                let state = rx.borrow_and_update().clone();
                let (file, available, complete) = match state {
                    FlightState::Body { file, written, .. } => (file, written, false),
                    FlightState::Complete { file, size, .. } => (file, size, true),
                    FlightState::Failed(e) => {
                        if pos == start {
                            tokio::task::yield_now().await;
                        }
                        return Err(io::Error::other(e.to_string()));
                    }
                    FlightState::Pending | FlightState::NotModified(_) => {
                        return Err(io::Error::other("download is in an unexpected state"))
                    }
                };
                let limit = end.map_or(available, |e| e.min(available));
                if pos < limit {
                    let chunk = active.read(file, pos, limit).await?;
                    let next = pos + chunk.len() as u64;
                    return Ok(Some((chunk, (rx, next, active))));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn size_classes_cover_min_to_max() {
        assert_eq!(MIN_CHUNK << (CLASSES - 1), MAX_CHUNK);
        // However much other tests hold, the class stays in range.
        assert!(Reserved::for_read(u64::MAX).class < CLASSES);
        assert!(Reserved::for_read(0).class < CLASSES);
    }

    #[test]
    fn reads_are_sized_by_what_is_left_and_the_free_budget() {
        let size = |free, want| MIN_CHUNK << read_class(free, want);
        // A whole budget free: a sixteenth of it, whatever is left to send beyond that.
        assert_eq!(size(BUFFER_BUDGET, u64::MAX), BUFFER_BUDGET / SHARE);
        assert_eq!(size(4 * SHARE * MAX_CHUNK, u64::MAX), MAX_CHUNK);
        // Small bodies take small buffers however much is free.
        assert_eq!(size(BUFFER_BUDGET, 10), MIN_CHUNK);
        assert_eq!(size(BUFFER_BUDGET, MIN_CHUNK + 1), 2 * MIN_CHUNK);
        // Shrinking as the budget fills, down to the floor when it is spent.
        assert_eq!(size(BUFFER_BUDGET / 4, u64::MAX), BUFFER_BUDGET / 4 / SHARE);
        assert_eq!(size(0, u64::MAX), MIN_CHUNK);
        // A reservation for a small read holds one smallest buffer.
        assert_eq!(Reserved::for_read(10).size(), MIN_CHUNK);
    }

    #[test]
    fn pool_keeps_at_most_the_budget() {
        let pool = BufferPool {
            classes: [const { Mutex::new(Vec::new()) }; CLASSES],
            idle_bytes: AtomicU64::new(0),
        };
        let top = CLASSES - 1;
        let bufs: Vec<_> = (0..20).map(|_| pool.take(top)).collect();
        assert!(bufs.iter().all(|b| b.len() as u64 == MAX_CHUNK));
        let mut first = pool.take(0);
        assert_eq!(
            first.bytes_mut(10).as_ptr() as usize % PAGE,
            0,
            "page-aligned"
        );
        for b in bufs {
            pool.give_back(b);
        }
        assert_eq!(pool.idle_bytes.load(Ordering::Relaxed), IDLE_BUDGET);
        assert_eq!(
            pool.classes[top].lock().unwrap().len() as u64,
            IDLE_BUDGET / MAX_CHUNK
        );
        let again = pool.take(top);
        assert_eq!(again.len() as u64, MAX_CHUNK);
        assert_eq!(
            pool.idle_bytes.load(Ordering::Relaxed),
            IDLE_BUDGET - MAX_CHUNK
        );
    }

    #[tokio::test]
    async fn file_ranges_read_back_exactly_through_reused_buffers() {
        let data: Vec<u8> = (0..3 * MAX_CHUNK + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(&data).unwrap();
        let file = Arc::new(File::open(tmp.path()).unwrap());
        for (start, end) in [
            (0, data.len() as u64),
            (1, 2),
            (MAX_CHUNK - 1, 2 * MAX_CHUNK + 7),
            (5, 5),
        ] {
            // Twice: the second pass reads into buffers the first gave back, holding other bytes.
            for _ in 0..2 {
                let mut got = Vec::new();
                let mut stream = file_stream(file.clone(), start, end);
                while let Some(chunk) = stream.next().await {
                    got.extend_from_slice(&chunk.unwrap());
                }
                assert_eq!(
                    got,
                    &data[start as usize..end as usize],
                    "range {start}..{end}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_body_waits_while_its_window_is_full() {
        use futures_util::FutureExt;
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(&vec![7u8; 3 * MAX_CHUNK as usize]).unwrap();
        let file = Arc::new(File::open(tmp.path()).unwrap());
        let mut stream = file_stream(file, 0, 3 * MAX_CHUNK);
        let held: Vec<Bytes> = vec![
            stream.next().await.unwrap().unwrap(),
            stream.next().await.unwrap().unwrap(),
        ];
        assert_eq!(held.len(), WINDOW);
        let mut next = stream.next();
        assert!(
            (&mut next).now_or_never().is_none(),
            "a third chunk while two are unwritten"
        );
        drop(held);
        let third = tokio::time::timeout(std::time::Duration::from_secs(5), next).await;
        assert!(matches!(third, Ok(Some(Ok(_)))), "written chunks make room");
    }

    #[tokio::test]
    async fn a_download_failed_before_its_first_byte_errs_one_poll_late() {
        use futures_util::FutureExt;
        let failed = FlightState::Failed(FetchError::Abandoned { url: "u".into() });
        let (_tx, rx) = tokio::sync::watch::channel(failed);
        let served = Served {
            outcome: Outcome::Miss,
            entry: Entry {
                digest: None,
                size: 10,
                status: 200,
                content_type: None,
                etag: None,
                last_modified: None,
                fetched_at: 0,
                immutable: true,
                upstream_url: "u".into(),
                headers: Vec::new(),
            },
            upstream_bytes: None,
            source: Source::Growing { rx, len: Some(10) },
        };
        assert!(served.failed().is_some(), "a failed download says so");
        let mut stream = served.into_stream();
        // Pending first: a server writing this body as a response flushes its head before the error.
        assert!(stream.next().now_or_never().is_none());
        assert!(matches!(stream.next().now_or_never(), Some(Some(Err(_)))));
    }

    #[tokio::test]
    async fn a_file_shorter_than_announced_is_an_error() {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(b"short").unwrap();
        let file = Arc::new(File::open(tmp.path()).unwrap());
        let mut stream = file_stream(file, 0, 100);
        assert!(stream.next().await.unwrap().is_err());
    }
}
