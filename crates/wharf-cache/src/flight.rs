//! One upstream fetch in progress, shared by every request for the same key.
//!
//! The fetch task owns the only [`Sender`]; waiters hold receivers. If the task ends without publishing a
//! result (panic, runtime shutdown), the sender is dropped and every waiter sees the channel close, which they
//! report as [`FetchError::Abandoned`]. The task's [`FlightGuard`] removes the key from the in-flight map
//! however the task ends, so the next request starts a fresh fetch.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::watch::{self, Receiver, Sender};
use wharf_store::Entry;

use crate::FetchError;

#[derive(Clone)]
pub(crate) enum FlightState {
    /// Waiting for upstream's response headers.
    Pending,
    /// A 200 is streaming into `file`; `written` bytes are on disk and readable.
    Body {
        head: Arc<Entry>,
        file: Arc<File>,
        written: u64,
    },
    /// The whole body is on disk and verified (and committed to the store, unless storing failed).
    Complete {
        head: Arc<Entry>,
        file: Arc<File>,
        size: u64,
    },
    /// Upstream confirmed the stored entry (304); serve its blob.
    NotModified(Arc<Entry>),
    Failed(FetchError),
}

/// What the in-flight map keeps per key: enough to join the flight.
#[derive(Clone)]
pub(crate) struct FlightHandle {
    pub rx: Receiver<FlightState>,
    pub upstream_bytes: Arc<AtomicU64>,
}

pub(crate) type FlightMap = Arc<Mutex<HashMap<String, FlightHandle>>>;

pub(crate) fn new_flight() -> (Sender<FlightState>, FlightHandle) {
    let (tx, rx) = watch::channel(FlightState::Pending);
    (
        tx,
        FlightHandle {
            rx,
            upstream_bytes: Arc::new(AtomicU64::new(0)),
        },
    )
}

/// Removes the flight's key from the map when the fetch task ends, however it ends.
pub(crate) struct FlightGuard {
    pub map: FlightMap,
    pub key: String,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&self.key);
    }
}

/// Waits until the flight has left [`FlightState::Pending`].
pub(crate) async fn wait_started(rx: &mut Receiver<FlightState>, url: &str) -> FlightState {
    loop {
        let state = rx.borrow_and_update().clone();
        if !matches!(state, FlightState::Pending) {
            return state;
        }
        if rx.changed().await.is_err() {
            let state = rx.borrow().clone();
            if matches!(state, FlightState::Pending) {
                return FlightState::Failed(FetchError::Abandoned {
                    url: url.to_string(),
                });
            }
            return state;
        }
    }
}
