//! The listener: accepts client connections and bounds what each may hold.
//!
//! - At most `server.max_connections` are open: the accept loop takes a permit before it accepts, so further
//!   connections wait in the kernel's listen backlog (and, once that is full, the kernel drops new SYNs and
//!   clients retry) instead of costing a file descriptor and a task each.
//! - Each connection is served by hyper (HTTP/1.1, or HTTP/2 with prior knowledge) with the request head capped
//!   at `server.max_header_size`, and watched: with no request in progress it must deliver a request head
//!   within `header_timeout` of its opening or of its next first byte, and is closed after `idle_timeout`
//!   between requests; a response the client stops reading for `body_timeout` ends the connection.
//! - On shutdown the listener closes, idle connections close at once, in-flight requests get
//!   `shutdown_timeout` to finish, and whatever is left is dropped.
//! - An idle HTTP/1.1 keep-alive connection holds only its socket and a little bookkeeping (about 4 KiB):
//!   hyper's connection, with its two 8 KiB buffers, hands the socket back after a quiet moment
//!   ([`HAND_BACK_AFTER`]) and a new one serves the next request.
//! - With `server.sendfile`, stored files go to HTTP/1.1 sockets with `sendfile` (see
//!   `wharf_cache::zero_copy`).
//!
//! Time spent waiting on an upstream is not the client's fault and is never counted against it.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use http::Request;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tower::Service as _;
use wharf_config::ServerConfig;

use crate::metrics::CloseReasonLabel;

/// Concurrent HTTP/2 streams per connection.
const MAX_CONCURRENT_STREAMS: u32 = 100;
/// How long a connection told to close (GOAWAY, or keep-alive off) may take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long an HTTP/1.1 connection stays with its hyper connection after a request, waiting for the next one,
/// before hyper is asked to hand it back (and its buffers go): a client sending request after request keeps
/// one hyper connection, as before; an idle one soon holds only its socket.
const HAND_BACK_AFTER: Duration = Duration::from_millis(200);
/// Pause after an accept error other than a failed handshake (out of file descriptors, say).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The connection metrics the listener keeps.
#[derive(Clone, Default)]
pub struct ConnMetrics {
    pub open: Gauge,
    pub closed_by_server: Family<CloseReasonLabel, Counter>,
    /// Body bytes sent with `sendfile` (see `wharf_cache::zero_copy`).
    pub sendfile_bytes: Counter,
}

/// Why the server closed a connection: a closed set, so a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Close {
    HeaderTimeout,
    IdleTimeout,
    WriteTimeout,
    Shutdown,
}

impl Close {
    fn as_str(self) -> &'static str {
        match self {
            Close::HeaderTimeout => "header_timeout",
            Close::IdleTimeout => "idle_timeout",
            Close::WriteTimeout => "body_timeout",
            Close::Shutdown => "shutdown",
        }
    }
}

/// File descriptors kept free for the store, upstream connections and the runtime.
const RESERVED_FDS: u64 = 256;

/// `configured`, lowered when the open-file limit (first raised to its hard maximum, as the Go runtime does)
/// could not hold that many connections besides [`RESERVED_FDS`]: accept must never take the last descriptor
/// the store needs.
fn connection_cap(configured: u32) -> u32 {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut limit = getrlimit(Resource::Nofile);
        let hard = limit.maximum.unwrap_or(1 << 20).min(1 << 20);
        if limit.current.is_some_and(|soft| soft < hard) {
            limit.current = Some(hard);
            if let Err(e) = setrlimit(Resource::Nofile, limit) {
                tracing::debug!(error = %e, "cannot raise the open-file limit");
            }
        }
        if let Some(soft) = getrlimit(Resource::Nofile).current {
            let room = soft.saturating_sub(RESERVED_FDS).max(16);
            if u64::from(configured) > room {
                let lowered = u32::try_from(room).unwrap_or(configured);
                tracing::warn!(
                    configured,
                    open_file_limit = soft,
                    max_connections = lowered,
                    "server.max_connections is over what the open-file limit allows: lowered"
                );
                return lowered;
            }
        }
    }
    configured
}

