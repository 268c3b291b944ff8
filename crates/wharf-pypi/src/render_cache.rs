//! Parsed and rendered index pages, kept in memory by the digest of upstream's bytes, so a cached page is
//! parsed once and rendered once per form however often it is asked for. Bounded by bytes; oldest first out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::accept::Variant;
use crate::model::ProjectPage;

pub(crate) struct RenderCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    parsed: HashMap<String, (Arc<ProjectPage>, usize)>,
    rendered: HashMap<(String, Variant), Bytes>,
    order: VecDeque<Key>,
    bytes: usize,
}

enum Key {
    Parsed(String),
    Rendered(String, Variant),
}

impl RenderCache {
    pub(crate) fn new(capacity: usize) -> RenderCache {
        RenderCache {
            inner: Mutex::default(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn parsed(&self, digest: &str) -> Option<Arc<ProjectPage>> {
        self.lock().parsed.get(digest).map(|(p, _)| p.clone())
    }

    pub(crate) fn put_parsed(&self, digest: &str, page: Arc<ProjectPage>, cost: usize) {
        let mut inner = self.lock();
        if inner
            .parsed
            .insert(digest.to_string(), (page, cost))
            .is_none()
        {
            inner.order.push_back(Key::Parsed(digest.to_string()));
            inner.bytes += cost;
        }
        self.shrink(&mut inner);
    }

    pub(crate) fn cached_render(&self, digest: &str, variant: Variant) -> Option<Bytes> {
        self.lock()
            .rendered
            .get(&(digest.to_string(), variant))
            .cloned()
    }

    /// The rendered page for `digest` in `variant`, rendering (and keeping) it on first use. Without a digest
    /// (a page still streaming from upstream) it renders without keeping.
    pub(crate) fn rendered(
        &self,
        digest: Option<&str>,
        variant: Variant,
        render: impl FnOnce() -> Bytes,
    ) -> Bytes {
        let Some(digest) = digest else {
            return render();
        };
        if let Some(body) = self.cached_render(digest, variant) {
            return body;
        }
        let body = render();
        let mut inner = self.lock();
        if inner
            .rendered
            .insert((digest.to_string(), variant), body.clone())
            .is_none()
        {
            inner
                .order
                .push_back(Key::Rendered(digest.to_string(), variant));
            inner.bytes += body.len();
        }
        self.shrink(&mut inner);
        body
    }

    fn shrink(&self, inner: &mut Inner) {
        while inner.bytes > self.capacity {
            let Some(key) = inner.order.pop_front() else {
                break;
            };
            let freed = match key {
                Key::Parsed(d) => inner.parsed.remove(&d).map_or(0, |(_, cost)| cost),
                Key::Rendered(d, v) => inner.rendered.remove(&(d, v)).map_or(0, |b| b.len()),
            };
            inner.bytes -= freed;
        }
    }
}
