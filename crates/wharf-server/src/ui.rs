//! The web UI: server-rendered pages, no JavaScript, small enough to load instantly and laid out for a phone.
//!
//! - `/`: totals (hit ratio, bytes saved, store usage), one card per repository with its upstream's health,
//!   and the most downloaded artifacts;
//! - `/ui/browse/{repo}?prefix=P`: the cached entries of a repository, filtered by path prefix.
//!
//! Also the middleware that counts downloads for the "top artifacts" table.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use http::{header, Method, StatusCode};
use serde::Deserialize;
use wharf_cache::error_response;

use wharf_text::html_escape as esc;

use crate::access_log::RepoName;
use crate::state::AppState;
use crate::stats::RepoSnapshot;

/// Entries shown on one browse page.
const BROWSE_LIMIT: usize = 500;
/// Artifacts in the "top" table.
const TOP_SHOWN: usize = 15;
/// An upstream failure this recent makes a repository "degraded".
const DEGRADED_FOR_MS: u64 = 10 * 60 * 1000;

/// Percent-encodes a query value.
fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn human(bytes: u64) -> String {
    wharf_config::format_size(bytes)
}

fn ago(now_ms: u64, then_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

const STYLE: &str = "\
*{box-sizing:border-box}body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f4f5f7}\
header{background:#123;color:#fff;padding:.7rem 1rem;display:flex;flex-wrap:wrap;gap:.3rem 1rem;align-items:baseline}\
header h1{font-size:1.2rem;margin:0}header a{color:#cde}main{padding:.8rem;max-width:70rem;margin:auto}\
h2{font-size:1.05rem;margin:1.2rem 0 .5rem}.grid{display:grid;gap:.6rem;grid-template-columns:repeat(auto-fill,minmax(15rem,1fr))}\
.card{background:#fff;border-radius:.5rem;padding:.7rem .9rem;box-shadow:0 1px 2px #0002}\
.big{font-size:1.6rem;font-weight:600}.muted{color:#5b6470;font-size:.85rem}\
dl{display:grid;grid-template-columns:auto 1fr;gap:.15rem .8rem;margin:.4rem 0 0}dt{color:#5b6470}dd{margin:0;text-align:right}\
.ok{color:#0a7d32}.degraded{color:#b3261e}.idle{color:#5b6470}\
.bar{height:.5rem;background:#dde1e6;border-radius:.25rem;overflow:hidden;margin:.4rem 0}.bar span{display:block;height:100%;background:#2f6fd6}\
table{width:100%;border-collapse:collapse;background:#fff;border-radius:.5rem;overflow:hidden}\
td,th{padding:.4rem .5rem;border-bottom:1px solid #e6e8eb;text-align:left;font-size:.85rem;vertical-align:top}\
td.n,th.n{text-align:right;white-space:nowrap}td.p{word-break:break-all}.wrap{overflow-x:auto}\
form{display:flex;gap:.4rem;margin:.5rem 0}input{flex:1;min-width:0;padding:.4rem;font:inherit}button{padding:.4rem .8rem;font:inherit}\
code{font-size:.8rem;word-break:break-all}";

/// A UI page, with the content security policy that lets its inline styles and filter form work.
fn page(title: &str, body: &str) -> Response {
    let html = Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\
         <header><h1><a href=\"/\" style=\"color:inherit;text-decoration:none\">wharf</a></h1>\
         <span class=\"muted\" style=\"color:#cde\">{version}</span>\
         <a href=\"/status\">status JSON</a><a href=\"/metrics\">metrics</a></header><main>{body}</main></body></html>",
        title = esc(title),
        version = env!("CARGO_PKG_VERSION"),
    ));
    (
        [(header::CONTENT_SECURITY_POLICY, crate::headers::UI_POLICY)],
        html,
    )
        .into_response()
}

