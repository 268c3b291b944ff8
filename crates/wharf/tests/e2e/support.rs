//! Shared test harness: runs the real `wharf` binary against local upstreams, and real Python clients
//! against it.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

/// Tools the test needs; in CI (`WHARF_REQUIRE_TOOLS=1`) a missing tool fails the test, elsewhere it skips.
pub use wharf_testkit::require_tool;

pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// A running wharf process.
pub struct Wharf {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Wharf {
    /// Starts wharf with `repositories_yaml` (the body of the `repositories:` map, indented by 2) and
    /// `extra_yaml` top-level settings, storing under `data_dir`; waits until `/readyz` answers 200.
    pub fn start(data_dir: &Path, repositories_yaml: &str, extra_yaml: &str) -> Wharf {
        Wharf::start_with_env(data_dir, repositories_yaml, extra_yaml, &[])
    }

    /// [`Wharf::start`] with extra environment variables for the process (credentials, say).
    pub fn start_with_env(
        data_dir: &Path,
        repositories_yaml: &str,
        extra_yaml: &str,
        env: &[(&str, &str)],
    ) -> Wharf {
        let addr = free_port();
        let config_path = data_dir.with_extension("yaml");
        let yaml = format!(
            "listen: \"{addr}\"\nstorage:\n  path: \"{}\"\n{extra_yaml}\nlog:\n  format: text\n  level: info\nrepositories:\n{repositories_yaml}\n",
            data_dir.display()
        );
        std::fs::write(&config_path, yaml).expect("write config");
        Wharf::spawn(&config_path, addr, data_dir, env)
    }

    pub fn start_with_config(config_path: &Path, addr: SocketAddr, data_dir: &Path) -> Wharf {
        Wharf::spawn(config_path, addr, data_dir, &[])
    }

    fn spawn(config_path: &Path, addr: SocketAddr, data_dir: &Path, env: &[(&str, &str)]) -> Wharf {
        let mut child = Command::new(WHARF)
            .args(["serve", "--config"])
            .arg(config_path)
            .env_remove("WHARF_CONFIG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wharf");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().expect("stdout"), stdout.clone());
        collect(child.stderr.take().expect("stderr"), stderr.clone());
        let wharf = Wharf {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            config_path: config_path.to_path_buf(),
            stdout,
            stderr,
        };
        wharf.wait_ready();
        wharf
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(self.addr) {
                use std::io::{Read, Write};
                let _ =
                    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "wharf did not become ready; stderr:\n{}",
            self.stderr.lock().expect("lock").join("\n")
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Access-log records (JSON lines on stdout) so far.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (bounded) until the access log has a record matching `pred`.
    pub fn wait_log(&self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(r) = self.access_log().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no matching access-log record; log:\n{:#?}",
                self.access_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "wharf did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("WHARF_TEST_ECHO").is_some() {
                eprintln!("wharf| {line}");
            }
            into.lock().expect("lock").push(line);
        }
    });
}

/// A `pypi` repository block for the config.
pub fn pypi_repo(name: &str, upstream: &str, extra: &str) -> String {
    format!("  {name}:\n    format: pypi\n    upstream: \"{upstream}\"\n{extra}")
}

/// A command for a Python client with the machine's pip/uv settings removed, so only what the test sets
/// counts.
pub fn python_client(program: &str) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars() {
        if key.starts_with("PIP_")
            || key.starts_with("UV_")
            || key.to_ascii_lowercase().ends_with("_proxy")
        {
            cmd.env_remove(key);
        }
    }
    cmd.env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_FIND_LINKS", "")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_CACHE_DIR", "1")
        .env("UV_NO_CONFIG", "1")
        .env("UV_NO_CACHE", "1")
        .env("NO_PROXY", "*");
    cmd
}

/// `uv pip install --no-deps` into `target` from the index at `index`, with this machine's settings cleared
/// (see [`python_client`]); the caller adds what to install.
pub fn uv_install(target: &Path, index: &str) -> Command {
    let mut cmd = python_client("uv");
    cmd.args([
        "pip",
        "install",
        "--no-deps",
        "--python",
        "python3",
        "--target",
    ])
    .arg(target)
    .args(["--index-url", index]);
    cmd
}

pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `VmRSS` or `VmHWM` (peak) of a process, in KiB.
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Sends a head announcing `len` body bytes, then the body in chunks, while reading the answer. Returns the
/// status, or 0 when the connection ended before a status line.
pub async fn post_big(addr: SocketAddr, path: &str, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: wharf\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b'{'; 64 * 1024];
        let mut sent = 0;
        while sent < len {
            let n = chunk.len().min(len - sent);
            writer.write_all(&chunk[..n]).await?;
            sent += n;
        }
        std::io::Result::Ok(sent)
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if raw.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    sender.abort();
    assert!(status.is_ok(), "no answer to a POST of {len} bytes");
    String::from_utf8_lossy(&raw)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `wharf_http_sendfile_bytes_total` from `/metrics`: the bytes the server sent from files with `sendfile`.
pub async fn sendfile_bytes(wharf: &Wharf) -> u64 {
    let text = http()
        .get(wharf.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix("wharf_http_sendfile_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("wharf_http_sendfile_bytes_total in /metrics")
}