/// Accepts connections on `listener` and serves `router` on each until `shutdown` resolves, then drains for
/// at most `limits.shutdown_timeout`. Returns how many connections were still open when it gave up.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &ServerConfig,
    metrics: ConnMetrics,
    shutdown: impl Future<Output = ()>,
) -> usize {
    let max = connection_cap(limits.max_connections.max(1)) as usize;
    let permits = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let builder = Arc::new(builder(limits));
    let http1 = Arc::new(http1_builder(limits));
    let watch = Watch::from(limits);
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if !is_connection_error(&e) {
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
        };
        // Small responses (index pages, metadata) must not wait for delayed ACKs: disable Nagle.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            router: router.clone(),
            builder: builder.clone(),
            http1: http1.clone(),
            watch,
            metrics: metrics.clone(),
            stop: stop_rx.clone(),
        };
        let sendfile = limits.sendfile;
        tokio::spawn(async move {
            #[cfg(target_os = "linux")]
            if sendfile {
                let regions = wharf_cache::zero_copy::Regions::new();
                regions
                    .clone()
                    .scope(connection.run(tcp, peer, Some(regions)))
                    .await;
                drop(permit);
                return;
            }
            let _ = sendfile;
            connection.run(tcp, peer, None).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = max - permits.available_permits();
    if open > 0 {
        tracing::info!(
            connections = open,
            "waiting for in-flight requests (at most {}s)",
            limits.shutdown_timeout.as_secs_f64()
        );
    }
    let all_closed =
        tokio::time::timeout(limits.shutdown_timeout, permits.acquire_many(max as u32)).await;
    match all_closed {
        Ok(_) => 0,
        Err(_) => {
            let left = max - permits.available_permits();
            tracing::warn!(
                connections = left,
                "shutdown_timeout reached: dropping the connections still open"
            );
            left
        }
    }
}

/// Errors of one connection attempt that say nothing about the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn builder(limits: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let head = usize::try_from(limits.max_header_size).unwrap_or(usize::MAX);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header timer would also run between keep-alive requests; the watch below times heads
    // and idle connections separately.
    builder
        .http1()
        .header_read_timeout(None)
        // The read buffer holds the request head: past this size, hyper answers 431 and closes.
        .max_buf_size(head.max(8192));
    builder
        .http2()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX));
    builder
}

/// The HTTP/1.1 side of [`builder`], for connections served one request at a time.
fn http1_builder(limits: &ServerConfig) -> http1::Builder {
    let head = usize::try_from(limits.max_header_size).unwrap_or(usize::MAX);
    let mut builder = http1::Builder::new();
    builder
        .header_read_timeout(None)
        .max_buf_size(head.max(8192));
    builder
}

/// The timeouts a connection is held to.
#[derive(Clone, Copy, Debug)]
struct Watch {
    header: Duration,
    idle: Duration,
    write: Duration,
}

impl From<&ServerConfig> for Watch {
    fn from(limits: &ServerConfig) -> Watch {
        Watch {
            header: limits.header_timeout,
            idle: limits.idle_timeout,
            write: limits.body_timeout,
        }
    }
}

struct Connection {
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    http1: Arc<http1::Builder>,
    watch: Watch,
    metrics: ConnMetrics,
    stop: watch::Receiver<bool>,
}

/// The connection's service: the router, with the client's address, the request's guard on its body, and
/// whether the request lets its connection be handed back between requests ([`reusable`]).
#[derive(Clone)]
struct RouterService {
    router: Router,
    activity: Arc<Activity>,
    peer: SocketAddr,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for RouterService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, mut req: Request<Incoming>) -> ServiceFuture {
        self.activity
            .reusable
            .store(reusable(&req), Ordering::Relaxed);
        let guard = self.activity.request_started();
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let mut router = self.router.clone();
        Box::pin(async move {
            let resp = router.call(req.map(Body::new)).await?;
            Ok::<_, Infallible>(resp.map(|body| {
                Body::new(Guarded {
                    inner: body,
                    _guard: guard,
                })
            }))
        })
    }
}