/// "ok", "degraded" or "idle" with a sentence, from the last upstream success and failure.
fn health(s: &RepoSnapshot, now_ms: u64) -> (&'static str, String) {
    match (s.last_upstream_error_ms, s.last_upstream_ok_ms) {
        (Some(err), ok)
            if now_ms.saturating_sub(err) < DEGRADED_FOR_MS && ok.is_none_or(|ok| ok < err) =>
        {
            ("degraded", format!("upstream failed {}", ago(now_ms, err)))
        }
        (err, Some(ok)) => (
            "ok",
            match err {
                Some(err) => format!(
                    "answered {}; last failure {}",
                    ago(now_ms, ok),
                    ago(now_ms, err)
                ),
                None => format!("answered {}", ago(now_ms, ok)),
            },
        ),
        (Some(err), None) => ("degraded", format!("upstream failed {}", ago(now_ms, err))),
        (None, None) => ("idle", "not contacted yet".to_string()),
    }
}

pub async fn index(State(state): State<Arc<AppState>>) -> Response {
    let usage = state.refresh_store_metrics();
    let now = wharf_store::now_ms();
    let mut cards = String::new();
    let (mut served, mut upstream, mut answered, mut saved_answers) = (0u64, 0u64, 0u64, 0u64);
    let mut top = Vec::new();
    for name in &state.repo_order {
        let (Some(repo), Some(stats)) = (state.repos.get(name), state.repo_stats(name)) else {
            continue;
        };
        let s = stats.snapshot();
        served += s.bytes_served;
        upstream += s.upstream_bytes;
        let repo_answered = s.hit + s.miss + s.coalesced + s.stale + s.revalidated + s.negative;
        answered += repo_answered;
        saved_answers += repo_answered - s.miss;
        top.extend(
            stats
                .top
                .top(TOP_SHOWN)
                .into_iter()
                .map(|(path, count)| (name.clone(), path, count)),
        );
        let (class, sentence) = health(&s, now);
        let _ = write!(
            cards,
            "<div class=\"card\" data-repo=\"{n}\"><div><a href=\"/ui/browse/{n}\"><b>{n}</b></a> \
             <span class=\"muted\">{f}</span> <span class=\"{class}\" data-health=\"{class}\">● {class}</span></div>\
             <div class=\"muted\" style=\"word-break:break-all\">{u}</div><div class=\"muted\">{sentence}</div>\
             <dl><dt>requests</dt><dd data-requests>{r}</dd><dt>hit ratio</dt><dd data-hit-ratio>{h}</dd>\
             <dt>served</dt><dd data-served>{served}</dd><dt>from upstream</dt><dd data-upstream>{up}</dd>\
             <dt>saved</dt><dd data-saved>{saved}</dd><dt>stale answers</dt><dd>{stale}</dd>\
             <dt>errors</dt><dd>{errors}</dd></dl></div>",
            n = esc(name),
            f = repo.config.format,
            u = esc(&repo.config.upstream_list().join(", ")),
            r = s.requests,
            h = percent(s.hit_ratio),
            served = human(s.bytes_served),
            up = human(s.upstream_bytes),
            saved = human(s.bytes_served.saturating_sub(s.upstream_bytes)),
            stale = s.stale,
            errors = s.errors,
        );
        if let Some(hosted) = repo.handler.status() {
            hosted_card(&mut cards, name, &hosted, now);
        }
    }
    if cards.is_empty() {
        cards.push_str("<div class=\"card\">No repositories are configured.</div>");
    }
    top.sort_by(|a, b| {
        b.2.downloads
            .cmp(&a.2.downloads)
            .then(b.2.bytes.cmp(&a.2.bytes))
    });
    top.truncate(TOP_SHOWN);
    let mut top_rows = String::new();
    for (repo, path, count) in &top {
        let _ = write!(
            top_rows,
            "<tr><td class=\"p\"><span class=\"muted\">{r}/</span>{p}</td><td class=\"n\">{d}</td><td class=\"n\">{b}</td></tr>",
            r = esc(repo),
            p = esc(path),
            d = count.downloads,
            b = human(count.bytes),
        );
    }
    if top_rows.is_empty() {
        top_rows.push_str("<tr><td colspan=\"3\" class=\"muted\">No downloads yet.</td></tr>");
    }
    let hit_ratio = if answered == 0 {
        0.0
    } else {
        saved_answers as f64 / answered as f64
    };
    let (limit, fill) = match usage.max_bytes {
        Some(max) if max > 0 => (
            human(max),
            (usage.bytes as f64 / max as f64 * 100.0).min(100.0),
        ),
        _ => ("no limit".to_string(), 0.0),
    };
    let body = format!(
        "<div class=\"grid\">\
         <div class=\"card\"><div class=\"muted\">hit ratio</div><div class=\"big\" id=\"hit-ratio\">{hr}</div>\
         <div class=\"muted\">{answered} cache answers</div></div>\
         <div class=\"card\"><div class=\"muted\">bytes saved</div><div class=\"big\" id=\"bytes-saved\">{saved}</div>\
         <div class=\"muted\">served <span id=\"bytes-served\">{served}</span>, from upstream <span id=\"bytes-upstream\">{up}</span></div></div>\
         {money}\
         <div class=\"card\"><div class=\"muted\">store</div><div class=\"big\" id=\"store-used\">{used}</div>\
         <div class=\"bar\"><span style=\"width:{fill:.1}%\"></span></div>\
         <div class=\"muted\">of {limit} · <span id=\"store-blobs\">{blobs}</span> blobs · {evictions} evicted · up {uptime}</div></div>\
         </div><h2>Repositories</h2><div class=\"grid\">{cards}</div>\
         {warm}{usage}<h2>Top artifacts</h2><div class=\"wrap\"><table id=\"top\"><tr><th>path</th><th class=\"n\">downloads</th>\
         <th class=\"n\">bytes</th></tr>{top_rows}</table></div>",
        hr = percent(hit_ratio),
        saved = human(served.saturating_sub(upstream)),
        served = human(served),
        up = human(upstream),
        used = human(usage.bytes),
        blobs = usage.blobs,
        evictions = usage.evictions,
        uptime = uptime(state.started.elapsed().as_secs()),
        warm = crate::warm::ui_section(&state),
        money = crate::savings::ui_card(&state),
        usage = crate::usage::ui_section(&state),
    );
    page("wharf", &body)
}

