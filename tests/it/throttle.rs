//! Bounds on guessing over real HTTPS (issue 10): beyond the Argon2 verification slots and
//! their queue a guess is answered `503` with `Retry-After` at once, and is not counted.

use estgate_bench::{basic_auth, Connection};

use crate::support::start_with;

const STAFF: &str = "/.well-known/est/staff/simpleenroll";

/// Wrong secrets, each for another (unknown) person so that no per-person turn lines them
/// up, sent on connections opened beforehand so that they arrive together.
async fn burst(connections: Vec<Connection>, round: usize) -> Vec<estgate_bench::Response> {
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            tokio::spawn(async move {
                let auth = basic_auth(&format!("guess-{round}-{i}@example.org"), "wrong");
                c.request(
                    "POST",
                    STAFF,
                    &[
                        ("Content-Type", "application/pkcs10"),
                        ("Authorization", &auth),
                        ("User-Agent", "estgate-tests"),
                    ],
                    b"MIIB",
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_beyond_the_verification_slots_get_503_and_are_not_counted() {
    let s = start_with(&[
        ("ESTGATE_ARGON2_CONCURRENCY", "1"),
        ("ESTGATE_ARGON2_QUEUE", "0"),
        // High enough that no count stops the burst before the slots do.
        ("ESTGATE_FAILURES_PER_CLIENT", "1000"),
        ("ESTGATE_FAILURES_PER_ACCOUNT", "1000"),
    ])
    .await;
    let (mut unauthorized, mut busy) = (0u64, Vec::new());
    // Twelve guesses at once meet a single slot; a few rounds make sure of an overlap
    // however the scheduler happens to run them.
    for round in 0..5 {
        let mut connections = Vec::new();
        for _ in 0..12 {
            connections.push(s.connect().await);
        }
        for r in burst(connections, round).await {
            match r.status {
                401 => unauthorized += 1,
                503 => busy.push(r),
                other => panic!("unexpected {other}: {}", r.body_text()),
            }
        }
        if !busy.is_empty() {
            break;
        }
    }
    assert!(!busy.is_empty(), "no guess was refused for want of a slot");
    for r in &busy {
        // Title-Case, as libest's client reads it; a second is what a slot takes to free up.
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| n == "Retry-After" && v == "1"));
        // The sentence, then the request's reference (`web/observe.rs`).
        assert!(
            r.body_text().starts_with(
                "the server is busy checking other secrets; try again in a moment (reference "
            ),
            "{}",
            r.body_text()
        );
    }
    // Only the guesses that were verified are on record: one failure each under the
    // client address, none for the ones refused 503.
    let store = s.store().await;
    let (recorded, _) = store
        .recent_failures(0, "client:127.0.0.1", 0)
        .await
        .unwrap();
    assert_eq!(recorded, unauthorized, "{} refused 503", busy.len());
    s.stop().await;
}
