//! The shared HTTP/1.1 server plumbing: a custom accept loop (so every connection is tracked and
//! can be closed on `stop()`), a connection wrapper that can end with a TCP RST, and a body type
//! whose pacing, truncation and stalling are under our control.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, Sleep};

/// Returned by a handler to drop the connection without any response (sends a TCP RST).
#[derive(Debug)]
pub(crate) struct ResetConn;

impl fmt::Display for ResetConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection reset by fault injection")
    }
}

impl StdError for ResetConn {}

pub(crate) type HandlerFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, ResetConn>> + Send>>;
pub(crate) type Handler = Arc<dyn Fn(Request<Incoming>) -> HandlerFuture + Send + Sync>;

/// A running accept loop; dropping it (or [`ServerTask::stop`]) ends it.
pub(crate) struct ServerTask {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ServerTask {
    pub(crate) fn spawn(listener: TcpListener, handler: Handler) -> io::Result<ServerTask> {
        let addr = listener.local_addr()?;
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, handler, rx));
        Ok(ServerTask {
            addr,
            shutdown,
            task: Some(task),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening, aborts every connection and waits until all of that is done.
    pub(crate) async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn accept_loop(listener: TcpListener, handler: Handler, mut shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_conn(stream, handler.clone()));
                }
                // e.g. too many open files: back off a little instead of spinning
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

async fn serve_conn(stream: TcpStream, handler: Handler) {
    let kill = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(ConnIo {
        inner: stream,
        kill: kill.clone(),
    });
    let service = hyper::service::service_fn(move |req| {
        let fut = handler(req);
        let kill = kill.clone();
        async move {
            let res = fut.await;
            if res.is_err() {
                kill.store(true, Ordering::SeqCst);
            }
            res
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service)
        .await;
}

/// A TCP stream that closes with RST instead of FIN when its kill flag is set.
struct ConnIo {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.kill.load(Ordering::SeqCst) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What a [`Body`] does once it has sent its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// End normally.
    End,
    /// Yield an error: hyper aborts the connection (the client sees a short body).
    Error,
    /// Never finish (until the connection is dropped).
    Stall,
}

/// A response body sent in chunks, optionally paced, cut short or stalled.
pub(crate) struct Body {
    data: Bytes,
    pos: usize,
    end: usize,
    tail: Tail,
    chunk: usize,
    rate: Option<u64>,
    started: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    counter: Option<Arc<AtomicU64>>,
    flushed: bool,
    flip: Option<usize>,
}

impl Body {
    pub(crate) fn full(data: impl Into<Bytes>) -> Body {
        let data = data.into();
        let end = data.len();
        Body {
            data,
            pos: 0,
            end,
            tail: Tail::End,
            chunk: 256 * 1024,
            rate: None,
            started: None,
            sleep: None,
            counter: None,
            flushed: false,
            flip: None,
        }
    }

    pub(crate) fn empty() -> Body {
        Body::full(Bytes::new())
    }

    /// Sends only `data[..end]`, then does `tail`.
    pub(crate) fn cut(mut self, end: usize, tail: Tail) -> Body {
        if end < self.data.len() {
            self.end = end;
            self.tail = tail;
        }
        self
    }

    /// Paces the body at about `bytes_per_sec`.
    pub(crate) fn rate(mut self, bytes_per_sec: u64) -> Body {
        let bps = bytes_per_sec.max(1);
        self.rate = Some(bps);
        // about 20 chunks a second
        self.chunk = ((bps / 20) as usize).clamp(1, 64 * 1024);
        self
    }

    /// Sends the byte at `offset` with its lowest bit flipped (copies only the chunk holding it).
    pub(crate) fn flip_byte(mut self, offset: usize) -> Body {
        if offset < self.data.len() {
            self.flip = Some(offset);
        }
        self
    }

    /// Adds every byte sent to `counter`.
    pub(crate) fn count_into(mut self, counter: Arc<AtomicU64>) -> Body {
        self.counter = Some(counter);
        self
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        if this.pos >= this.end {
            return match this.tail {
                Tail::End => Poll::Ready(None),
                Tail::Error if !this.flushed => {
                    // let hyper flush what it has buffered before the connection is aborted
                    this.flushed = true;
                    let mut sleep = Box::pin(tokio::time::sleep(Duration::from_millis(200)));
                    let _ = sleep.as_mut().poll(cx);
                    this.sleep = Some(sleep);
                    Poll::Pending
                }
                Tail::Error => {
                    this.tail = Tail::End;
                    Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "truncated by fault injection",
                    ))))
                }
                Tail::Stall => Poll::Pending,
            };
        }
        let n = this.chunk.min(this.end - this.pos);
        let mut frame = this.data.slice(this.pos..this.pos + n);
        if let Some(at) = this.flip.filter(|&at| at >= this.pos && at < this.pos + n) {
            let mut copy = frame.to_vec();
            copy[at - this.pos] ^= 0x01;
            frame = Bytes::from(copy);
        }
        this.pos += n;
        if let Some(c) = &this.counter {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
        if let Some(rate) = this.rate {
            let started = *this.started.get_or_insert_with(Instant::now);
            let due = started + Duration::from_secs_f64(this.pos as f64 / rate as f64);
            this.sleep = Some(Box::pin(tokio::time::sleep_until(due)));
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.end && self.tail == Tail::End && self.sleep.is_none()
    }
}