/// Whether hyper may be asked to end its HTTP/1.1 connection after this request, handing the socket back for
/// the next one: a keep-alive HTTP/1.1 request without a body (a request with a body hyper may not have read
/// to its end, and only hyper knows where the next request starts).
fn reusable<B>(req: &Request<B>) -> bool {
    let headers = req.headers();
    req.version() == http::Version::HTTP_11
        && !headers.contains_key(http::header::TRANSFER_ENCODING)
        && headers
            .get_all(http::header::CONTENT_LENGTH)
            .iter()
            .all(|v| v.as_bytes() == b"0")
        && !headers.get_all(http::header::CONNECTION).iter().any(|v| {
            v.to_str().map_or(true, |v| {
                v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
            })
        })
}

/// What the watch drives: the wait for a request's first byte, or a hyper connection.
trait Stage {
    type Output;
    fn poll_stage(&mut self, cx: &mut Context<'_>) -> Poll<Self::Output>;
    /// No new requests: finish those in progress, then end.
    fn shutdown(&mut self);
}

/// An idle connection: nothing but the socket, until it is readable.
struct Idle<'a>(&'a TcpStream);

impl Stage for Idle<'_> {
    type Output = io::Result<()>;
    fn poll_stage(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_read_ready(cx)
    }
    fn shutdown(&mut self) {}
}

type Http1 = http1::Connection<TokioIo<Watched>, RouterService>;

/// HTTP/1.1 served by hyper until the connection is idle again (then handed back, see [`Connection::run`]).
struct Http1Stage(Box<Http1>);

impl Stage for Http1Stage {
    type Output = hyper::Result<()>;
    fn poll_stage(&mut self, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        self.0.poll_without_shutdown(cx)
    }
    fn shutdown(&mut self) {
        Pin::new(&mut *self.0).graceful_shutdown();
    }
}

type AutoConn<'a> = auto::Connection<'a, TokioIo<Watched>, RouterService, TokioExecutor>;

/// HTTP/2 (or anything that starts like its preface) served by hyper for the connection's whole life.
struct AutoStage<'a>(Pin<Box<AutoConn<'a>>>);

impl Stage for AutoStage<'_> {
    type Output = Result<(), Box<dyn std::error::Error + Send + Sync>>;
    fn poll_stage(&mut self, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
    fn shutdown(&mut self) {
        self.0.as_mut().graceful_shutdown();
    }
}

