//! Money saved: bytes served without an upstream fetch, priced at `price_per_gb`, in `/status`, the web UI's
//! first screen, `/metrics`, and `wharf egress report` over wharf's own access log.

use crate::support::*;
use wharf_testkit::{wheel_with_payload, Project, PypiUpstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_served_from_the_cache_are_priced_everywhere_wharf_reports() {
    let whl = wheel_with_payload("big", "1.0", 3 << 20, 7);
    let size = whl.bytes.len() as u64;
    let up = PypiUpstream::start(vec![Project::new("big", vec![whl.clone()])]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "price_per_gb: 100",
    );
    let client = http();
    let path = format!("/pypi/files/big/{}", whl.filename);
    for expected in ["miss", "hit", "hit"] {
        let resp = client.get(wharf.url(&path)).send().await.expect("get");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-wharf-cache"], expected);
        assert_eq!(resp.bytes().await.expect("body").len() as u64, size);
    }
    wharf.wait_log(|r| r["path"] == path.as_str() && r["cache"] == "hit");
    let per_byte = 100.0 / (1u64 << 30) as f64;

    let status: serde_json::Value = client
        .get(wharf.url("/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    let savings = &status["savings"];
    assert_eq!(savings["price_per_gb"], 100.0, "{savings}");
    assert_eq!(savings["bytes_saved"].as_u64(), Some(2 * size), "{savings}");
    let saved = savings["saved_usd"].as_f64().expect("saved_usd");
    assert!(
        (saved - 2.0 * size as f64 * per_byte).abs() < 1e-4,
        "{savings}"
    );
    let without = savings["without_wharf_usd"].as_f64().expect("usd");
    assert!(
        (without - 3.0 * size as f64 * per_byte).abs() < 1e-4,
        "{savings}"
    );

    let page = client
        .get(wharf.url("/"))
        .send()
        .await
        .expect("ui")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains(&format!("id=\"money-saved\">{}<", wharf_text_usd(saved))),
        "{page}"
    );

    let metrics = client
        .get(wharf.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("wharf_price_per_gb_usd 100.0"),
        "{metrics}"
    );
    let gauge = metrics
        .lines()
        .find(|l| l.starts_with("wharf_saved_usd{repo=\"pypi\"}"))
        .expect("wharf_saved_usd");
    let value: f64 = gauge.rsplit(' ').next().unwrap().parse().expect("number");
    assert!(
        (value - 2.0 * size as f64 * per_byte).abs() < 1e-6,
        "{gauge}"
    );

    // The access log, as a file, through `wharf egress report`.
    let log = tmp.path().join("access.log");
    let lines: Vec<String> = wharf.access_log().iter().map(|r| r.to_string()).collect();
    std::fs::write(&log, lines.join("\n") + "\n").expect("write");
    let out = std::process::Command::new(WHARF)
        .args(["egress", "report", "--price-per-gb", "100"])
        .arg(&log)
        .output()
        .expect("egress");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sentence = format!(
        "wharf saved {} of the {} this traffic would have cost",
        wharf_text_usd(2.0 * size as f64 * per_byte),
        wharf_text_usd(3.0 * size as f64 * per_byte)
    );
    assert!(text.contains(&sentence), "{sentence}\n{text}");
}

/// `$X.YY` as wharf writes amounts of a cent or more.
fn wharf_text_usd(usd: f64) -> String {
    format!("${usd:.2}")
}
