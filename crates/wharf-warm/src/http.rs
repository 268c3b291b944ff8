//! [`Fetch`] over HTTP, for `wharf warm --url`: plain GETs with the `Accept` asked for; a hit's body is left
//! unread (the connection is dropped instead), anything else is read to the end so wharf finishes storing
//! it for everyone.

use bytes::BytesMut;
use url::Url;

use crate::run::{Answer, BoxFuture, Fetch, Request, CACHE_HEADER, PAGE_LIMIT};

/// Longest error text kept from a failed answer.
const MESSAGE_LIMIT: usize = 300;

pub struct HttpFetch {
    client: reqwest::Client,
    base: String,
}

impl HttpFetch {
    /// wharf at `base` (`http://wharf:8080/`, or with a path prefix behind an ingress).
    pub fn new(base: &Url) -> Result<HttpFetch, String> {
        // rustls needs a process-wide crypto provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("wharf-warm/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(300))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(HttpFetch {
            client,
            base: base.as_str().trim_end_matches('/').to_string(),
        })
    }

    async fn fetch(&self, req: Request) -> Result<Answer, String> {
        let url = format!("{}{}", self.base, req.path);
        let mut builder = self.client.get(&url);
        if let Some(accept) = req.accept {
            builder = builder.header(reqwest::header::ACCEPT, accept);
        }
        let mut resp = builder.send().await.map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        let cache = resp
            .headers()
            .get(CACHE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut answer = Answer {
            status,
            cache,
            ..Answer::default()
        };
        if status != 200 {
            let mut text = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
                text.extend_from_slice(&chunk);
                if text.len() >= MESSAGE_LIMIT {
                    break;
                }
            }
            text.truncate(MESSAGE_LIMIT);
            answer.message = String::from_utf8_lossy(&text).trim().to_string();
            return Ok(answer);
        }
        if !req.keep_body && answer.cache.as_deref() == Some("hit") {
            answer.bytes = resp.content_length().unwrap_or(0);
            return Ok(answer);
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
            answer.bytes += chunk.len() as u64;
            if req.keep_body {
                if body.len() + chunk.len() > PAGE_LIMIT {
                    return Err(format!(
                        "{url}: the answer is larger than {PAGE_LIMIT} bytes"
                    ));
                }
                body.extend_from_slice(&chunk);
            }
        }
        answer.body = body.freeze();
        Ok(answer)
    }
}

impl Fetch for HttpFetch {
    fn get(&self, req: Request) -> BoxFuture<'_, Result<Answer, String>> {
        Box::pin(self.fetch(req))
    }
}

/// reqwest's error with its causes, which carry the useful part (connection refused, timed out).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