/// The HTTP/2 connection preface; a connection whose first bytes could begin it goes to the auto builder.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl Connection {
    /// Serves one client connection. While it is idle between requests it holds nothing but the socket and
    /// its small bookkeeping: each HTTP/1.1 request (or run of pipelined ones) gets a hyper connection that
    /// is asked to end once the request is answered, and hands back the socket and any bytes it read ahead;
    /// hyper's read and write buffers (8 KiB each) go with it. HTTP/2 is hyper's for the connection's life.
    async fn run(mut self, tcp: TcpStream, peer: SocketAddr, regions: Option<Arc<Regions>>) {
        self.metrics.open.inc();
        let _open = DecOnDrop(self.metrics.open.clone());
        let activity = Arc::new(Activity::new());
        let mut io = Watched {
            inner: tcp,
            activity: activity.clone(),
            regions,
            sendfile_bytes: self.metrics.sendfile_bytes.clone(),
            replay: Bytes::new(),
        };
        let service = RouterService {
            router: self.router.clone(),
            activity: activity.clone(),
            peer,
        };
        let mut first = true;
        loop {
            if io.replay.is_empty() {
                match self
                    .drive(&activity, peer, &mut Idle(&io.inner), false)
                    .await
                {
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        tracing::debug!(client = %peer, error = %e, "connection ended with an error");
                        return;
                    }
                    None => return,
                }
            }
            let http2 = if std::mem::take(&mut first) {
                match may_be_http2(&io.inner, self.watch.header).await {
                    Some(http2) => http2,
                    None => return,
                }
            } else {
                false
            };
            if http2 {
                let builder = self.builder.clone();
                let conn = builder.serve_connection(TokioIo::new(io), service.clone());
                if let Some(Err(e)) = self
                    .drive(&activity, peer, &mut AutoStage(Box::pin(conn)), false)
                    .await
                {
                    tracing::debug!(client = %peer, error = %e, "connection ended with an error");
                }
                return;
            }
            let conn = self
                .http1
                .serve_connection(TokioIo::new(io), service.clone());
            let mut stage = Http1Stage(Box::new(conn));
            let handed_back = match self.drive(&activity, peer, &mut stage, true).await {
                Some(Ok(())) => activity.handed_back.swap(false, Ordering::Relaxed),
                Some(Err(e)) => {
                    tracing::debug!(client = %peer, error = %e, "connection ended with an error");
                    return;
                }
                None => return,
            };
            let parts = stage.0.into_parts();
            io = parts.io.into_inner();
            if !handed_back {
                // hyper ended the connection itself (the client asked to close, or an HTTP/1.0 client).
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut io.inner).await;
                return;
            }
            // Bytes hyper read past the last request (the start of the next one): kept small, read again
            // first, and the head's clock runs from now.
            io.replay = Bytes::copy_from_slice(&parts.read_buf);
            activity.read(&io.replay);
        }
    }

    /// Drives `stage` under the connection's watch: its output when it ends by itself, `None` when the watch
    /// closed the connection. With `hand_back`, once a reusable request has been answered and no other has
    /// begun for [`HAND_BACK_AFTER`], the stage is asked to end ([`Activity::handed_back`] says it was).
    async fn drive<S: Stage>(
        &mut self,
        activity: &Activity,
        peer: SocketAddr,
        stage: &mut S,
        hand_back: bool,
    ) -> Option<S::Output> {
        let started = activity.started.load(Ordering::Acquire);
        let mut stopping = *self.stop.borrow();
        if stopping {
            stage.shutdown();
        }
        let mut closing: Option<Instant> = None;
        loop {
            let now = Instant::now();
            // When the connection is to be handed back (after a quiet moment), if it may be at all.
            let mut hand_back_at = None;
            if hand_back
                && !stopping
                && !activity.handed_back.load(Ordering::Relaxed)
                && activity.started.load(Ordering::Acquire) > started
                && activity.in_flight.load(Ordering::Acquire) == 0
                && activity.head_since.load(Ordering::Relaxed) == 0
                && activity.reusable.load(Ordering::Relaxed)
            {
                let at = activity.at(activity.idle_since.load(Ordering::Relaxed).max(1))
                    + HAND_BACK_AFTER;
                if now >= at {
                    activity.handed_back.store(true, Ordering::Relaxed);
                    stage.shutdown();
                } else {
                    hand_back_at = Some(at);
                }
            }
            let wake = match closing {
                Some(since) => since + CLOSE_GRACE,
                None => match activity.verdict(now, self.watch, stopping) {
                    Verdict::Open(next) => next,
                    Verdict::Close(reason) => {
                        tracing::debug!(client = %peer, reason = reason.as_str(), "closing connection");
                        self.metrics
                            .closed_by_server
                            .get_or_create(&CloseReasonLabel {
                                reason: reason.as_str(),
                            })
                            .inc();
                        // HTTP/1.1 owes nothing here (no request in progress, or a client that does not
                        // read): drop it. HTTP/2 gets a GOAWAY and a moment to send it.
                        if reason == Close::WriteTimeout || !activity.http2.load(Ordering::Relaxed)
                        {
                            return None;
                        }
                        stage.shutdown();
                        closing = Some(now);
                        now + CLOSE_GRACE
                    }
                },
            };
            let wake = hand_back_at.map_or(wake, |at| at.min(wake));
            tokio::select! {
                out = std::future::poll_fn(|cx| stage.poll_stage(cx)) => return Some(out),
                // A deadline may have come closer (a request began, a write blocked, a request ended): decide
                // again.
                _ = activity.changed.notified() => {}
                _ = tokio::time::sleep_until(wake) => {
                    if closing.is_some_and(|since| Instant::now() >= since + CLOSE_GRACE) {
                        return None;
                    }
                }
                changed = self.stop.changed(), if !stopping => {
                    stopping = changed.is_err() || *self.stop.borrow();
                    if stopping && closing.is_none() {
                        // No new requests; in-flight ones finish (the listener's deadline bounds them).
                        stage.shutdown();
                    }
                }
            }
        }
    }
}

