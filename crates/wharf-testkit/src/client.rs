//! A minimal raw HTTP/1.1 client over one `TcpStream` (`Connection: close`), for tests that must
//! see exactly what the server sent: a short body, a reset, a stall. No chunked decoding (the
//! testkit never sends chunked bodies); for anything else use a real client.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back.
#[derive(Clone, Debug, Default)]
pub struct RawResponse {
    /// 0 when no status line arrived.
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The bytes after the header block.
    pub body: Vec<u8>,
    /// The read error that ended the exchange, if any (e.g. "connection reset by peer").
    pub error: Option<String>,
    /// True when the read timed out (see [`request_with_timeout`]).
    pub timed_out: bool,
}

impl RawResponse {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Content-Length`, if sent.
    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length")?.trim().parse().ok()
    }

    /// True when a status line arrived and the body is exactly `Content-Length` long.
    pub fn complete(&self) -> bool {
        self.status != 0
            && self.content_length().is_none_or(|n| n == self.body.len())
            && self.error.is_none()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` with the given extra headers.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<RawResponse> {
    request(addr, "GET", path, headers).await
}

/// Sends one request and reads until the server closes (or an error). Errors only when the
/// connection cannot be made or the request cannot be written.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<RawResponse> {
    request_with_timeout(addr, method, path, headers, Duration::from_secs(30)).await
}

/// Like [`request`], giving up reading after `timeout` (then `timed_out` is set and the response
/// holds what arrived so far).
pub async fn request_with_timeout(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> io::Result<RawResponse> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;

    let mut raw = Vec::new();
    let mut out = RawResponse::default();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => {
                out.timed_out = true;
                break;
            }
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => {
                out.error = Some(e.to_string());
                break;
            }
        }
        // HEAD and 304 answers have no body: stop at the end of the headers
        if (method == "HEAD" || raw.starts_with(b"HTTP/1.1 304"))
            && find(&raw, b"\r\n\r\n").is_some()
        {
            break;
        }
    }
    let Some(end) = find(&raw, b"\r\n\r\n") else {
        out.body = raw;
        return Ok(out);
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    out.status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            out.headers
                .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    out.body = raw[end + 4..].to_vec();
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
