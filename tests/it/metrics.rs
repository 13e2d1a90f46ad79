//! `/metrics` over real HTTPS (issue 11): not served without a token, 401 without the right
//! one, and with it the Prometheus text of what the server just did: requests by route,
//! operation and status, the certificate issued by account and profile, the group commit
//! that stored it, a throttle refusal, the pool, the outbox and the open connections.

use std::collections::BTreeMap;

use estgate_bench::{basic_auth, make_csrs, Response};
use estgate_protocol::transfer;

use crate::support::{single_cert, start, start_with, Server};

const TOKEN: &str = "it-metrics-token-0123456789";
const DEVICES: &str = "/.well-known/est/devices/simpleenroll";

async fn get_metrics(s: &Server, authorization: Option<&str>) -> Response {
    let mut c = s.connect().await;
    let mut headers = vec![("User-Agent", "estgate-tests")];
    if let Some(a) = authorization {
        headers.push(("Authorization", a));
    }
    c.request("GET", "/metrics", &headers, b"").await.unwrap()
}

async fn enroll(s: &Server, user: &str, pass: &str) -> Response {
    let (csr, _) = make_csrs("ec-p256", "meter-1.example.org", 1)
        .unwrap()
        .remove(0);
    let body = transfer::encode_base64(&csr, transfer::Wrap::Columns64);
    let mut c = s.connect().await;
    c.request(
        "POST",
        DEVICES,
        &[
            ("Content-Type", "application/pkcs10"),
            ("Authorization", &basic_auth(user, pass)),
            ("User-Agent", "estgate-tests"),
        ],
        body.as_bytes(),
    )
    .await
    .unwrap()
}

/// Every sample line `name{labels} value`, checked against the text format on the way:
/// each family has its HELP and TYPE before its first sample, each value is a number.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut typed = std::collections::BTreeSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in {line:?}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "no TYPE before {line:?}");
        assert!(
            out.insert(series.to_string(), value).is_none(),
            "{series} twice"
        );
    }
    out
}

#[tokio::test]
async fn metrics_are_not_served_without_a_token_configured() {
    let s = start().await;
    let r = get_metrics(&s, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(r.status, 404, "{}", r.body_text());
    s.stop().await;
}

#[tokio::test]
async fn metrics_need_the_configured_bearer_token() {
    let s = start_with(&[("ESTGATE_METRICS_TOKEN", TOKEN)]).await;
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789abc".to_string()),
        Some(format!("Basic {TOKEN}")),
        Some(basic_auth("prometheus", TOKEN)),
    ] {
        let r = get_metrics(&s, auth.as_deref()).await;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.body_text());
        assert_eq!(
            r.header("WWW-Authenticate"),
            Some("Bearer realm=\"estgate metrics\"")
        );
        assert!(!r.body_text().contains("# TYPE"), "{}", r.body_text());
    }
    s.stop().await;
}

#[tokio::test]
async fn metrics_count_what_the_server_did() {
    let s = start_with(&[
        ("ESTGATE_METRICS_TOKEN", TOKEN),
        // Two failures from one address, and the third guess is refused unchecked.
        ("ESTGATE_FAILURES_PER_CLIENT", "2"),
    ])
    .await;
    let (user, code) = s.password("devices");
    let r = enroll(&s, &user, &code).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    single_cert(&r);
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(enroll(&s, &user, "not-the-code").await.status);
        }
        v
    };
    assert_eq!(statuses, [401, 401, 429]);

    let r = get_metrics(&s, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.body_text();
    assert!(!text.contains(TOKEN), "the token is echoed");
    assert!(!text.contains(&code), "the access code is in the metrics");
    let m = samples(&text);
    let at = |series: &str| -> f64 {
        *m.get(series)
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    let enroll_series = |status: u16| {
        format!(
            "estgate_http_request_duration_seconds_count{{route=\"/.well-known/est/{{label}}/{{op}}\",op=\"simpleenroll\",status=\"{status}\"}}"
        )
    };
    assert_eq!(at(&enroll_series(200)), 1.0);
    assert_eq!(at(&enroll_series(401)), 2.0);
    assert_eq!(at(&enroll_series(429)), 1.0);
    // The histogram's buckets are cumulative and end at the count.
    let inf = enroll_series(401)
        .replace("_count{", "_bucket{")
        .replace("status=\"401\"}", "status=\"401\",le=\"+Inf\"}");
    assert_eq!(at(&inf), 2.0);
    assert_eq!(
        at("estgate_certificates_issued_total{account=\"Devices\",profile=\"device\"}"),
        1.0
    );
    assert_eq!(at("estgate_guesses_refused_total{reason=\"locked\"}"), 1.0);
    assert_eq!(at("estgate_guesses_refused_total{reason=\"busy\"}"), 0.0);
    assert!(at("estgate_group_commits_total") >= 1.0);
    assert_eq!(at("estgate_group_commit_failures_total"), 0.0);
    assert!(at("estgate_group_commit_size_count") >= 1.0);
    assert!(at("estgate_group_commit_duration_seconds_count") >= 1.0);
    // The scrape's own connection is open while it is answered.
    assert!(at("estgate_connections_open") >= 1.0);
    assert_eq!(
        at("estgate_connections_refused_total{cap=\"max_connections\"}"),
        0.0
    );
    assert!(at("estgate_db_pool_connections{pool=\"main\",state=\"max\"}") >= 1.0);
    assert!(at("estgate_db_pool_connections{pool=\"main\",state=\"open\"}") >= 1.0);
    // SQLite reads on the request path go to a pool of their own.
    if s.config.database_url.starts_with("sqlite:") {
        assert!(at("estgate_db_pool_connections{pool=\"reader\",state=\"open\"}") >= 1.0);
    }
    // The demo queues no mail on EST enrollment: both gauges are there, at their value.
    let store = s.store().await;
    assert_eq!(
        at("estgate_outbox_pending"),
        store.outbox_pending().await.unwrap() as f64
    );
    assert_eq!(at("estgate_outbox_failing"), 0.0);
    s.stop().await;
}