/// Whether the first bytes on `tcp` could be the start of the HTTP/2 preface (one `P` could also begin
/// `POST`: hyper's auto builder tells them apart). `None`: nothing came within `within`, or the client left.
async fn may_be_http2(tcp: &TcpStream, within: Duration) -> Option<bool> {
    let mut head = [0u8; 24];
    match tokio::time::timeout(within, tcp.peek(&mut head)).await {
        Ok(Ok(n)) if n > 0 => Some(H2_PREFACE.starts_with(&head[..n])),
        Ok(Ok(_)) => Some(false),
        _ => None,
    }
}

struct DecOnDrop(Gauge);

impl Drop for DecOnDrop {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What the watch decides at one moment.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Keep the connection; look again at this time.
    Open(Instant),
    Close(Close),
}

/// A connection's progress as its I/O and its requests report it. Times are milliseconds since `origin`,
/// plus one so that 0 means "not set".
struct Activity {
    origin: Instant,
    in_flight: AtomicUsize,
    /// When the current request head began (the connection's opening, or the first byte after a request).
    head_since: AtomicU64,
    /// When the last request in progress ended.
    idle_since: AtomicU64,
    /// When a write first found the socket full, until a write goes through.
    write_blocked_since: AtomicU64,
    /// HTTP/2 sends frames between requests (pings, window updates), so there a byte does not start a head.
    http2: AtomicBool,
    /// Requests started on the connection so far.
    started: AtomicU64,
    /// Whether the last request started may have its connection handed back after it ([`reusable`]).
    reusable: AtomicBool,
    /// Set when the watch asked hyper to end after the requests in progress, to have the socket back.
    handed_back: AtomicBool,
    first_read_done: AtomicBool,
    /// Wakes the connection's watch when a deadline may have moved closer.
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            head_since: AtomicU64::new(1),
            idle_since: AtomicU64::new(1),
            write_blocked_since: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            started: AtomicU64::new(0),
            reusable: AtomicBool::new(false),
            handed_back: AtomicBool::new(false),
            first_read_done: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn stamp(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64 + 1
    }

    fn at(&self, stamp: u64) -> Instant {
        self.origin + Duration::from_millis(stamp - 1)
    }

    fn read(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if !self.first_read_done.swap(true, Ordering::Relaxed) && bytes.starts_with(b"PRI * HTTP/2")
        {
            self.http2.store(true, Ordering::Relaxed);
        }
        if self.in_flight.load(Ordering::Acquire) == 0
            && !self.http2.load(Ordering::Relaxed)
            && self.head_since.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(self.stamp(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    fn wrote(&self, blocked: bool) {
        let since = self.write_blocked_since.load(Ordering::Relaxed);
        if blocked && since == 0 {
            self.write_blocked_since
                .store(self.stamp(), Ordering::Relaxed);
            self.changed.notify_one();
        } else if !blocked && since != 0 {
            self.write_blocked_since.store(0, Ordering::Relaxed);
        }
    }

    fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Relaxed);
        self.changed.notify_one();
        RequestGuard(self.clone())
    }

    fn verdict(&self, now: Instant, watch: Watch, stopping: bool) -> Verdict {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            let blocked = self.write_blocked_since.load(Ordering::Relaxed);
            if blocked == 0 {
                return Verdict::Open(now + watch.write);
            }
            let deadline = self.at(blocked) + watch.write;
            return if now >= deadline {
                Verdict::Close(Close::WriteTimeout)
            } else {
                Verdict::Open(deadline)
            };
        }
        if stopping {
            return Verdict::Close(Close::Shutdown);
        }
        let head = self.head_since.load(Ordering::Relaxed);
        let (deadline, reason) = if head != 0 {
            (self.at(head) + watch.header, Close::HeaderTimeout)
        } else {
            let idle = self.idle_since.load(Ordering::Relaxed).max(1);
            (self.at(idle) + watch.idle, Close::IdleTimeout)
        };
        if now >= deadline {
            Verdict::Close(reason)
        } else {
            Verdict::Open(deadline)
        }
    }
}

