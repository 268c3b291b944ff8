//! Stored blobs sent to plain HTTP/1.1 sockets with `sendfile(2)`: the page cache goes to the socket without
//! passing through a user-space buffer (one copy fewer per byte, and no read buffers held per client).
//!
//! hyper only writes bytes it was given, so the body still hands it [`Bytes`]: a read-only `mmap` of the blob
//! range, which costs nothing until someone reads it. The connection (in `wharf-server`) registers a
//! [`Regions`] for its task; while a response body is polled in that task, [`current`] finds it and the file
//! body registers each mapping there. When hyper then writes a slice that lies inside a registered mapping,
//! the connection's writer sends those bytes from the file with `sendfile` at the same offset instead of
//! copying them out of the mapping: byte for byte what the slice holds, at the same place in the stream, so
//! framing, `Content-Length`, the access log and metrics (which count the chunks) are exactly those of the
//! copying path. Anything else that reads such a chunk (HTTP/2, a layer that looks at bytes) reads the mapping
//! and gets the same bytes, only without the saving.
//!
//! Blobs are immutable once committed (written to `tmp/`, synced, renamed) and eviction unlinks rather than
//! truncates, so a mapping of a blob can never lose pages under a reader. A chunk whose pages are not all in the
//! page cache ([`resident`]) is read the usual way instead (on the blocking pool when it must wait for
//! the disk), so a `sendfile` never blocks a runtime thread on a cold blob.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

tokio::task_local! {
    static CONNECTION: Arc<Regions>;
}

/// The mappings of one connection's response bodies that its writer may send from their files.
#[derive(Default)]
pub struct Regions {
    regions: Mutex<Vec<Region>>,
}

struct Region {
    /// Address of the first mapped byte of the data (not of the page it starts in).
    start: usize,
    len: usize,
    file: Arc<File>,
    /// File offset of `start`.
    offset: u64,
}

/// Where a slice that hyper writes comes from: `len` bytes of `file` at `offset`.
pub struct FileSlice {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: usize,
}

impl Regions {
    pub fn new() -> Arc<Regions> {
        Arc::new(Regions::default())
    }

    /// Runs `fut` (a connection) with these regions as the ones its response bodies register in.
    pub async fn scope<F: std::future::Future>(self: Arc<Self>, fut: F) -> F::Output {
        CONNECTION.scope(self, fut).await
    }

    /// The first of `bufs` that lies wholly inside a registered mapping, with its index.
    pub fn find(&self, bufs: &[io::IoSlice<'_>]) -> Option<(usize, FileSlice)> {
        let regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        if regions.is_empty() {
            return None;
        }
        bufs.iter().enumerate().find_map(|(i, buf)| {
            let addr = buf.as_ptr() as usize;
            regions
                .iter()
                .find(|r| !buf.is_empty() && addr >= r.start && addr + buf.len() <= r.start + r.len)
                .map(|r| {
                    (
                        i,
                        FileSlice {
                            file: r.file.clone(),
                            offset: r.offset + (addr - r.start) as u64,
                            len: buf.len(),
                        },
                    )
                })
        })
    }

    fn add(&self, region: Region) {
        self.regions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(region);
    }

    fn remove(&self, start: usize) {
        let mut regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = regions.iter().position(|r| r.start == start) {
            regions.swap_remove(i);
        }
    }
}

/// The regions of the connection whose task is running, when it sends from files.
pub(crate) fn current() -> Option<Arc<Regions>> {
    CONNECTION.try_with(Arc::clone).ok()
}

/// Sends `slice` (at most what the socket takes now) from its file to `socket`: the bytes sent, or
/// `WouldBlock` when the socket is full. A file shorter than the slice is an error (blobs never shrink).
pub fn send(socket: &impl AsFd, slice: &FileSlice) -> io::Result<usize> {
    let mut offset = i64::try_from(slice.offset).map_err(io::Error::other)?;
    let len = slice.len.min(0x7fff_f000);
    // SAFETY: both descriptors are open for the call (borrowed), `offset` is a valid pointer to an off_t.
    let sent = unsafe {
        libc::sendfile(
            socket.as_fd().as_raw_fd(),
            slice.file.as_raw_fd(),
            &mut offset,
            len,
        )
    };
    match sent {
        n if n > 0 => Ok(n as usize),
        0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the stored blob is shorter than its entry",
        )),
        _ => Err(io::Error::last_os_error()),
    }
}

const PAGE: usize = 4096;

/// A read-only shared mapping of `[start, end)` of a blob, registered with a connection's [`Regions`] for as
/// long as it lives.
pub(crate) struct Mapped {
    /// The mapping itself, from the page `start` lies in.
    base: *mut libc::c_void,
    map_len: usize,
    /// Where the data begins within the mapping.
    skip: usize,
    len: usize,
    regions: Arc<Regions>,
}

