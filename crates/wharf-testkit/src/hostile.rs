//! [`HostileUpstream`]: a local upstream that misbehaves on purpose, for the bounded-storage tests: bodies
//! that never end, lengths it announces but never sends, and slow 404s for every name it does not know (so
//! that concurrent requests overlap and can be counted). It counts requests by method, and the most requests
//! it was ever answering at once.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::server::{Body, Handler, ResetConn, ServerTask, Tail};

/// Bytes of the longest body an [`HostileUpstream::put_endless`] path sends (zeros, no `Content-Length`):
/// far more than any test store may keep, and free to send (the zero pages of `.bss`).
pub const ENDLESS_BYTES: usize = 1 << 28;
static ZEROS: [u8; ENDLESS_BYTES] = [0; ENDLESS_BYTES];

#[derive(Clone)]
enum Answer {
    /// 200 with these bytes and content type.
    Bytes(Bytes, String),
    /// 200 without `Content-Length`, zeros until [`ENDLESS_BYTES`].
    Endless,
    /// 200 announcing this `Content-Length`, then a few bytes and a stall.
    Announce(u64),
}

#[derive(Default)]
struct State {
    answers: Mutex<HashMap<String, Answer>>,
    gets: AtomicU64,
    heads: AtomicU64,
    active: AtomicU64,
    max_active: AtomicU64,
    sent: Arc<AtomicU64>,
    per_path: Mutex<HashMap<(Method, String), u64>>,
    miss_delay_ms: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running hostile upstream on 127.0.0.1. See the module docs.
pub struct HostileUpstream {
    state: Arc<State>,
    server: ServerTask,
}

impl HostileUpstream {
    /// Starts on a free loopback port; unknown paths answer 404 after 100 ms.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start() -> HostileUpstream {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind 127.0.0.1:0");
        let state = Arc::new(State::default());
        state.miss_delay_ms.store(100, Ordering::SeqCst);
        let st = state.clone();
        let handler: Handler = Arc::new(move |req| Box::pin(handle(st.clone(), req)));
        let server = ServerTask::spawn(listener, handler).expect("spawn hostile server");
        HostileUpstream { state, server }
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://{}/", self.server.addr())
    }

    /// Serves `bytes` at `path` (exact, case-sensitive, as the request line spells it).
    pub fn put(&self, path: &str, bytes: impl Into<Bytes>, content_type: &str) {
        lock(&self.state.answers).insert(
            path.to_string(),
            Answer::Bytes(bytes.into(), content_type.to_string()),
        );
    }

    /// `path` answers 200 with a body that does not end (no `Content-Length`; see [`ENDLESS_BYTES`]).
    pub fn put_endless(&self, path: &str) {
        lock(&self.state.answers).insert(path.to_string(), Answer::Endless);
    }

    /// `path` answers 200 announcing `len` bytes, sends a few and stalls.
    pub fn put_announcing(&self, path: &str, len: u64) {
        lock(&self.state.answers).insert(path.to_string(), Answer::Announce(len));
    }

    /// How long an unknown path takes to answer 404.
    pub fn set_miss_delay(&self, delay: Duration) {
        self.state
            .miss_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn gets(&self) -> u64 {
        self.state.gets.load(Ordering::SeqCst)
    }

    pub fn heads(&self) -> u64 {
        self.state.heads.load(Ordering::SeqCst)
    }

    /// All requests, any method.
    pub fn requests(&self) -> u64 {
        self.gets() + self.heads()
    }

    /// Requests of `path` with `method`.
    pub fn requests_for(&self, method: &Method, path: &str) -> u64 {
        lock(&self.state.per_path)
            .get(&(method.clone(), path.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// The most requests that were being answered at the same time (until their headers were sent).
    pub fn max_concurrent(&self) -> u64 {
        self.state.max_active.load(Ordering::SeqCst)
    }

    /// Body bytes sent so far, over all responses.
    pub fn bytes_sent(&self) -> u64 {
        self.state.sent.load(Ordering::SeqCst)
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// Counts a request as active from its arrival until its response headers are handed over.
struct Active<'a>(&'a State);

impl<'a> Active<'a> {
    fn enter(state: &'a State) -> Active<'a> {
        let now = state.active.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_active.fetch_max(now, Ordering::SeqCst);
        Active(state)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, ResetConn> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match method {
        Method::HEAD => state.heads.fetch_add(1, Ordering::SeqCst),
        _ => state.gets.fetch_add(1, Ordering::SeqCst),
    };
    *lock(&state.per_path)
        .entry((method.clone(), path.clone()))
        .or_insert(0) += 1;
    let _active = Active::enter(&state);
    let answer = lock(&state.answers).get(&path).cloned();
    let head = method == Method::HEAD;
    let mut resp = match answer {
        None => {
            let delay = state.miss_delay_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let mut r = Response::new(Body::full(Bytes::from_static(b"not found\n")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
        Some(Answer::Bytes(bytes, content_type)) => {
            let len = bytes.len();
            let body = if head {
                Body::empty()
            } else {
                Body::full(bytes).count_into(state.sent.clone())
            };
            let mut r = Response::new(body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            );
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            r
        }
        Some(Answer::Endless) => {
            let body = if head {
                Body::empty()
            } else {
                Body::full(Bytes::from_static(&ZEROS)).count_into(state.sent.clone())
            };
            Response::new(body)
        }
        Some(Answer::Announce(len)) => {
            let body = if head {
                Body::empty()
            } else {
                Body::full(Bytes::from_static(&ZEROS[..4096]))
                    .cut(1024, Tail::Stall)
                    .count_into(state.sent.clone())
            };
            let mut r = Response::new(body);
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            r
        }
    };
    if !resp.headers().contains_key(header::CONTENT_TYPE) {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    Ok(resp)
}
