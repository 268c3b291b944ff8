//! [`ScriptedServer`]: a loopback server whose answer at each path a test scripts (status, headers, body), which
//! can require HTTP Basic credentials and records every request it receives (method, path, `Authorization`,
//! body length). For tests of where wharf goes and what it sends: redirects to other hosts, token realms,
//! private indexes, audit pass-through.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::server::{Body, Handler, ServerTask};

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Answer {
    pub fn new(status: u16, body: impl Into<Bytes>) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A redirect with `status` (301, 302, 307, ...) to `location`.
    pub fn redirect(status: u16, location: &str) -> Answer {
        Answer::new(status, "").header("location", location)
    }

    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub authorization: Option<String>,
    pub body_len: usize,
}

#[derive(Default)]
struct State {
    answers: Mutex<HashMap<String, Answer>>,
    basic: Mutex<Option<String>>,
    seen: Mutex<Vec<Seen>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running scripted server on 127.0.0.1. Unscripted paths answer 404.
pub struct ScriptedServer {
    state: Arc<State>,
    server: ServerTask,
}

impl ScriptedServer {
    /// Starts on a free loopback port.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start() -> ScriptedServer {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind 127.0.0.1:0");
        let state = Arc::new(State::default());
        let st = state.clone();
        let handler: Handler = Arc::new(move |req| {
            let st = st.clone();
            Box::pin(async move { Ok(handle(&st, req).await) })
        });
        let server = ServerTask::spawn(listener, handler).expect("spawn scripted server");
        ScriptedServer { state, server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:{port}` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Answers `path` with `answer`: a request's path and query are matched first, then its path alone.
    pub fn script(&self, path: &str, answer: Answer) {
        lock(&self.state.answers).insert(path.to_string(), answer);
    }

    /// Requires `Authorization: Basic base64(user:password)` on every path; others get 401 with a Basic
    /// challenge.
    pub fn require_basic(&self, user: &str, password: &str) {
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        *lock(&self.state.basic) = Some(value);
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state.seen).clone()
    }

    /// Requests received so far whose path starts with `prefix`.
    pub fn seen_under(&self, prefix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.starts_with(prefix))
            .collect()
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let authorization = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    lock(&state.seen).push(Seen {
        method,
        path: path.clone(),
        authorization: authorization.clone(),
        body_len: body.len(),
    });
    let required = lock(&state.basic).clone();
    if required.is_some() && authorization != required {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("www-authenticate", "Basic realm=\"scripted\"")
            .body(Body::full(Bytes::from_static(b"credentials required")))
            .expect("response");
    }
    let bare = path.split('?').next().unwrap_or("/");
    let answer = {
        let answers = lock(&state.answers);
        answers.get(&path).or_else(|| answers.get(bare)).cloned()
    };
    let answer = answer.unwrap_or_else(|| Answer::new(404, "not scripted"));
    let mut builder = Response::builder().status(answer.status);
    for (name, value) in &answer.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(Body::full(answer.body))
        .expect("scripted response")
}