// SAFETY: the mapping is read-only and owned by this value (unmapped once, on drop); reading it from any
// thread is as safe as reading a `&[u8]`.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps `[start, end)` of `file` (`start < end`, within the file) and registers it in `regions`.
    pub(crate) fn new(
        file: &Arc<File>,
        start: u64,
        end: u64,
        regions: Arc<Regions>,
    ) -> io::Result<Mapped> {
        let aligned = start - start % PAGE as u64;
        let skip = (start - aligned) as usize;
        let len = usize::try_from(end - start).map_err(io::Error::other)?;
        let map_len = skip + len;
        let offset = libc::off_t::try_from(aligned).map_err(io::Error::other)?;
        // SAFETY: a fresh mapping chosen by the kernel (no address given), of an open file, read-only.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mapped = Mapped {
            base,
            map_len,
            skip,
            len,
            regions,
        };
        mapped.regions.add(Region {
            start: mapped.data_start(),
            len,
            file: file.clone(),
            offset: start,
        });
        Ok(mapped)
    }

    fn data_start(&self) -> usize {
        self.base as usize + self.skip
    }
}

/// Whether every page of `data` (bytes of a file mapping) is in the page cache, so `sendfile` will not wait
/// for the disk. Any doubt answers no.
pub(crate) fn resident(data: &[u8], scratch: &mut Vec<u8>) -> bool {
    if data.is_empty() {
        return false;
    }
    let first = data.as_ptr() as usize / PAGE * PAGE;
    let last = data.as_ptr() as usize + data.len();
    scratch.clear();
    scratch.resize((last - first).div_ceil(PAGE), 0);
    // SAFETY: mincore only writes one byte per page of `[first, last)` into `scratch`, which holds that many;
    // an address range that is not mapped is an error (ENOMEM), not undefined behaviour.
    let ok = unsafe {
        libc::mincore(
            first as *mut libc::c_void,
            last - first,
            scratch.as_mut_ptr(),
        )
    };
    ok == 0 && scratch.iter().all(|page| page & 1 == 1)
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` bytes from `base + skip` are mapped readable for as long as `self` lives, and a
        // committed blob is never written or truncated (see the module comment).
        unsafe { std::slice::from_raw_parts(self.data_start() as *const u8, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // Unregistered before it is unmapped, so no writer can take a later mapping at this address for it.
        self.regions.remove(self.data_start());
        // SAFETY: the mapping made in `new`, unmapped once; no `Bytes` of it is left (this is its owner).
        unsafe {
            libc::munmap(self.base, self.map_len);
        }
    }
}

/// The mapping as [`Bytes`] (slices of it share it).
pub(crate) fn into_bytes(mapped: Mapped) -> Bytes {
    Bytes::from_owner(mapped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn mapped_ranges_read_the_file_and_are_found_by_address() {
        let data: Vec<u8> = (0..3 * PAGE as u32 + 123)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(&data).unwrap();
        let file = Arc::new(File::open(tmp.path()).unwrap());
        let regions = Regions::new();
        let (start, end) = (PAGE as u64 + 7, 3 * PAGE as u64 + 100);
        let mapped = Mapped::new(&file, start, end, regions.clone()).unwrap();
        let bytes = into_bytes(mapped);
        // Just written: in the page cache.
        let mut scratch = Vec::new();
        assert!(resident(&bytes, &mut scratch));
        assert!(resident(&bytes[5..PAGE + 9], &mut scratch));
        assert_eq!(&bytes[..], &data[start as usize..end as usize]);
        let part = bytes.slice(10..20);
        let other = [1u8; 4];
        let bufs = [io::IoSlice::new(&other), io::IoSlice::new(&part)];
        let (i, found) = regions.find(&bufs).unwrap();
        assert_eq!((i, found.offset, found.len), (1, start + 10, 10));
        // A slice running past the mapping is not the mapping's.
        assert!(regions.find(&[io::IoSlice::new(&other)]).is_none());
        drop((bytes, part));
        assert!(regions.regions.lock().unwrap().is_empty(), "unregistered");
    }

    #[test]
    fn send_copies_the_slice_from_the_file() {
        use std::io::Read;
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(&data).unwrap();
        let file = Arc::new(File::open(tmp.path()).unwrap());
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let slice = FileSlice {
            file,
            offset: 1000,
            len: 5000,
        };
        let mut sent = 0;
        while sent < slice.len {
            sent += send(
                &a,
                &FileSlice {
                    offset: slice.offset + sent as u64,
                    len: slice.len - sent,
                    file: slice.file.clone(),
                },
            )
            .unwrap();
        }
        a.flush().unwrap();
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        assert_eq!(got, &data[1000..6000]);
    }
}
