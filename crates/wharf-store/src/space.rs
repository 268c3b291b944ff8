//! Disk truth: the free-space floor eviction keeps on the store's volume (`storage.min_free`), and the memory
//! of recent write failures that readiness reports. `max_size` alone cannot keep a volume from filling: the
//! volume may be smaller than `max_size`, shared with other data, or filled by the index and spool files.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The default floor's cap: 5% of a 20 GiB volume is 1 GiB, and no volume needs more headroom than that to
/// spool the next downloads.
pub const DEFAULT_MIN_FREE_CAP: u64 = 1 << 30;
/// The default floor's share of the volume.
pub const DEFAULT_MIN_FREE_PERCENT: u64 = 5;
/// How long a failed write keeps the store "not ready" unless a later write succeeds.
pub const WRITE_FAILURE_MEMORY: Duration = Duration::from_secs(30);

/// How much of the volume eviction keeps free (`storage.min_free`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinFree {
    /// 5% of the volume, at most 1 GiB.
    #[default]
    Default,
    Bytes(u64),
    /// A percentage (0–99) of the volume's size.
    Percent(u8),
}

impl MinFree {
    /// The floor in bytes on a volume of `volume` bytes.
    pub fn floor(self, volume: u64) -> u64 {
        match self {
            MinFree::Default => (volume / 100 * DEFAULT_MIN_FREE_PERCENT).min(DEFAULT_MIN_FREE_CAP),
            MinFree::Bytes(bytes) => bytes,
            MinFree::Percent(p) => volume / 100 * u64::from(p),
        }
    }
}

/// Free and total bytes of a volume, as an unprivileged process may use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub free: u64,
    pub volume: u64,
}

#[cfg(target_os = "linux")]
pub(crate) fn space_of(path: &std::path::Path) -> Option<Space> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(Space {
        free: stat.f_bavail.saturating_mul(stat.f_frsize),
        volume: stat.f_blocks.saturating_mul(stat.f_frsize),
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn space_of(_path: &std::path::Path) -> Option<Space> {
    None
}

/// The last store write that failed, until a later one succeeds or [`WRITE_FAILURE_MEMORY`] passes.
#[derive(Debug, Default)]
pub(crate) struct WriteHealth {
    last_failure: Mutex<Option<(Instant, String)>>,
}

impl WriteHealth {
    pub(crate) fn failed(&self, message: String) {
        *self.lock() = Some((Instant::now(), message));
    }

    pub(crate) fn succeeded(&self) {
        let mut last = self.lock();
        if last.is_some() {
            *last = None;
        }
    }

    /// The failure still worth reporting, if any.
    pub(crate) fn recent_failure(&self) -> Option<String> {
        let last = self.lock();
        match &*last {
            Some((at, message)) if at.elapsed() < WRITE_FAILURE_MEMORY => Some(message.clone()),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, String)>> {
        self.last_failure.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_floor_is_five_percent_capped_at_one_gib() {
        assert_eq!(MinFree::Default.floor(10 << 20), (10 << 20) / 100 * 5);
        assert_eq!(MinFree::Default.floor(100 << 30), 1 << 30);
        assert_eq!(MinFree::Percent(10).floor(1000), 100);
        assert_eq!(MinFree::Bytes(7).floor(1000), 7);
    }

    #[test]
    fn a_write_failure_is_forgotten_after_a_success() {
        let health = WriteHealth::default();
        assert_eq!(health.recent_failure(), None);
        health.failed("disk full".into());
        assert_eq!(health.recent_failure().as_deref(), Some("disk full"));
        health.succeeded();
        assert_eq!(health.recent_failure(), None);
    }
}
