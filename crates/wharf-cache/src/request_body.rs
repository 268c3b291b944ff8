//! [`RequestBody`]: a client's request body, not yet read. The server hands it to a repository untouched, so
//! a route that takes no body never reads a byte of it (the connection is closed instead of drained), and a
//! route that takes one chooses how: whole up to its own limit ([`RequestBody::bytes`]) or as a stream
//! ([`RequestBody::into_stream`], for uploads far larger than memory). Both give up when the client stays
//! silent for the server's `body_timeout`.

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{header, HeaderValue, Response, StatusCode};
use http_body::SizeHint;

/// Why a request body could not be had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// Over the route's limit: known from `Content-Length` before reading, or counted while reading.
    #[error("the request body is over this endpoint's limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The client sent nothing for this long in the middle of its body.
    #[error("no request body bytes arrived for {}s", .0.as_secs_f64())]
    Timeout(Duration),
    /// The connection failed or the body was malformed.
    #[error("cannot read the request body: {0}")]
    Read(String),
}

impl BodyError {
    /// 413, 408 or 400.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The plain-text answer; the connection is closed after it, since the rest of the body is unread.
    pub fn response(&self) -> Response<Body> {
        let mut resp = crate::error_response(self.status(), self.to_string());
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }
}

/// A request body that is read only if, and as far as, a route asks for it.
pub struct RequestBody {
    /// Behind a mutex only so that a `&RepoRequest` can be held across an await (`Body` is not `Sync`); it
    /// is never locked, only taken by value.
    body: Option<Mutex<Body>>,
    /// What the body said of its length before any byte was read (`Content-Length`, for hyper's bodies).
    hint: SizeHint,
    /// Longest wait for the next chunk; `None` waits as long as the client does.
    idle_timeout: Option<Duration>,
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody")
            .field("declared_len", &self.declared_len())
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for RequestBody {
    fn default() -> Self {
        RequestBody::empty()
    }
}

impl RequestBody {
    /// No body.
    pub fn empty() -> RequestBody {
        RequestBody {
            body: None,
            hint: SizeHint::with_exact(0),
            idle_timeout: None,
        }
    }

    /// A client's body, read with at most `idle_timeout` between chunks.
    pub fn new(body: Body, idle_timeout: Duration) -> RequestBody {
        RequestBody {
            hint: http_body::Body::size_hint(&body),
            body: Some(Mutex::new(body)),
            idle_timeout: Some(idle_timeout),
        }
    }

    /// A body already in memory (for requests built in code).
    pub fn from_bytes(bytes: impl Into<Bytes>) -> RequestBody {
        let bytes = bytes.into();
        RequestBody {
            hint: SizeHint::with_exact(bytes.len() as u64),
            body: Some(Mutex::new(Body::from(bytes))),
            idle_timeout: None,
        }
    }

    /// The length the client declared (`Content-Length`), if it did; 0 for no body.
    pub fn declared_len(&self) -> Option<u64> {
        self.hint.exact()
    }

    fn take(self) -> Option<(Body, Option<Duration>)> {
        let body = self.body?;
        Some((
            body.into_inner().unwrap_or_else(|p| p.into_inner()),
            self.idle_timeout,
        ))
    }

    /// True when the body is known to be empty without reading it.
    pub fn is_empty(&self) -> bool {
        self.declared_len() == Some(0)
    }

