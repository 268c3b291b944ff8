//! A fake Kubernetes API server on loopback that serves what wharf's pod watch reads: `LIST` of pods (whole
//! cluster or one namespace, `labelSelector` of `key=value` terms, `limit`/`continue` pages) and a streaming
//! `WATCH` (JSON lines, chunked) from a `resourceVersion`, with bookmarks. Knobs: [`FakeKubeApi::compact`]
//! makes watches from older versions end in an `ERROR` event with code 410, [`FakeKubeApi::drop_watches`]
//! cuts every open watch mid-stream, [`FakeKubeApi::bookmark`] sends a bookmark. Requests need the bearer
//! token set with [`FakeKubeApi::set_token`] (401 otherwise); [`FakeKubeApi::requests`] says what was asked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct KubeRequest {
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub token: Option<String>,
}

impl KubeRequest {
    pub fn is_watch(&self) -> bool {
        self.query
            .get("watch")
            .is_some_and(|w| w == "1" || w == "true")
    }
}

#[derive(Default)]
struct State {
    /// uid → pod object.
    pods: BTreeMap<String, Value>,
    /// (resourceVersion, type, object) in order.
    history: Vec<(u64, &'static str, Value)>,
    version: u64,
    /// Watches from versions below this end with 410.
    compacted: u64,
    next_uid: u64,
    token: String,
    requests: Vec<KubeRequest>,
}

/// The running fake; dropping it stops it.
pub struct FakeKubeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Bumped on every change, wakes the watches.
    changed: watch::Sender<u64>,
    /// Bumped to cut every open watch.
    cut: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Drop for FakeKubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKubeApi {
    pub async fn start() -> FakeKubeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            version: 100,
            token: "test-token".into(),
            ..State::default()
        }));
        let (changed, _) = watch::channel(0);
        let (cut, _) = watch::channel(0);
        let server = Server {
            state: state.clone(),
            changed: changed.subscribe(),
            cut: cut.subscribe(),
        };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let _ = server.connection(stream).await;
                });
            }
        });
        FakeKubeApi {
            addr,
            state,
            changed,
            cut,
            task,
        }
    }

    /// The base URL, ending in `/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The bearer token requests must carry (default `test-token`).
    pub fn set_token(&self, token: &str) {
        self.lock().token = token.to_string();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, kind: &'static str, object: Value) {
        let mut s = self.lock();
        let version = s.version;
        s.history.push((version, kind, object));
        drop(s);
        self.changed.send_replace(version);
    }

    /// Adds a running pod with `ip` (and `labels`); returns its uid.
    pub fn add_pod(
        &self,
        namespace: &str,
        name: &str,
        ip: &str,
        labels: &[(&str, &str)],
    ) -> String {
        let mut s = self.lock();
        s.version += 1;
        s.next_uid += 1;
        let uid = format!("uid-{}", s.next_uid);
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let pod = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid,
                "resourceVersion": s.version.to_string(),
                "labels": labels,
                "managedFields": [{"manager": "kubelet", "operation": "Update"}],
            },
            "spec": {"nodeName": "node-1", "containers": [{"name": "job", "image": "ci"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
        });
        s.pods.insert(uid.clone(), pod.clone());
        drop(s);
        self.record("ADDED", pod);
        uid
    }

    /// Deletes the pod `namespace/name`, if there is one.
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        let mut s = self.lock();
        let Some(uid) = s
            .pods
            .iter()
            .find(|(_, p)| p["metadata"]["namespace"] == namespace && p["metadata"]["name"] == name)
            .map(|(uid, _)| uid.clone())
        else {
            return;
        };
        s.version += 1;
        let mut pod = s.pods.remove(&uid).expect("pod");
        pod["metadata"]["resourceVersion"] = json!(s.version.to_string());
        drop(s);
        self.record("DELETED", pod);
    }

    /// Sends a bookmark at the current version to every open watch.
    pub fn bookmark(&self) {
        let mut s = self.lock();
        s.version += 1;
        let object = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": s.version.to_string()}});
        drop(s);
        self.record("BOOKMARK", object);
    }

    /// Forgets history: a watch from any version before now ends with `410 Gone` (as after etcd compaction).
    pub fn compact(&self) {
        let mut s = self.lock();
        s.compacted = s.version + 1;
        s.history.clear();
    }

    /// Cuts every open watch without ending the chunked body (a dropped connection).
    pub fn drop_watches(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<KubeRequest> {
        self.lock().requests.clone()
    }

    /// LIST requests (first pages) and WATCH requests so far.
    pub fn lists(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| !r.is_watch() && !r.query.contains_key("continue"))
            .count()
    }

    pub fn watches(&self) -> usize {
        self.requests().iter().filter(|r| r.is_watch()).count()
    }
}

#[derive(Clone)]
struct Server {
    state: Arc<Mutex<State>>,
    changed: watch::Receiver<u64>,
    cut: watch::Receiver<u64>,
}

