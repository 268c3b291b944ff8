//! The signed upload and download URLs, answering like the blob store the official clients write to:
//! `PUT` of a whole blob (`x-ms-blob-type: BlockBlob`), `PUT ?comp=block&blockid=` to stage a block,
//! `PUT ?comp=blocklist` with the block list to commit them in order, and `GET`/`HEAD` of a finished entry
//! with `Range` or `x-ms-range`. Successful writes answer `201 Created` with the `ETag`, `Last-Modified`,
//! `x-ms-request-id`, `x-ms-version` and `x-ms-request-server-encrypted` headers the SDKs read; errors are
//! the blob API's XML error with `x-ms-error-code`.

use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use wharf_cache::{serve, Freshness, RepoRequest};

use crate::upload::{self, Busy, UploadError, MAX_BLOCKS, MAX_BLOCK_ID};
use crate::ActionsRepo;

/// Largest block list accepted (50,000 ids of up to 128 bytes in their tags).
const MAX_BLOCK_LIST: usize = 10 << 20;
/// The blob API version wharf answers as.
const API_VERSION: &str = "2025-01-05";

pub(crate) async fn handle(repo: &ActionsRepo, req: RepoRequest, rest: &[&str]) -> Response<Body> {
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(req.query.as_deref().unwrap_or_default().as_bytes())
            .take(16)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let expires = param("se").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let sig = param("sig").unwrap_or_default();
    let now = ActionsRepo::now_secs();
    match rest {
        ["up", id] => {
            if !repo.signer.verify(&format!("up\n{id}"), expires, sig, now) {
                return error(StatusCode::FORBIDDEN, "AuthenticationFailed", "the upload URL's signature is not valid or it has expired: reserve the cache entry again");
            }
            if req.method != Method::PUT {
                return error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "UnsupportedHttpVerb",
                    "an upload URL takes PUT (a blob, a block, or a block list)",
                );
            }
            let Some(session) = repo.sessions.get(id) else {
                return error(StatusCode::NOT_FOUND, "UploadNotFound", "this upload is no longer in progress (finished, replaced by another job's, expired, or wharf restarted): reserve the cache entry again");
            };
            let busy = Busy::new(session);
            let result = match param("comp") {
                None => put_blob(repo, &busy, req).await,
                Some("block") => put_block(repo, &busy, req, param("blockid")).await,
                Some("blocklist") => put_block_list(repo, &busy, req).await,
                Some(_) => Err(UploadError::Invalid(
                    "comp must be block or blocklist".into(),
                )),
            };
            match result {
                Ok(resp) => resp,
                Err(e) => upload_error(e),
            }
        }
        ["get"] => {
            let key = param("k").unwrap_or_default();
            if !repo
                .signer
                .verify(&format!("get\n{key}"), expires, sig, now)
            {
                return error(StatusCode::FORBIDDEN, "AuthenticationFailed", "the download URL's signature is not valid or it has expired: look the cache entry up again");
            }
            if req.method != Method::GET && req.method != Method::HEAD {
                return error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "UnsupportedHttpVerb",
                    "a download URL takes GET or HEAD",
                );
            }
            download(repo, &req, key)
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "not a cache blob URL",
        ),
    }
}

fn download(repo: &ActionsRepo, req: &RepoRequest, key: &str) -> Response<Body> {
    let served = match repo.engine.cached(&repo.name, key, Freshness::Immutable) {
        Ok(Some(served)) => served,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "BlobNotFound",
                "the cache entry is gone (evicted or purged): look it up again",
            )
        }
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &e.to_string(),
            )
        }
    };
    let mut headers = req.headers.clone();
    if !headers.contains_key(header::RANGE) {
        if let Some(range) = headers.get("x-ms-range").cloned() {
            headers.insert(header::RANGE, range);
        }
    }
    let mut resp = serve(
        served,
        &req.method,
        &headers,
        Some("application/octet-stream"),
    );
    let h = resp.headers_mut();
    h.insert("x-ms-blob-type", HeaderValue::from_static("BlockBlob"));
    h.insert("x-ms-server-encrypted", HeaderValue::from_static("false"));
    h.insert("x-ms-lease-state", HeaderValue::from_static("available"));
    h.insert("x-ms-lease-status", HeaderValue::from_static("unlocked"));
    common_headers(h);
    resp
}

async fn put_blob(
    repo: &ActionsRepo,
    busy: &Busy,
    req: RepoRequest,
) -> Result<Response<Body>, UploadError> {
    if let Some(kind) = req.headers.get("x-ms-blob-type") {
        if kind.as_bytes() != b"BlockBlob" {
            return Err(UploadError::Invalid(
                "only block blobs are stored (x-ms-blob-type: BlockBlob)".into(),
            ));
        }
    }
    let store = repo.engine.store().clone();
    let (spooled, digest) =
        upload::spool(&store, &repo.budget, req.body, repo.max_entry, true).await?;
    let Some(digest) = digest else {
        return Err(UploadError::Invalid("the upload was not hashed".into()));
    };
    let size = spooled.len;
    let committed =
        tokio::task::spawn_blocking(move || upload::commit(&store, spooled, digest, size))
            .await
            .map_err(|e| UploadError::Io(std::io::Error::other(e.to_string())))??;
    let mut state = busy.0.state();
    state.staging = None;
    state.committed = Some(committed);
    Ok(created(Some(&committed)))
}