    /// The whole body, refused with [`BodyError::TooLarge`] before reading when the declared length is over
    /// `limit`, and as soon as more than `limit` bytes arrived otherwise.
    pub async fn bytes(self, limit: usize) -> Result<Bytes, BodyError> {
        if self.hint.lower() > limit as u64 {
            return Err(BodyError::TooLarge { limit });
        }
        // Room for the declared length, never more than the limit: a false Content-Length costs nothing.
        let capacity = self
            .hint
            .exact()
            .map_or(0, |n| n.min(limit as u64) as usize);
        let Some((body, idle_timeout)) = self.take() else {
            return Ok(Bytes::new());
        };
        let mut out = BytesMut::with_capacity(capacity);
        let mut chunks = std::pin::pin!(chunks(body, idle_timeout));
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if out.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// The body as a stream of chunks as they arrive, each wait bounded by the idle timeout. Nothing is
    /// buffered beyond the chunk in hand; the consumer bounds the total.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, BodyError>> + Send + 'static {
        let (body, idle_timeout) = self.take().unwrap_or((Body::empty(), None));
        chunks(body, idle_timeout)
    }
}

fn chunks(
    body: Body,
    idle_timeout: Option<Duration>,
) -> impl Stream<Item = Result<Bytes, BodyError>> + Send + 'static {
    futures_util::stream::unfold(Some(body.into_data_stream()), move |state| async move {
        let mut data = state?;
        let next = match idle_timeout {
            Some(limit) => match tokio::time::timeout(limit, data.next()).await {
                Ok(next) => next,
                Err(_) => return Some((Err(BodyError::Timeout(limit)), None)),
            },
            None => data.next().await,
        };
        match next {
            None => None,
            Some(Ok(chunk)) => Some((Ok(chunk), Some(data))),
            Some(Err(e)) => Some((Err(BodyError::Read(e.to_string())), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// A body that sends `chunks` of `size` bytes, `gap` apart, declaring `declared` as its length.
    fn slow_body(chunks: usize, size: usize, gap: Duration, declared: Option<u64>) -> Body {
        let stream = futures_util::stream::iter(0..chunks).then(move |_| async move {
            tokio::time::sleep(gap).await;
            Ok::<_, Infallible>(Bytes::from(vec![b'x'; size]))
        });
        let body = Body::from_stream(stream);
        match declared {
            None => body,
            Some(n) => Body::new(Declared(body, n)),
        }
    }

    /// Reports an exact size hint, as hyper does for a request with `Content-Length`.
    struct Declared(Body, u64);

    impl http_body::Body for Declared {
        type Data = Bytes;
        type Error = axum::Error;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
            std::pin::Pin::new(&mut self.0).poll_frame(cx)
        }

        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(self.1)
        }
    }

    #[tokio::test]
    async fn reads_a_body_within_the_limit() {
        let body = RequestBody::new(
            slow_body(4, 1000, Duration::ZERO, None),
            Duration::from_secs(5),
        );
        assert_eq!(body.bytes(4000).await.expect("body").len(), 4000);
        assert_eq!(RequestBody::empty().bytes(0).await, Ok(Bytes::new()));
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        // The body would take an hour to arrive: only refusing up front answers at once.
        let body = RequestBody::new(
            slow_body(1, 10, Duration::from_secs(3600), Some(16 << 20)),
            Duration::from_secs(3600),
        );
        assert_eq!(body.declared_len(), Some(16 << 20));
        let refused = tokio::time::timeout(Duration::from_secs(5), body.bytes(1 << 20))
            .await
            .expect("answered without reading");
        assert_eq!(refused, Err(BodyError::TooLarge { limit: 1 << 20 }));
        assert_eq!(
            BodyError::TooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[tokio::test]
    async fn an_undeclared_length_is_counted_while_reading() {
        let body = RequestBody::new(
            slow_body(100, 1000, Duration::ZERO, None),
            Duration::from_secs(5),
        );
        assert_eq!(body.declared_len(), None);
        assert_eq!(
            body.bytes(10_500).await,
            Err(BodyError::TooLarge { limit: 10_500 })
        );
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let body = RequestBody::new(
            slow_body(3, 10, Duration::from_millis(400), None),
            Duration::from_millis(100),
        );
        let error = body.bytes(1000).await.expect_err("timed out");
        assert_eq!(error, BodyError::Timeout(Duration::from_millis(100)));
        assert_eq!(error.status(), StatusCode::REQUEST_TIMEOUT);
        // Slow but steady is fine: each gap is under the timeout.
        let body = RequestBody::new(
            slow_body(3, 10, Duration::from_millis(20), None),
            Duration::from_millis(500),
        );
        assert_eq!(body.bytes(1000).await.expect("body").len(), 30);
    }

    #[tokio::test]
    async fn a_stream_yields_chunks_and_ends_with_a_timeout() {
        let body = RequestBody::new(
            slow_body(2, 10, Duration::from_millis(300), None),
            Duration::from_millis(100),
        );
        let items: Vec<_> = body.into_stream().collect().await;
        assert_eq!(
            items,
            vec![Err(BodyError::Timeout(Duration::from_millis(100)))]
        );
        let body = RequestBody::new(
            slow_body(3, 10, Duration::ZERO, None),
            Duration::from_secs(1),
        );
        let total: usize = body
            .into_stream()
            .map(|c| c.expect("chunk").len())
            .fold(0, |a, b| async move { a + b })
            .await;
        assert_eq!(total, 30);
    }
}
