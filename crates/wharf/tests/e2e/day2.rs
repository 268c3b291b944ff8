//! Day 2 in a cluster (issue #22), with the real binary: secrets rotated under a running server, a store
//! that fills up or cannot write, purges that hold for every replica, upstreams that move, repairs.

use std::time::{Duration, Instant};

use crate::support::*;

const TOKEN_A: &str = "first-admin-token-0123456789";
const TOKEN_B: &str = "second-admin-token-0123456789";

async fn purge_status(wharf: &Wharf, token: &str) -> u16 {
    http()
        .post(wharf.url("/admin/purge?repo=files&all=true"))
        .bearer_auth(token)
        .send()
        .await
        .expect("purge")
        .status()
        .as_u16()
}

/// Polls `probe` until it returns `want` or `within` passes; returns what it saw last.
async fn eventually<T: PartialEq + std::fmt::Debug, F: std::future::Future<Output = T>>(
    within: Duration,
    want: T,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let seen = probe().await;
        if seen == want || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The admin token file is re-read when it changes, the way a Kubernetes Secret volume changes it (a new
/// file renamed over the old name): the old token stops working and the new one works, no restart.
#[tokio::test]
async fn a_rotated_admin_token_file_is_used_without_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let token_file = tmp.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN_A}\n")).expect("token");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        "  files:\n    format: generic\n    upstream: \"http://127.0.0.1:9/\"\n",
        &format!("admin:\n  token_file: \"{}\"", token_file.display()),
    );
    assert_eq!(purge_status(&wharf, TOKEN_A).await, 200);
    assert_eq!(purge_status(&wharf, TOKEN_B).await, 401);

    let next = tmp.path().join("admin-token.new");
    std::fs::write(&next, format!("{TOKEN_B}\n")).expect("token");
    std::fs::rename(&next, &token_file).expect("rotate");
    let seen = eventually(Duration::from_secs(10), 200, || {
        purge_status(&wharf, TOKEN_B)
    })
    .await;
    assert_eq!(seen, 200, "the new token is accepted after rotation");
    assert_eq!(
        purge_status(&wharf, TOKEN_A).await,
        401,
        "the old one is not"
    );

    // A rotation that goes wrong (an empty file) keeps the last good token rather than locking out.
    std::fs::write(&token_file, "").expect("truncate");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(purge_status(&wharf, TOKEN_B).await, 200);
    let logs = wharf.stderr.lock().expect("lock").join("\n");
    assert!(
        logs.contains("admin.token_file") && logs.contains("keeping the last good value"),
        "{logs}"
    );
    assert!(
        !logs.contains(TOKEN_A) && !logs.contains(TOKEN_B),
        "tokens are never logged"
    );
}