async fn put_block(
    repo: &ActionsRepo,
    busy: &Busy,
    req: RepoRequest,
    block_id: Option<&str>,
) -> Result<Response<Body>, UploadError> {
    let Some(id) = block_id.filter(|id| !id.is_empty() && id.len() <= MAX_BLOCK_ID) else {
        return Err(UploadError::Invalid(format!(
            "blockid must be 1 to {MAX_BLOCK_ID} characters"
        )));
    };
    let store = repo.engine.store();
    let declared = req.body.declared_len();
    let slot = busy
        .0
        .state()
        .stage_block(store, &repo.budget, id, declared, repo.max_entry)?;
    let own = match slot.offset() {
        Some(offset) => {
            upload::write_range(slot.file.clone(), req.body, offset, declared.unwrap_or(0)).await?;
            None
        }
        None => {
            let (spooled, _) =
                upload::spool(store, &repo.budget, req.body, repo.max_entry, false).await?;
            Some(spooled)
        }
    };
    busy.0.state().block_done(&slot, own);
    Ok(created(None))
}

async fn put_block_list(
    repo: &ActionsRepo,
    busy: &Busy,
    req: RepoRequest,
) -> Result<Response<Body>, UploadError> {
    let body = req.body.bytes(MAX_BLOCK_LIST).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| UploadError::Invalid("the block list is not UTF-8".into()))?;
    let ids = block_list_ids(text)?;
    let staging = busy.0.state().staging.take();
    let committed = match staging {
        Some(staging) => {
            upload::commit_blocks(repo.engine.store(), &repo.budget, staging, ids).await?
        }
        None if ids.is_empty() => {
            let store = repo.engine.store().clone();
            let spooled = upload::empty(&store, &repo.budget)?;
            let digest = wharf_store::Digest::of(b"");
            tokio::task::spawn_blocking(move || upload::commit(&store, spooled, digest, 0))
                .await
                .map_err(|e| UploadError::Io(std::io::Error::other(e.to_string())))??
        }
        None => {
            return Err(UploadError::Invalid(
                "the block list names blocks but none were staged".into(),
            ))
        }
    };
    busy.0.state().committed = Some(committed);
    Ok(created(Some(&committed)))
}

/// The ids of a `<BlockList>`, in order (`Latest`, `Uncommitted` and `Committed` alike).
pub fn block_list_ids(xml: &str) -> Result<Vec<String>, UploadError> {
    let mut ids = Vec::new();
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('>') else { break };
        let tag = &rest[..close];
        rest = &rest[close + 1..];
        if matches!(tag, "Latest" | "Uncommitted" | "Committed") {
            let end = rest
                .find("</")
                .ok_or_else(|| UploadError::Invalid("the block list is not well-formed".into()))?;
            ids.push(rest[..end].trim().to_string());
            if ids.len() > MAX_BLOCKS {
                return Err(UploadError::Invalid(format!(
                    "a block list names at most {MAX_BLOCKS} blocks"
                )));
            }
        }
    }
    if !xml.contains("<BlockList") {
        return Err(UploadError::Invalid("the body is not a BlockList".into()));
    }
    Ok(ids)
}

fn created(committed: Option<&upload::Committed>) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::CREATED;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    h.insert(
        "x-ms-request-server-encrypted",
        HeaderValue::from_static("false"),
    );
    if let Some(c) = committed {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "\"0x{}\"",
            &c.digest.to_hex()[..16].to_ascii_uppercase()
        )) {
            h.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now()))
        {
            h.insert(header::LAST_MODIFIED, v);
        }
    }
    common_headers(h);
    resp
}

fn common_headers(h: &mut HeaderMap) {
    h.insert("x-ms-version", HeaderValue::from_static(API_VERSION));
    if let Ok(v) = HeaderValue::from_str(&crate::upload::new_id()) {
        h.insert("x-ms-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())) {
        h.insert(header::DATE, v);
    }
}

fn upload_error(e: UploadError) -> Response<Body> {
    let (status, code) = match &e {
        UploadError::Body(b) => (b.status(), "InvalidInput"),
        UploadError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "RequestBodyTooLarge"),
        UploadError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "ServerBusy"),
        UploadError::Invalid(_) => (StatusCode::BAD_REQUEST, "InvalidInput"),
        UploadError::Store(_) | UploadError::Io(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
        }
    };
    let mut resp = error(status, code, &e.to_string());
    if matches!(e, UploadError::Body(_)) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The blob API's error: XML with `Code` and `Message`, and the code in `x-ms-error-code`.
pub(crate) fn error(status: StatusCode, code: &'static str, message: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{}</Message></Error>",
        wharf_text::html_escape(message)
    );
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    h.insert("x-ms-error-code", HeaderValue::from_static(code));
    common_headers(h);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_keep_their_order() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>QUFB</Latest><Uncommitted>QkJC</Uncommitted><Latest> Q0ND </Latest></BlockList>"#;
        assert_eq!(block_list_ids(xml).unwrap(), vec!["QUFB", "QkJC", "Q0ND"]);
        assert!(block_list_ids("<Other/>").is_err());
        assert!(block_list_ids("<BlockList><Latest>x").is_err());
    }
}