/// One request in progress on a connection, until its response body is finished or dropped.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .idle_since
            .store(activity.stamp(), Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
        // The connection may be handed back now.
        activity.changed.notify_one();
    }
}

/// A response body that holds its request's guard.
struct Guarded {
    inner: Body,
    _guard: RequestGuard,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, reporting reads and blocked writes to the connection's [`Activity`]. With `regions`
/// (`server.sendfile`), slices of response bodies that are mappings of stored files are sent from the file
/// with `sendfile` rather than copied (see `wharf_cache::zero_copy`).
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    regions: Option<Arc<Regions>>,
    sendfile_bytes: Counter,
    /// Bytes a hyper connection read and did not use (the start of a pipelined request): read again first.
    replay: Bytes,
}

#[cfg(target_os = "linux")]
type Regions = wharf_cache::zero_copy::Regions;
/// Nothing is sent from files where `sendfile` is not used.
#[cfg(not(target_os = "linux"))]
enum Regions {}

impl Watched {
    /// The first slice of `bufs` that is a mapped file's, with its index.
    #[cfg(target_os = "linux")]
    fn file_slice(
        &self,
        bufs: &[io::IoSlice<'_>],
    ) -> Option<(usize, wharf_cache::zero_copy::FileSlice)> {
        self.regions.as_ref()?.find(bufs)
    }

    /// Sends `slice` from its file as soon as the socket takes anything: how much it took.
    #[cfg(target_os = "linux")]
    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        slice: &wharf_cache::zero_copy::FileSlice,
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.inner.poll_write_ready(cx) {
                Poll::Pending => {
                    self.activity.wrote(true);
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let sent = self.inner.try_io(tokio::io::Interest::WRITABLE, || {
                wharf_cache::zero_copy::send(&self.inner, slice)
            });
            match sent {
                Ok(n) => {
                    self.activity.wrote(false);
                    self.sendfile_bytes.inc_by(n as u64);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.replay.is_empty() {
            // Counted as activity when first read.
            let n = self.replay.len().min(buf.remaining());
            buf.put_slice(&self.replay.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.activity.read(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        #[cfg(target_os = "linux")]
        if let Some((_, slice)) = self.file_slice(&[io::IoSlice::new(buf)]) {
            return self.poll_send_file(cx, &slice);
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.wrote(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // The slices before a mapped file's go out as usual; that one (once first) from its file.
        #[cfg(target_os = "linux")]
        match self.file_slice(bufs) {
            Some((0, slice)) => return self.poll_send_file(cx, &slice),
            Some((first, _)) => bufs = &bufs[..first],
            None => {}
        }
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WATCH: Watch = Watch {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        write: Duration::from_secs(30),
    };

    fn later(activity: &Activity, secs: u64) -> Instant {
        activity.origin + Duration::from_secs(secs)
    }

    #[test]
    fn only_bodiless_keep_alive_http11_requests_hand_their_connection_back() {
        let req = |version, headers: &[(&str, &str)]| {
            let mut b = Request::builder().version(version).uri("/x");
            for (n, v) in headers {
                b = b.header(*n, *v);
            }
            b.body(()).unwrap()
        };
        use http::Version;
        assert!(reusable(&req(Version::HTTP_11, &[])));
        assert!(reusable(&req(Version::HTTP_11, &[("content-length", "0")])));
        assert!(reusable(&req(
            Version::HTTP_11,
            &[("connection", "keep-alive")]
        )));
        assert!(!reusable(&req(
            Version::HTTP_10,
            &[("connection", "keep-alive")]
        )));
        assert!(!reusable(&req(
            Version::HTTP_11,
            &[("content-length", "5")]
        )));
        assert!(!reusable(&req(
            Version::HTTP_11,
            &[("transfer-encoding", "chunked")]
        )));
        assert!(!reusable(&req(
            Version::HTTP_11,
            &[("connection", "Keep-Alive, Close")]
        )));
        assert!(!reusable(&req(
            Version::HTTP_11,
            &[("content-length", "0"), ("content-length", "7")]
        )));
    }

    #[tokio::test]
    async fn a_new_connection_must_send_a_head_within_the_header_timeout() {
        let activity = Arc::new(Activity::new());
        assert_eq!(
            activity.verdict(later(&activity, 9), WATCH, false),
            Verdict::Open(later(&activity, 10))
        );
        assert_eq!(
            activity.verdict(later(&activity, 10), WATCH, false),
            Verdict::Close(Close::HeaderTimeout)
        );
        // Half a request line changes nothing.
        activity.read(b"GET /pypi/sim");
        assert_eq!(
            activity.verdict(later(&activity, 11), WATCH, false),
            Verdict::Close(Close::HeaderTimeout)
        );
    }

    #[tokio::test]
    async fn requests_in_progress_are_never_timed_and_idle_follows_them() {
        let activity = Arc::new(Activity::new());
        let guard = activity.request_started();
        // Waiting an hour on an upstream is not the client's doing.
        assert!(matches!(
            activity.verdict(later(&activity, 3600), WATCH, false),
            Verdict::Open(_)
        ));
        drop(guard);
        let idle_at = activity.at(activity.idle_since.load(Ordering::Relaxed));
        assert_eq!(
            activity.verdict(idle_at + Duration::from_secs(59), WATCH, false),
            Verdict::Open(idle_at + WATCH.idle)
        );
        assert_eq!(
            activity.verdict(idle_at + WATCH.idle, WATCH, false),
            Verdict::Close(Close::IdleTimeout)
        );
        // The first byte of the next request starts its head's clock.
        activity.read(b"G");
        assert!(matches!(
            activity.verdict(Instant::now() + Duration::from_secs(11), WATCH, false),
            Verdict::Close(Close::HeaderTimeout)
        ));
    }

    #[tokio::test]
    async fn http2_frames_between_requests_do_not_start_a_head() {
        let activity = Arc::new(Activity::new());
        activity.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        drop(activity.request_started());
        activity.read(b"ping frame");
        assert_eq!(activity.head_since.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_closed_after_the_body_timeout() {
        let activity = Arc::new(Activity::new());
        let _guard = activity.request_started();
        activity.wrote(true);
        let blocked_at = activity.at(activity.write_blocked_since.load(Ordering::Relaxed));
        assert_eq!(
            activity.verdict(blocked_at + WATCH.write, WATCH, false),
            Verdict::Close(Close::WriteTimeout)
        );
        activity.wrote(false);
        assert!(matches!(
            activity.verdict(blocked_at + WATCH.write, WATCH, false),
            Verdict::Open(_)
        ));
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections_and_waits_for_requests() {
        let activity = Arc::new(Activity::new());
        assert_eq!(
            activity.verdict(Instant::now(), WATCH, true),
            Verdict::Close(Close::Shutdown)
        );
        let _guard = activity.request_started();
        assert!(matches!(
            activity.verdict(Instant::now(), WATCH, true),
            Verdict::Open(_)
        ));
    }
}
