//! Hostile clients at the connection and request level, against the real binary on loopback: made-up methods,
//! stalled and half-sent requests, large bodies to read-only routes, more connections than allowed, and a
//! SIGTERM while all of that is open. Each test is bounded in count and time and stops by itself.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_testkit::{wheel_with_payload, Project, PypiUpstream};

use crate::support::*;

/// An upstream nothing should ever reach in these tests (the port is closed).
const UNREACHED: &str = "http://127.0.0.1:9/simple/";

/// Open sockets of a process (its listener, client connections, upstream connections).
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Sends `head` on a kept-alive connection and reads one response with a `Content-Length` body.
async fn exchange(stream: &mut TcpStream, head: &str) -> io::Result<(u16, Vec<u8>)> {
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head_text = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head_text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head_text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while raw.len() < end + length {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&buf[..n]);
    }
    Ok((status, raw[end..end + length].to_vec()))
}

/// `GET path` on a new connection, with a bound on the whole exchange.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let answer = tokio::time::timeout(Duration::from_secs(20), async {
        let mut stream = TcpStream::connect(addr).await?;
        exchange(
            &mut stream,
            &format!("GET {path} HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\r\n"),
        )
        .await
    })
    .await
    .unwrap_or_else(|_| panic!("GET {path} timed out"))
    .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (answer.0, String::from_utf8_lossy(&answer.1).into_owned())
}

