//! `/connection/sse` with curl: events with positions as ids, `Last-Event-ID` resume for one and
//! several channels, refusals.

use protolab_hub::auth::JwtVerifier;
use protolab_test_support::Peer;

use crate::{publish_n, token, TestHub, JWT_SECRET};

#[derive(Debug, Default, Clone)]
pub(crate) struct SseEvent {
    pub(crate) id: Option<String>,
    pub(crate) event: String,
    pub(crate) data: serde_json::Value,
}

/// Reads `url` with curl for `seconds` (curl's --max-time ends it) and parses the events.
pub(crate) async fn read_sse(
    url: &str,
    headers: &[String],
    seconds: &str,
) -> (String, Vec<SseEvent>) {
    let mut args = vec![
        "-sN".to_owned(),
        "--max-time".to_owned(),
        seconds.to_owned(),
        "-D".to_owned(),
        "/dev/stderr".to_owned(),
    ];
    for header in headers {
        args.extend(["-H".to_owned(), header.clone()]);
    }
    args.push(url.to_owned());
    let output = Peer::Curl.command(&args).output().await.expect("curl runs");
    let head = String::from_utf8_lossy(&output.stderr).into_owned();
    let mut events = Vec::new();
    for block in String::from_utf8_lossy(&output.stdout).split("\n\n") {
        let mut event = SseEvent::default();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(id) = line.strip_prefix("id: ") {
                event.id = Some(id.to_owned());
            } else if let Some(name) = line.strip_prefix("event: ") {
                event.event = name.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
        if !event.event.is_empty() {
            event.data = serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data));
            events.push(event);
        }
    }
    (head, events)
}

pub(crate) fn notification_offsets(events: &[SseEvent], channel: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.event == "notification" && e.data["channel"] == channel)
        .filter_map(|e| e.data["offset"].as_u64())
        .collect()
}

#[tokio::test]
async fn last_event_id_resumes_one_channel_and_several() {
    let hub = TestHub::start(|_, _| {}).await;
    publish_n(&hub, "ops", 3, None).await;
    let url = format!("{}/connection/sse?channel=ops", hub.base);
    let (head, events) = read_sse(&url, &["Last-Event-ID: start".to_owned()], "1").await;
    assert!(head.contains("text/event-stream"), "{head}");
    assert_eq!(events[0].event, "subscribed");
    assert_eq!(notification_offsets(&events, "ops"), vec![1, 2, 3]);
    let last_id = events.last().and_then(|e| e.id.clone()).expect("an id");
    let epoch = events[1].data["epoch"].as_str().expect("epoch").to_owned();
    assert_eq!(last_id, format!("{epoch}:3"));

    publish_n(&hub, "ops", 2, None).await;
    let (_, events) = read_sse(&url, &[format!("Last-Event-ID: {last_id}")], "1").await;
    assert_eq!(
        notification_offsets(&events, "ops"),
        vec![4, 5],
        "{events:?}"
    );
    assert_eq!(events[0].data["recovered"], true);

    // two channels: the id carries both positions, and one id resumes both
    publish_n(&hub, "x", 1, None).await;
    let both = format!("{}/connection/sse?channel=ops&channel=x", hub.base);
    let (_, events) = read_sse(&both, &[], "1").await;
    let id = events.last().and_then(|e| e.id.clone()).expect("an id");
    assert!(id.contains("ops@") && id.contains(",x@"), "{id}");
    publish_n(&hub, "ops", 1, None).await;
    publish_n(&hub, "x", 2, None).await;
    let (_, events) = read_sse(&both, &[format!("Last-Event-ID: {id}")], "1").await;
    assert_eq!(
        (
            notification_offsets(&events, "ops"),
            notification_offsets(&events, "x")
        ),
        (vec![6], vec![2, 3]),
        "{events:?}"
    );
    // `since=` does the same for clients that cannot set headers
    let (_, events) = read_sse(&format!("{url}&since={epoch}:4"), &[], "1").await;
    assert_eq!(notification_offsets(&events, "ops"), vec![5, 6]);
}

#[tokio::test]
async fn refused_sse_subscribers_get_nothing() {
    let hub = TestHub::start(|_, app| {
        app.jwt = Some(JwtVerifier::hs256(JWT_SECRET).expect("secret"));
    })
    .await;
    publish_n(&hub, "ops", 1, None).await;
    let url = |token: &str| format!("{}/connection/sse?channel=ops&token={token}", hub.base);
    for (url, headers, status) in [
        (url(&token(&["x"], 60)), vec![], "403"),
        (url(&token(&["ops"], -120)), vec![], "401"),
        (
            url(&token(&["ops"], 60)),
            vec!["Origin: https://evil.example".to_owned()],
            "403",
        ),
        (
            url(&token(&["ops"], 60)),
            vec!["Last-Event-ID: garbage".to_owned()],
            "400",
        ),
    ] {
        let (head, events) = read_sse(&url, &headers, "2").await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{url}: {head}"
        );
        assert!(events.is_empty(), "{events:?}");
    }
    let (_, events) = read_sse(
        &url(&token(&["ops"], 60)),
        &["Last-Event-ID: start".to_owned()],
        "1",
    )
    .await;
    assert_eq!(notification_offsets(&events, "ops"), vec![1]);
}
