//! Stored files sent with `sendfile` (`server.sendfile`, on by default) answer exactly like the copying path:
//! two instances over the same upstream, one with `sendfile: false`, give the same status, headers (all but
//! `Date`) and bytes for a full `GET`, `HEAD`, ranges (unaligned, suffix, unsatisfiable), `If-Range` and
//! `If-None-Match`; the counter `wharf_http_sendfile_bytes_total` shows the bytes really went by `sendfile` on
//! one and not the other, and the access log counts them the same.

use crate::support::*;
use wharf_testkit::FixtureUpstream;

const PATH: &str = "/rel/releases/download/v1/tool.bin";

/// A request (method, headers) and the body it must get, when the test knows it.
type Case<'a> = (reqwest::Method, Vec<(&'a str, &'a str)>, Option<&'a [u8]>);

fn repo(upstream: &str) -> String {
    format!("  rel:\n    format: generic\n    upstream: \"{upstream}files/\"\n    immutable: [\"**\"]\n")
}

/// Status, headers without `Date`, and body of a request with `headers`.
async fn answer(
    wharf: &Wharf,
    method: reqwest::Method,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut req = http().request(method, wharf.url(PATH));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let mut kept: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    kept.sort();
    (status, kept, resp.bytes().await.expect("body").to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_files_sent_with_sendfile_answer_like_the_copying_path() {
    let up = FixtureUpstream::start().await;
    // Several pages, and not a whole number of them.
    let data: Vec<u8> = (0..3_000_017u32).map(|i| (i % 251) as u8).collect();
    up.put(
        "/files/releases/download/v1/tool.bin",
        data.clone(),
        "application/octet-stream",
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let on = Wharf::start(&tmp.path().join("on"), &repo(&up.url()), "");
    let off = Wharf::start(
        &tmp.path().join("off"),
        &repo(&up.url()),
        "server:\n  sendfile: false",
    );
    // Fill both caches; what follows are hits.
    for wharf in [&on, &off] {
        let (status, _, body) = answer(wharf, reqwest::Method::GET, &[]).await;
        assert_eq!(status, 200);
        assert_eq!(body, data);
    }
    assert_eq!(up.requests_for("/files/releases/download/v1/tool.bin"), 2);
    let before = sendfile_bytes(&on).await;
    let etag = answer(&on, reqwest::Method::HEAD, &[])
        .await
        .1
        .into_iter()
        .find(|(n, _)| n == "etag")
        .map(|(_, v)| v);
    let if_range = etag.clone().unwrap_or_else(|| "\"nope\"".into());
    let cases: Vec<Case> = vec![
        (reqwest::Method::GET, vec![], Some(&data[..])),
        (reqwest::Method::HEAD, vec![], Some(&[][..])),
        (
            reqwest::Method::GET,
            vec![("range", "bytes=1000-2999999")],
            Some(&data[1000..3_000_000]),
        ),
        (
            reqwest::Method::GET,
            vec![("range", "bytes=-5000")],
            Some(&data[data.len() - 5000..]),
        ),
        (
            reqwest::Method::GET,
            vec![("range", "bytes=99999999-")],
            None,
        ),
        (
            reqwest::Method::GET,
            vec![("range", "bytes=4097-8191"), ("if-range", &if_range)],
            None,
        ),
        (
            reqwest::Method::GET,
            vec![("if-none-match", etag.as_deref().unwrap_or("\"x\""))],
            None,
        ),
        (
            reqwest::Method::HEAD,
            vec![("range", "bytes=0-9")],
            Some(&[][..]),
        ),
    ];
    for (method, headers, want) in &cases {
        let with = answer(&on, method.clone(), headers).await;
        let without = answer(&off, method.clone(), headers).await;
        assert_eq!(with, without, "{method} {headers:?}: sendfile vs copying");
        if let Some(want) = want {
            assert_eq!(&with.2[..], *want, "{method} {headers:?}: bytes");
        }
        assert!(
            with.1
                .iter()
                .any(|(n, v)| n == "x-wharf-cache" && v == "hit"),
            "{method} {headers:?}: {:?}",
            with.1
        );
    }
    let sent = sendfile_bytes(&on).await - before;
    // At least the full body and the two ranges went by sendfile (the small If-Range one may, too).
    let least = (data.len() + 2_999_000 + 5000) as u64;
    assert!(
        sent >= least,
        "sent {sent} bytes with sendfile, want >= {least}"
    );
    assert_eq!(sendfile_bytes(&off).await, 0, "sendfile: false copies");
    // The access log counts a sendfile response like any other.
    let line = on.wait_log(|r| {
        r["path"] == PATH && r["cache"] == "hit" && r["bytes_sent"] == data.len() as u64
    });
    assert_eq!(line["status"], 200);
    assert!(line.get("incomplete").is_none(), "{line}");
}