/// Waits (bounded by `within`) until the server closes `stream`: a read gives EOF or a reset. Returns
/// false when it is still open at the deadline.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or 400 before closing is fine too; keep reading until the close.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_leave_metrics_and_memory_bounded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", UNREACHED, ""),
        "",
    );
    let pid = wharf.pid();
    // Warm up every path once so the baseline includes what any request allocates.
    let (status, _) = get(wharf.addr, "/pypi/simple/").await;
    assert_eq!(status, 502, "the upstream is closed");
    let (_, metrics) = get(wharf.addr, "/metrics").await;
    let rss_before = memory_kib(pid, "VmRSS");
    let metrics_before = metrics.len();

    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..8u32 {
        let addr = wharf.addr;
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let mut refused = 0;
            // Long, as a fuzzer's would be: each distinct value costs its length wherever it is kept.
            let tail = "X".repeat(4000);
            for i in 0..1250u32 {
                let head =
                    format!("L{client}{i:07}{tail} /pypi/simple/ HTTP/1.1\r\nHost: wharf\r\n\r\n");
                let (status, _) = exchange(&mut stream, &head).await.expect("exchange");
                refused += u32::from(status == 405);
            }
            refused
        }));
    }
    let mut refused = 0;
    for client in clients {
        refused += tokio::time::timeout(Duration::from_secs(120), client)
            .await
            .expect("10,000 requests in time")
            .expect("client task");
    }
    eprintln!("10,000 made-up methods in {:?}", started.elapsed());
    assert_eq!(refused, 10_000, "each made-up method is refused with 405");

    // A request target far longer than any log line should carry.
    let long = format!("/pypi/simple/{}/", "a".repeat(20_000));
    let (status, _) = get(wharf.addr, &long).await;
    assert!(status == 404 || status == 400 || status == 502, "{status}");

    let (status, metrics) = get(wharf.addr, "/metrics").await;
    assert_eq!(status, 200);
    let rss_after = memory_kib(pid, "VmRSS");
    eprintln!(
        "/metrics {metrics_before} -> {} bytes; VmRSS {rss_before} -> {rss_after} KiB",
        metrics.len()
    );
    assert!(
        metrics.len() < 256 * 1024,
        "/metrics grew to {} bytes",
        metrics.len()
    );
    let allowed = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
    ];
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("wharf_http_requests"))
    {
        let method = line
            .split("method=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no method label in {line}"));
        assert!(allowed.contains(&method), "label method={method:?}");
    }
    assert!(
        metrics.contains("method=\"other\""),
        "the made-up methods are counted as `other`"
    );
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    let logged = wharf.wait_log(|r| {
        r["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/pypi/simple/aaaa"))
    });
    let path = logged["path"].as_str().expect("path");
    assert!(
        path.len() < 2100,
        "the access log wrote {} bytes of path",
        path.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_half_sent_requests_are_closed_after_the_header_timeout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", UNREACHED, ""),
        "server:\n  header_timeout: 1s\n  idle_timeout: 2s\n",
    );
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(TcpStream::connect(wharf.addr).await.expect("connect"));
    }
    let mut half = Vec::new();
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(wharf.addr).await.expect("connect");
        stream
            .write_all(b"GET /pypi/simple/ HT")
            .await
            .expect("half a request line");
        half.push(stream);
    }
    eprintln!(
        "2,100 stalled connections opened in {:?}",
        started.elapsed()
    );
    // Others are still served meanwhile.
    let (status, body) = get(wharf.addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let waited = Instant::now();
    let mut still_open = 0;
    for stream in idle.iter_mut().chain(half.iter_mut()) {
        let left = Duration::from_secs(15).saturating_sub(waited.elapsed());
        if !closed_by_server(stream, left).await {
            still_open += 1;
        }
    }
    eprintln!(
        "{still_open} of 2,100 stalled connections open {:?} after they were opened",
        started.elapsed()
    );
    assert_eq!(
        still_open, 0,
        "stalled connections still open 15 s after a 1 s header_timeout"
    );
    let (status, _) = get(wharf.addr, "/healthz").await;
    assert_eq!(status, 200);

    // A kept-alive connection is closed after idle_timeout between requests, and not before its first
    // request was answered.
    let mut kept = TcpStream::connect(wharf.addr).await.expect("connect");
    let (status, _) = exchange(&mut kept, "GET /healthz HTTP/1.1\r\nHost: wharf\r\n\r\n")
        .await
        .expect("first request");
    assert_eq!(status, 200);
    let idle_from = Instant::now();
    assert!(closed_by_server(&mut kept, Duration::from_secs(15)).await);
    assert!(
        idle_from.elapsed() >= Duration::from_millis(1500),
        "closed after {:?}, before idle_timeout",
        idle_from.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_stalled_connections_and_a_stuck_download_exits_within_the_shutdown_timeout() {
    let file = wheel_with_payload("stuck", "1.0", 4 << 20, 7);
    let up = PypiUpstream::start(vec![Project::new("stuck", vec![file.clone()])]).await;
    up.faults().set_stall_after(Some(64 * 1024));
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "server:\n  header_timeout: 60s\n  shutdown_timeout: 2s\nhttp:\n  read_timeout: 5m\n",
    );
    let mut open = Vec::new();
    for i in 0..2000 {
        let mut stream = TcpStream::connect(wharf.addr).await.expect("connect");
        if i % 2 == 1 {
            stream
                .write_all(b"GET /pypi/simple/ HT")
                .await
                .expect("half a request line");
        }
        open.push(stream);
    }
    // A download whose upstream stalls after 64 KiB: in flight until the shutdown deadline.
    let mut download = TcpStream::connect(wharf.addr).await.expect("connect");
    download
        .write_all(
            format!(
                "GET /pypi/files/stuck/{} HTTP/1.1\r\nHost: wharf\r\n\r\n",
                file.filename
            )
            .as_bytes(),
        )
        .await
        .expect("request");
    let mut first = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(20), download.read(&mut first))
        .await
        .expect("the download starts")
        .expect("read");
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&first[..n])
    );

    let signalled = Instant::now();
    let status = wharf.terminate();
    let took = signalled.elapsed();
    eprintln!("SIGTERM with 2,000 stalled connections and a stuck download: exited in {took:?}");
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(10),
        "exit took {took:?} with a 2 s shutdown_timeout"
    );
    assert!(
        took >= Duration::from_millis(1500),
        "exited after {took:?}: the in-flight download was not given its shutdown_timeout"
    );
    up.faults().set_stall_after(None);
    drop(open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_bodies_are_refused_without_being_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repos = format!(
        "{}  npm:\n    format: npm\n    upstream: \"http://127.0.0.1:9/\"\n",
        pypi_repo("pypi", UNREACHED, "")
    );
    let wharf = Wharf::start(&tmp.path().join("data"), &repos, "");
    let pid = wharf.pid();
    let (status, _) = get(wharf.addr, "/pypi/simple/").await;
    assert_eq!(status, 502);
    let peak_before = memory_kib(pid, "VmHWM");

    let started = Instant::now();
    let mut posts = Vec::new();
    for _ in 0..40 {
        let addr = wharf.addr;
        posts.push(tokio::spawn(async move {
            post_big(addr, "/pypi/simple/demo/", 16 << 20).await
        }));
    }
    for post in posts {
        assert_eq!(post.await.expect("post task"), 405);
    }
    // npm's audit endpoint takes a body, but not 16 MiB of one; and it takes only POST.
    assert_eq!(
        post_big(
            wharf.addr,
            "/npm/-/npm/v1/security/advisories/bulk",
            16 << 20
        )
        .await,
        413
    );
    assert_eq!(post_big(wharf.addr, "/npm/-/ping", 1 << 20).await, 405);
    // The admin API reads no body at all: without a token (here: disabled) the answer comes unread.
    assert_eq!(
        post_big(wharf.addr, "/admin/purge?repo=pypi&all=true", 16 << 20).await,
        403
    );
    let peak_after = memory_kib(pid, "VmHWM");
    eprintln!(
        "42 POSTs of up to 16 MiB answered in {:?}; peak RSS {peak_before} -> {peak_after} KiB",
        started.elapsed()
    );
    assert!(
        peak_after < peak_before + 48 * 1024,
        "peak RSS grew from {peak_before} to {peak_after} KiB: bodies were read into memory"
    );
    let (status, _) = get(wharf.addr, "/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_wait_in_the_backlog() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", UNREACHED, ""),
        "server:\n  max_connections: 20\n  header_timeout: 30s\n",
    );
    let pid = wharf.pid();
    let baseline = open_sockets(pid);
    let mut held = Vec::new();
    for _ in 0..60 {
        held.push(TcpStream::connect(wharf.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sockets = open_sockets(pid);
    eprintln!("60 idle connections with max_connections 20: wharf holds {sockets} sockets (baseline {baseline})");
    assert!(
        sockets <= baseline + 20,
        "wharf holds {sockets} sockets, baseline {baseline}, max_connections 20"
    );
    // A new client waits in the backlog while the server is full ...
    let addr = wharf.addr;
    let waiting = tokio::spawn(async move { get(addr, "/healthz").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "answered beyond max_connections");
    // ... and is served once connections close.
    drop(held);
    let (status, _) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("served after the held connections closed")
        .expect("task");
    assert_eq!(status, 200);
    let (_, status) = get(wharf.addr, "/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["server"]["max_connections"], 20);
    assert_eq!(status["server"]["header_timeout"], "30s");
    let (_, metrics) = get(wharf.addr, "/metrics").await;
    let open: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wharf_http_connections "))
        .and_then(|v| v.trim().parse().ok())
        .expect("wharf_http_connections gauge");
    assert!((1.0..=20.0).contains(&open), "{open} open connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_served_on_the_same_port_with_their_address_logged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", UNREACHED, ""),
        "server:\n  header_timeout: 2s\n",
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let mut requests = Vec::new();
    for _ in 0..50 {
        let request = client.get(wharf.url("/healthz")).send();
        requests.push(tokio::spawn(request));
    }
    for request in requests {
        let resp = request.await.expect("task").expect("h2 request");
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
    }
    // A connection that has answered requests is not held to the header timeout between them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resp = client
        .get(wharf.url("/pypi/simple/"))
        .send()
        .await
        .expect("h2 request after a pause");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let metrics = client
        .get(wharf.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    assert!(
        !metrics.contains("reason=\"header_timeout\""),
        "an HTTP/2 connection was closed between requests:\n{metrics}"
    );
    let logged = wharf.wait_log(|r| r["path"] == "/pypi/simple/");
    assert_eq!(logged["client"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_download_is_dropped_after_the_body_timeout() {
    let file = wheel_with_payload("big", "1.0", 32 << 20, 11);
    let up = PypiUpstream::start(vec![Project::new("big", vec![file.clone()])]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "server:\n  body_timeout: 1s\n",
    );
    let path = format!("/pypi/files/big/{}", file.filename);
    // Cached first, so the stall below is the client's alone.
    let mut warm = TcpStream::connect(wharf.addr).await.expect("connect");
    let (status, body) = exchange(
        &mut warm,
        &format!("GET {path} HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\r\n"),
    )
    .await
    .expect("download");
    assert_eq!((status, body.len()), (200, file.bytes.len()));

    // A small receive buffer, so loopback's autotuned buffers cannot swallow the whole file.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
    let mut stream = socket.connect(wharf.addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: wharf\r\n\r\n").as_bytes())
        .await
        .expect("request");
    // Read nothing while the socket buffers fill and the server's writes block.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stalled download was never ended ({received} bytes received)"
    );
    eprintln!(
        "a client that stopped reading received {received} of {} bytes",
        file.bytes.len()
    );
    assert!(
        received < file.bytes.len(),
        "the whole file arrived: the server never gave up on the stalled client"
    );
    let (_, metrics) = get(wharf.addr, "/metrics").await;
    assert!(
        metrics.contains("wharf_http_connections_closed_total{reason=\"body_timeout\"} 1"),
        "{metrics}"
    );
}
