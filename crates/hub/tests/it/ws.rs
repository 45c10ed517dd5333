//! `/connection/ws` with Python `websockets`: delivery, exact recovery after a reconnect, JWT and
//! Origin refusals with nothing delivered, and a slow subscriber closed with 4008 while a fast
//! one gets everything.

use std::time::Duration;

use protolab_hub::auth::JwtVerifier;

use crate::{offsets, post, publish_n, python_subscriber, token, TestHub, JWT_SECRET};

pub(crate) fn subscribe(channels: &[(&str, Option<String>)]) -> String {
    let list: Vec<serde_json::Value> = channels
        .iter()
        .map(|(channel, since)| match since {
            Some(since) => serde_json::json!({ "channel": channel, "since": since }),
            None => serde_json::json!({ "channel": channel }),
        })
        .collect();
    serde_json::json!({ "type": "subscribe", "id": 1, "channels": list }).to_string()
}

pub(crate) fn args(url: &str, extra: &[&str]) -> Vec<String> {
    std::iter::once(url)
        .chain(extra.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// `EPOCH:OFFSET` of the last notification on `channel`.
pub(crate) fn last_position(messages: &[serde_json::Value], channel: &str) -> String {
    let last = messages
        .iter()
        .rev()
        .find(|m| m["type"] == "notification" && m["channel"] == channel)
        .expect("a notification on the channel");
    format!(
        "{}:{}",
        last["epoch"].as_str().expect("epoch"),
        last["offset"]
    )
}

#[tokio::test]
async fn a_returning_subscriber_gets_exactly_what_it_missed() {
    let hub = TestHub::start(|_, _| {}).await;
    publish_n(&hub, "ops", 3, None).await;
    publish_n(&hub, "x", 2, None).await;
    let url = hub.ws_url("");
    let first = python_subscriber(&args(
        &url,
        &[
            "--send",
            &subscribe(&[("ops", Some("start".into())), ("x", Some("start".into()))]),
            "--notifications",
            "5",
        ],
    ))
    .await;
    assert_eq!(
        (offsets(&first, "ops"), offsets(&first, "x")),
        (vec![1, 2, 3], vec![1, 2]),
        "{first:?}"
    );
    assert!(first
        .iter()
        .any(|m| m["type"] == "subscribed" && m["recovered"] == true));

    // while it is away
    publish_n(&hub, "ops", 4, None).await;
    publish_n(&hub, "x", 1, None).await;
    let command = subscribe(&[
        ("ops", Some(last_position(&first, "ops"))),
        ("x", Some(last_position(&first, "x"))),
    ]);
    let second = {
        let args = args(&url, &["--send", &command, "--notifications", "6"]);
        let subscriber = tokio::spawn(async move { python_subscriber(&args).await });
        // and one live notification once it is back
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while hub
            .state
            .metrics
            .connections(protolab_hub::metrics::Transport::WebSocket)
            == 0
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the subscriber did not connect"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        publish_n(&hub, "ops", 1, None).await;
        subscriber.await.expect("subscriber")
    };
    assert_eq!(offsets(&second, "ops"), vec![4, 5, 6, 7, 8], "{second:?}");
    assert_eq!(offsets(&second, "x"), vec![3], "{second:?}");
    let recovered: Vec<_> = second
        .iter()
        .filter(|m| m["type"] == "subscribed")
        .map(|m| m["recovered"].clone())
        .collect();
    assert_eq!(recovered, [true, true]);

    // a position from another epoch cannot be recovered, and the hub says so
    let stale = python_subscriber(&args(
        &url,
        &[
            "--send",
            &subscribe(&[("ops", Some("0badc0de:2".into()))]),
            "--notifications",
            "8",
        ],
    ))
    .await;
    assert!(
        stale
            .iter()
            .any(|m| m["type"] == "subscribed" && m["recovered"] == false),
        "{stale:?}"
    );
    assert_eq!(offsets(&stale, "ops"), (1..=8).collect::<Vec<u64>>());
}

#[tokio::test]
async fn tokens_and_origins_are_checked_and_refused_clients_get_nothing() {
    let hub = TestHub::start(|_, app| {
        app.jwt = Some(JwtVerifier::hs256(JWT_SECRET).expect("secret"));
        app.origins = protolab_hub::auth::OriginPolicy::new(&["https://gui.example".to_owned()]);
    })
    .await;
    publish_n(&hub, "ops", 2, None).await;
    let command = subscribe(&[("ops", Some("start".into()))]);
    let wait = [
        "--send",
        command.as_str(),
        "--notifications",
        "1",
        "--timeout",
        "3",
    ];

    let other = hub.ws_url(&format!("?token={}", token(&["alerts.*"], 60)));
    let refused = python_subscriber(&args(&other, &wait)).await;
    assert!(
        refused
            .iter()
            .any(|m| m["type"] == "error" && m["code"] == 403 && m["channel"] == "ops"),
        "{refused:?}"
    );
    assert!(offsets(&refused, "ops").is_empty(), "{refused:?}");

    let expired = hub.ws_url(&format!("?token={}", token(&["ops"], -120)));
    let refused = python_subscriber(&args(&expired, &wait)).await;
    assert_eq!(refused[0]["type"], "refused");
    assert_eq!(refused[0]["status"], 401, "{refused:?}");
    let refused = python_subscriber(&args(&hub.ws_url(""), &wait)).await;
    assert_eq!(refused[0]["status"], 401, "{refused:?}");

    let good = hub.ws_url(&format!("?token={}", token(&["ops"], 60)));
    let mut foreign = vec!["--origin", "https://evil.example"];
    foreign.extend(wait);
    let refused = python_subscriber(&args(&good, &foreign)).await;
    assert_eq!(refused[0]["status"], 403, "{refused:?}");
    assert_eq!(refused.len(), 1);

    // the same token in the Authorization header, from the allowed page, gets everything
    let bearer = token(&["ops"], 60);
    let mut allowed = vec![
        "--origin",
        "https://gui.example",
        "--bearer",
        bearer.as_str(),
    ];
    allowed.extend(["--send", command.as_str(), "--notifications", "2"]);
    let got = python_subscriber(&args(&hub.ws_url(""), &allowed)).await;
    assert_eq!(offsets(&got, "ops"), vec![1, 2], "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_closed_with_4008_and_the_fast_one_gets_everything() {
    const BATCHES: usize = 15;
    const PER_BATCH: usize = 100;
    let hub = TestHub::start(|_, app| {
        app.limits.write_timeout = Duration::from_millis(500);
        app.limits.max_batch_bytes = 4 << 20;
    })
    .await;
    let url = hub.ws_url("");
    let command = subscribe(&[("bulk", None)]);
    let total = (BATCHES * PER_BATCH).to_string();
    let fast_args = args(
        &url,
        &[
            "--send",
            &command,
            "--notifications",
            &total,
            "--quiet",
            "--timeout",
            "60",
        ],
    );
    let slow_args = args(
        &url,
        &[
            "--send",
            &command,
            "--stall",
            "3",
            "--quiet",
            "--timeout",
            "60",
        ],
    );
    let fast = tokio::spawn(async move { python_subscriber(&fast_args).await });
    let slow = tokio::spawn(async move { python_subscriber(&slow_args).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hub
        .state
        .hub
        .channels()
        .first()
        .map_or(0, |c| c.subscribers)
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscribers did not subscribe"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // about 20 KiB each: far more than the socket buffers between the hub and a client that
    // stopped reading
    let item = serde_json::json!({ "channel": "bulk", "level": "info", "body": "b".repeat(4000), "data": "d".repeat(15_000) });
    let batch = serde_json::Value::Array(vec![item; PER_BATCH]).to_string();
    for _ in 0..BATCHES {
        let (status, json) = post(&hub, "/api/batch", &batch, None).await;
        assert_eq!(status, 202, "{json}");
    }
    let fast = fast.await.expect("fast");
    let slow = slow.await.expect("slow");
    assert_eq!(
        offsets(&fast, "bulk"),
        (1..=(BATCHES * PER_BATCH) as u64).collect::<Vec<_>>()
    );
    let closed = slow.last().expect("the slow subscriber printed");
    assert_eq!(
        (closed["type"].as_str(), closed["code"].as_u64()),
        (Some("closed"), Some(4008)),
        "{closed}"
    );
    assert!(closed["reason"]
        .as_str()
        .is_some_and(|r| r.contains("slow subscriber")));
    let got = offsets(&slow, "bulk");
    assert!(
        got.len() < BATCHES * PER_BATCH,
        "the slow subscriber got everything"
    );
    assert_eq!(
        got,
        (1..=got.len() as u64).collect::<Vec<_>>(),
        "what it got is in order without gaps"
    );
    let metrics = hub.state.metrics.render(&hub.state.hub);
    assert!(
        metrics
            .contains("protolab_hub_slow_subscriber_disconnects_total{transport=\"websocket\"} 1"),
        "{metrics}"
    );
}