/// Splits `a=b&c=d` (percent-decoding `%XX` and `+`).
fn parse_query(query: &str) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                if let Ok(b) =
                    u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16)
                {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Whether `pod` is in the namespace (if any) and matches every `key=value` term of the selector.
fn selected(pod: &Value, namespace: Option<&str>, selector: Option<&str>) -> bool {
    if namespace.is_some_and(|ns| pod["metadata"]["namespace"] != ns) {
        return false;
    }
    selector.is_none_or(|sel| {
        sel.split(',')
            .filter(|t| !t.is_empty())
            .all(|term| match term.split_once('=') {
                Some((k, v)) => pod["metadata"]["labels"][k.trim()] == v.trim(),
                None => !pod["metadata"]["labels"][term.trim()].is_null(),
            })
    })
}

impl Server {
    async fn connection(mut self, mut stream: TcpStream) -> std::io::Result<()> {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 || head.len() > 64 * 1024 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let target = lines
            .next()
            .unwrap_or("")
            .split(' ')
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let token = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| v.trim().strip_prefix("Bearer ").map(str::to_string));
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let request = KubeRequest {
            path: path.to_string(),
            query: parse_query(query),
            token: token.clone(),
        };
        let expected = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.requests.push(request.clone());
            s.token.clone()
        };
        if token.as_deref() != Some(expected.as_str()) {
            return respond(
                &mut stream,
                401,
                &json!({"kind": "Status", "code": 401, "message": "Unauthorized"}),
            )
            .await;
        }
        let namespace = match path.strip_prefix("/api/v1/namespaces/") {
            Some(rest) => match rest.strip_suffix("/pods") {
                Some(ns) => Some(ns.to_string()),
                None => {
                    return respond(&mut stream, 404, &json!({"kind": "Status", "code": 404})).await
                }
            },
            None if path == "/api/v1/pods" => None,
            None => {
                return respond(&mut stream, 404, &json!({"kind": "Status", "code": 404})).await
            }
        };
        let selector = request.query.get("labelSelector").cloned();
        if request.is_watch() {
            let from: u64 = request
                .query
                .get("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            self.watch(stream, namespace.as_deref(), selector.as_deref(), from)
                .await
        } else {
            let limit: usize = request
                .query
                .get("limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(usize::MAX);
            let offset: usize = request
                .query
                .get("continue")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let (items, version) = {
                let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let items: Vec<Value> = s
                    .pods
                    .values()
                    .filter(|p| selected(p, namespace.as_deref(), selector.as_deref()))
                    .cloned()
                    .collect();
                (items, s.version)
            };
            let page: Vec<Value> = items.iter().skip(offset).take(limit).cloned().collect();
            let mut metadata = json!({"resourceVersion": version.to_string()});
            if offset + page.len() < items.len() {
                metadata["continue"] = json!((offset + page.len()).to_string());
            }
            respond(
                &mut stream,
                200,
                &json!({"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": page}),
            )
            .await
        }
    }

    async fn watch(
        &mut self,
        mut stream: TcpStream,
        namespace: Option<&str>,
        selector: Option<&str>,
        from: u64,
    ) -> std::io::Result<()> {
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            .await?;
        let timeout: u64 = 300;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        self.cut.borrow_and_update();
        let mut sent = from;
        loop {
            let (events, gone) = {
                let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if sent < s.compacted {
                    (Vec::new(), true)
                } else {
                    let events: Vec<(u64, String)> = s
                        .history
                        .iter()
                        .filter(|(v, kind, o)| {
                            *v > sent && (*kind == "BOOKMARK" || selected(o, namespace, selector))
                        })
                        .map(|(v, kind, o)| (*v, json!({"type": kind, "object": o}).to_string()))
                        .collect();
                    (events, false)
                }
            };
            if gone {
                let error = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "too old resource version", "reason": "Expired", "code": 410}});
                chunk(&mut stream, format!("{error}\n").as_bytes()).await?;
                return stream.write_all(b"0\r\n\r\n").await;
            }
            for (version, line) in events {
                chunk(&mut stream, format!("{line}\n").as_bytes()).await?;
                sent = sent.max(version);
            }
            tokio::select! {
                _ = self.changed.changed() => {}
                _ = self.cut.changed() => {
                    // Mid-chunk, then gone: the client sees a broken body, not an end.
                    stream.write_all(b"40\r\n{\"type\":").await?;
                    return Ok(());
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return stream.write_all(b"0\r\n\r\n").await;
                }
            }
        }
    }
}

async fn chunk(stream: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    stream
        .write_all(format!("{:x}\r\n", data.len()).as_bytes())
        .await?;
    stream.write_all(data).await?;
    stream.write_all(b"\r\n").await
}

async fn respond(stream: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    stream
        .write_all(
            format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await?;
    stream.shutdown().await
}