/// A card per hosted OCI namespace: what is kept there and when it was last pushed to.
fn hosted_card(cards: &mut String, repo: &str, hosted: &serde_json::Value, now: u64) {
    for ns in hosted["namespaces"].as_array().into_iter().flatten() {
        let last = match ns["last_push_ms"].as_u64() {
            Some(ms) => format!("{} ago", uptime(now.saturating_sub(ms) / 1000)),
            None => "never".to_string(),
        };
        let _ = write!(
            cards,
            "<div class=\"card\" data-hosted=\"{r}/{n}\"><div><b>{r}/{n}/</b> <span class=\"muted\">hosted</span></div>\
             <dl><dt>kept</dt><dd data-hosted-bytes>{b}</dd><dt>manifests</dt><dd>{m}</dd>\
             <dt>tags</dt><dd data-hosted-tags>{t}</dd><dt>last push</dt><dd data-last-push>{last}</dd></dl></div>",
            r = esc(repo),
            n = esc(ns["namespace"].as_str().unwrap_or("")),
            b = human(ns["bytes"].as_u64().unwrap_or(0)),
            m = ns["manifests"].as_u64().unwrap_or(0),
            t = ns["tags"].as_u64().unwrap_or(0),
        );
    }
}

fn uptime(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        7200..172800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

#[derive(Deserialize)]
pub struct BrowseParams {
    #[serde(default)]
    prefix: String,
}

pub async fn browse(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Query<BrowseParams>,
) -> Response {
    if !state.repos.contains_key(&name) {
        return error_response(
            StatusCode::NOT_FOUND,
            format!(
                "no repository named `{name}` (configured: {})",
                state.repo_order.join(", ")
            ),
        );
    }
    let store = state.engine.store().clone();
    let (repo, prefix) = (name.clone(), params.prefix.clone());
    let listed =
        tokio::task::spawn_blocking(move || store.list_entries(&repo, &prefix, BROWSE_LIMIT + 1))
            .await;
    let mut entries = match listed {
        Ok(Ok(entries)) => entries,
        Ok(Err(e)) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let more = entries.len() > BROWSE_LIMIT;
    entries.truncate(BROWSE_LIMIT);
    let now = wharf_store::now_ms();
    let store = state.engine.store();
    let mut rows = String::new();
    for (key, entry) in &entries {
        let kind = if entry.is_negative() {
            format!("not found ({})", entry.status)
        } else if entry.blob_digest().is_some_and(|d| store.has_blob(&d)) {
            if entry.immutable { "file" } else { "page" }.to_string()
        } else {
            "evicted".to_string()
        };
        let _ = write!(
            rows,
            "<tr><td class=\"p\"><a href=\"/{r}/{k}\">{kt}</a></td><td>{kind}</td><td class=\"n\">{size}</td>\
             <td class=\"n\">{age}</td><td class=\"n\">{read}</td></tr>",
            r = esc(&name),
            k = esc(key),
            kt = esc(key),
            size = human(entry.size),
            age = ago(now, entry.fetched_at),
            read = entry
                .blob_digest()
                .and_then(|d| store.last_access(&d))
                .map_or_else(|| "-".to_string(), |at| ago(now, at)),
        );
    }
    if rows.is_empty() {
        rows.push_str(
            "<tr><td colspan=\"5\" class=\"muted\">Nothing cached under this prefix.</td></tr>",
        );
    }
    let shown = if more {
        format!("first {BROWSE_LIMIT} entries (narrow the prefix to see more)")
    } else {
        format!("{} entries", entries.len())
    };
    let purge_hint = if params.prefix.is_empty() {
        format!("all=true&repo={}", query_value(&name))
    } else {
        format!(
            "repo={}&prefix={}",
            query_value(&name),
            query_value(&params.prefix)
        )
    };
    let body = format!(
        "<h2>{n}: cached entries</h2>\
         <form method=\"get\"><input name=\"prefix\" value=\"{p}\" placeholder=\"path prefix, e.g. files/numpy/\" \
         aria-label=\"path prefix\"><button>filter</button></form>\
         <p class=\"muted\" id=\"shown\">{shown}</p>\
         <div class=\"wrap\"><table id=\"entries\"><tr><th>path</th><th>kind</th><th class=\"n\">size</th>\
         <th class=\"n\">fetched</th><th class=\"n\">last read</th></tr>{rows}</table></div>\
         <p class=\"muted\">Purge these (admin token needed):<br><code>curl -X POST -H \"Authorization: Bearer $TOKEN\" \
         '&lt;wharf&gt;/admin/purge?{hint}'</code></p>",
        n = esc(&name),
        p = esc(&params.prefix),
        hint = esc(&purge_hint),
    );
    page(&format!("wharf: {name}"), &body)
}

/// Counts successful `GET`s of artifacts (paths under a repository not ending in `/`, so index pages are
/// left out) for the "top artifacts" table, with the size the response announces.
pub async fn count_downloads(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let path = (req.method() == Method::GET).then(|| req.uri().path().to_string());
    let resp = next.run(req).await;
    // The repository is the one `dispatch` routed to (named on the response), not read from the path again:
    // a repository claiming a top-level prefix (OCI's `/v2/...`) is not named in its paths.
    let repo = resp.extensions().get::<RepoName>().map(|r| r.name.clone());
    if let (Some(path), Some(repo)) = (path.filter(|_| resp.status() == StatusCode::OK), repo) {
        let raw = path.trim_start_matches('/');
        let rest = raw
            .strip_prefix(&*repo)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(raw);
        if let Some(stats) = state
            .repo_stats(&repo)
            .filter(|_| !rest.is_empty() && !rest.ends_with('/'))
        {
            let bytes = resp
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            stats.top.record(rest, bytes);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_query_encoding() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(query_value("files/a b&c"), "files/a%20b%26c");
    }

    #[test]
    fn health_from_last_success_and_failure() {
        let now = 100 * 60 * 1000;
        let mut s = RepoSnapshot::default();
        assert_eq!(health(&s, now).0, "idle");
        s.last_upstream_ok_ms = Some(now - 1000);
        assert_eq!(health(&s, now).0, "ok");
        s.last_upstream_error_ms = Some(now - 500);
        assert_eq!(health(&s, now).0, "degraded");
        s.last_upstream_ok_ms = Some(now - 100);
        assert_eq!(health(&s, now).0, "ok");
        s.last_upstream_ok_ms = None;
        s.last_upstream_error_ms = Some(now - DEGRADED_FOR_MS - 1);
        assert_eq!(health(&s, now).0, "degraded");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(10_000, 5_000), "5s ago");
        assert_eq!(ago(3_600_000, 0), "1h ago");
        assert_eq!(uptime(90), "90s");
    }
}
