//! A subscriber whose token expires is disconnected then, with a reason (WebSocket close 4001,
//! SSE a final `error` event), and comes back with a fresh token to exactly what it missed.
//! Tokens expire 2 s after they are made; the hub allows 5 s of clock leeway, so it closes
//! about 7 s in, when it would refuse the token on a reconnect.

use std::time::{Duration, Instant};

use protolab_hub::auth::JwtVerifier;
use protolab_hub::metrics::Transport;

use crate::sse::{notification_offsets, read_sse};
use crate::ws::{args, last_position, subscribe};
use crate::{offsets, publish_n, python_subscriber, token, TestHub, JWT_SECRET};

/// The clock leeway [`JwtVerifier`] allows past `exp`.
const LEEWAY: Duration = Duration::from_secs(5);

async fn jwt_hub() -> TestHub {
    TestHub::start(|_, app| {
        app.jwt = Some(JwtVerifier::hs256(JWT_SECRET).expect("secret"));
    })
    .await
}

async fn wait_for_connection(hub: &TestHub, transport: Transport) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hub.state.metrics.connections(transport) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscriber did not connect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_subscriber_is_closed_when_its_token_expires_and_resumes_with_a_new_one() {
    let hub = jwt_hub().await;
    let short = token(&["ops"], 2);
    let started = Instant::now();
    let first_args = args(
        &hub.ws_url(&format!("?token={short}")),
        &["--send", &subscribe(&[("ops", None)]), "--timeout", "20"],
    );
    let first = tokio::spawn(async move { python_subscriber(&first_args).await });
    wait_for_connection(&hub, Transport::WebSocket).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish_n(&hub, "ops", 2, None).await;
    let first = first.await.expect("subscriber");
    let elapsed = started.elapsed();
    let closed = first.last().expect("the subscriber printed");
    assert_eq!(
        (closed["type"].as_str(), closed["code"].as_u64()),
        (Some("closed"), Some(4001)),
        "{first:?}"
    );
    assert!(
        closed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("token expired")),
        "{closed}"
    );
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(2) + LEEWAY * 2,
        "closed after {elapsed:?}"
    );
    assert_eq!(offsets(&first, "ops"), vec![1, 2]);

    // published while it is away; it comes back with a fresh token and its position
    publish_n(&hub, "ops", 1, None).await;
    let fresh = token(&["ops"], 60);
    let back = python_subscriber(&args(
        &hub.ws_url(&format!("?token={fresh}")),
        &[
            "--send",
            &subscribe(&[("ops", Some(last_position(&first, "ops")))]),
            "--notifications",
            "1",
            "--timeout",
            "10",
        ],
    ))
    .await;
    assert_eq!(offsets(&back, "ops"), vec![3], "{back:?}");
    assert!(
        back.iter()
            .any(|m| m["type"] == "subscribed" && m["recovered"] == true),
        "{back:?}"
    );

    // the expired token itself is refused now
    let refused = python_subscriber(&args(
        &hub.ws_url(&format!("?token={short}")),
        &["--timeout", "5"],
    ))
    .await;
    assert_eq!(refused[0]["status"], 401, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_stream_ends_with_an_error_event_when_its_token_expires_and_resumes() {
    let hub = jwt_hub().await;
    let short = token(&["ops"], 2);
    let url = format!("{}/connection/sse?channel=ops", hub.base);
    let started = Instant::now();
    let reader = {
        let url = format!("{url}&token={short}");
        // curl would stop at 20 s: a stream that outlives the token fails the timing below
        tokio::spawn(async move { read_sse(&url, &[], "20").await })
    };
    wait_for_connection(&hub, Transport::Sse).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish_n(&hub, "ops", 2, None).await;
    let (_, events) = reader.await.expect("curl");
    let elapsed = started.elapsed();
    assert_eq!(
        notification_offsets(&events, "ops"),
        vec![1, 2],
        "{events:?}"
    );
    let last = events.last().expect("events");
    assert_eq!(
        (last.event.as_str(), last.data["code"].as_u64()),
        ("error", Some(4001)),
        "{events:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(2) + LEEWAY * 2,
        "the stream ended after {elapsed:?}"
    );
    let last_id = events
        .iter()
        .rev()
        .find_map(|e| e.id.clone())
        .expect("an event id");

    publish_n(&hub, "ops", 1, None).await;
    let fresh = token(&["ops"], 60);
    let (_, back) = read_sse(
        &format!("{url}&token={fresh}"),
        &[format!("Last-Event-ID: {last_id}")],
        "1",
    )
    .await;
    assert_eq!(notification_offsets(&back, "ops"), vec![3], "{back:?}");
    assert_eq!(back[0].data["recovered"], true, "{back:?}");
}
