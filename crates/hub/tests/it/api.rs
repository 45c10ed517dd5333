//! The publish API with curl: auth, bad input naming the field, batches, history, OpenAPI,
//! metrics.

use std::process::Stdio;

use protolab_hub::auth::ApiKeys;
use protolab_test_support::Peer;
use tokio::io::AsyncWriteExt as _;

use crate::{curl, post, TestHub, API_KEY};

async fn keyed_hub() -> TestHub {
    TestHub::start(|_, app| {
        app.api_keys = Some(ApiKeys::parse(API_KEY).expect("key"));
    })
    .await
}

#[tokio::test]
async fn publishing_needs_the_key_and_refuses_bad_input_naming_the_field() {
    let hub = keyed_hub().await;
    let good = r#"{"channel":"ops","level":"error","title":"disk","body":"disk full"}"#;
    let (status, json) = post(&hub, "/api/publish", good, None).await;
    assert_eq!(status, 401, "{json}");
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("--api-key-file")),
        "{json}"
    );
    let (status, _) = post(&hub, "/api/publish", good, Some("wrong-key-0123456789")).await;
    assert_eq!(status, 401);
    let key = Some(API_KEY);
    for (body, field) in [
        (r#"{"channel":"ops","level":"#, "(body)"),
        (r#"{"channel":"ops","level":"fatal","body":"x"}"#, "level"),
        (
            r#"{"channel":"ops","level":"info","body":"x","colour":"red"}"#,
            "colour",
        ),
        (r#"{"channel":"o p","level":"info","body":"x"}"#, "channel"),
        (r#"{"level":"info","body":"x"}"#, "channel"),
        (r#"{"channel":"ops","level":"info"}"#, "body"),
    ] {
        let (status, json) = post(&hub, "/api/publish", body, key).await;
        assert_eq!(
            (status, json["field"].as_str()),
            (400, Some(field)),
            "{body}: {json}"
        );
    }
    let huge = format!(
        r#"{{"channel":"ops","level":"info","body":"{}"}}"#,
        "x".repeat(70_000)
    );
    let (status, json) = post(&hub, "/api/publish", &huge, key).await;
    assert_eq!(
        (status, json["field"].as_str()),
        (413, Some("(body)")),
        "{json}"
    );
    let long_body = format!(
        r#"{{"channel":"ops","level":"info","body":"{}"}}"#,
        "x".repeat(5000)
    );
    let (status, json) = post(&hub, "/api/publish", &long_body, key).await;
    assert_eq!(
        (status, json["field"].as_str()),
        (400, Some("body")),
        "{json}"
    );
    // nothing of the refused requests reached the hub
    assert!(hub.state.hub.channels().is_empty());
    assert_eq!(hub.state.hub.counts(), (0, 0));

    let (status, json) = post(&hub, "/api/publish", good, key).await;
    assert_eq!(
        (status, json["offset"].as_u64(), json["duplicate"].as_bool()),
        (202, Some(1), Some(false)),
        "{json}"
    );
    let keyed = r#"{"channel":"ops","level":"info","body":"once","idempotency_key":"k-1"}"#;
    let (_, first) = post(&hub, "/api/publish", keyed, key).await;
    let (status, again) = post(&hub, "/api/publish", keyed, key).await;
    assert_eq!(status, 202);
    assert_eq!(
        (first["offset"].as_u64(), again["offset"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(again["duplicate"], true);
}

#[tokio::test]
async fn batches_are_bounded_and_all_or_nothing() {
    let hub = TestHub::start(|_, app| app.limits.max_batch = 3).await;
    let item = |level: &str| format!(r#"{{"channel":"b","level":"{level}","body":"x"}}"#);
    let bad = format!("[{},{},{}]", item("info"), item("info"), item("nope"));
    let (status, json) = post(&hub, "/api/batch", &bad, None).await;
    assert_eq!(
        (status, json["field"].as_str()),
        (400, Some("[2].level")),
        "{json}"
    );
    let four = format!("[{}]", vec![item("info"); 4].join(","));
    let (status, json) = post(&hub, "/api/batch", &four, None).await;
    assert_eq!(
        (status, json["field"].as_str()),
        (413, Some("batch")),
        "{json}"
    );
    assert!(hub.state.hub.channels().is_empty());
    let three = format!("[{}]", vec![item("success"); 3].join(","));
    let (status, json) = post(&hub, "/api/batch", &three, None).await;
    assert_eq!(status, 202, "{json}");
    let offsets: Vec<u64> = json
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|p| p["offset"].as_u64())
        .collect();
    assert_eq!(offsets, [1, 2, 3]);

    // history pages forward from a position
    let (status, text) = curl(&[&format!("{}/api/history?channel=b&limit=2", hub.base)]).await;
    let page: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(status, 200, "{text}");
    let epoch = page["epoch"].as_str().expect("epoch");
    let got: Vec<u64> = page["notifications"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|n| n["offset"].as_u64())
        .collect();
    assert_eq!((got, page["recovered"].as_bool()), (vec![1, 2], Some(true)));
    let (_, text) = curl(&[&format!(
        "{}/api/history?channel=b&since={epoch}:2",
        hub.base
    )])
    .await;
    let rest: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(rest["notifications"][0]["offset"], 3);
    assert_eq!(rest["notifications"].as_array().map(Vec::len), Some(1));
    let (status, text) = curl(&[&format!("{}/api/history?channel=b&since=7", hub.base)]).await;
    assert!(
        status == 400 && text.contains("\"field\":\"since\""),
        "{status} {text}"
    );
    let (status, text) = curl(&[&format!("{}/api/channels", hub.base)]).await;
    assert!(
        status == 200 && text.contains("\"channel\":\"b\""),
        "{text}"
    );
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_lists_every_route() {
    let hub = TestHub::start(|_, _| {}).await;
    let (status, text) = curl(&[&format!("{}/api/openapi.json", hub.base)]).await;
    assert_eq!(status, 200);
    let mut validator = Peer::OpenApiValidator
        .command(Vec::<String>::new())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("validator runs");
    let mut stdin = validator.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).await.expect("write");
    drop(stdin);
    let output = validator.wait_with_output().await.expect("validator");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&text).expect("json");
    for path in [
        "/api/publish",
        "/api/batch",
        "/api/history",
        "/api/channels",
        "/api/stats",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
        let (status, _) = curl(&[&format!("{}{path}", hub.base)]).await;
        assert_ne!(status, 404, "{path} is documented but not served");
    }
}

#[tokio::test]
async fn metrics_count_publishes_and_health_answers() {
    let hub = TestHub::start(|_, _| {}).await;
    crate::publish_n(&hub, "m", 3, None).await;
    let (status, text) = curl(&[&format!("{}/metrics", hub.base)]).await;
    assert_eq!(status, 200);
    for line in [
        "protolab_hub_published_total 3",
        "protolab_hub_channels 1",
        "protolab_hub_connections{transport=\"websocket\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    assert_eq!(
        curl(&[&format!("{}/healthz", hub.base)]).await,
        (200, "ok\n".to_owned())
    );
    assert_eq!(curl(&[&format!("{}/readyz", hub.base)]).await.0, 200);
}
