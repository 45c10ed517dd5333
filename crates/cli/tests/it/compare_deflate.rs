// `protolab compare` with `ws-deflate` and `wss-deflate` beside `ws` and `wss`: the runs, the
// JSON payload, the published schema, the table row and the HTML table of bytes with and without
// compression. Whether the lab's WebSocket app negotiates permessage-deflate is the
// server's business: when it accepts, the compressed payload must be smaller than the
// message; when it declines, the report must say so rather than show a saving.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

use crate::results::{compare_json, number, protolab, run_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_shows_ws_deflate_beside_ws() {
    let home = tempfile::tempdir().unwrap();
    let out_dir = home.path().join("report");
    let args = [
        "--protocols",
        "ws,ws-deflate,wss,wss-deflate",
        "--workloads",
        "echo",
        "--sizes",
        "2KiB",
        "--duration",
        "4s",
        "-c",
        "2",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let results = compare_json(home.path(), &args);
    assert_eq!(results["schema_version"], 6);
    assert_eq!(results["settings"]["payload"], "json");
    let protocols: Vec<&str> = results["settings"]["protocols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(protocols, ["ws", "ws-deflate", "wss", "wss-deflate"]);
    for (plain, deflate) in [("ws", "ws-deflate"), ("wss", "wss-deflate")] {
        let plain = &run_of(&results, plain, "echo")["report"];
        let report = &run_of(&results, deflate, "echo")["report"];
        assert!(number(&report["messages"]) > 0.0, "{deflate}: {report}");
        assert_eq!(number(&report["errors"]["protocol"]), 0.0, "{deflate}");
        assert_eq!(report["payload"], "json");
        assert!(plain["compression"].is_null());
        let compression = &report["compression"];
        assert_eq!(
            compression["offer"],
            "permessage-deflate; client_max_window_bits"
        );
        let bytes = &report["bytes"];
        let message = number(&bytes["payload_sent_per_message"]);
        assert_eq!(message, 2048.0);
        if compression["agreed"].is_null() {
            // Declined: uncompressed, the same bytes as the plain run, and said so.
            assert_eq!(compression["connections_accepted"], 0);
            assert!(bytes["frame_payload_sent_per_message"].is_null());
            assert_eq!(
                bytes["sent_per_message"], plain["bytes"]["sent_per_message"],
                "{deflate}"
            );
            let warned = results["warnings"].as_array().unwrap().iter().any(|w| {
                w.as_str()
                    .is_some_and(|w| w.starts_with(deflate) && w.contains("declined"))
            });
            assert!(warned, "{deflate}: {}", results["warnings"]);
        } else {
            let compressed = number(&bytes["frame_payload_sent_per_message"]);
            assert!(compressed < message / 2.0, "{deflate}: {bytes}");
            assert!(
                number(&bytes["sent_per_message"]) < number(&plain["bytes"]["sent_per_message"]),
                "{deflate}"
            );
        }
    }
    // The file validates against the published schema (which knows the -deflate names since v2).
    let file = out_dir.join("results.json");
    crate::compare::assert_matches_results_schema(&file, "results.json does not match its schema")
        .await;
    // The HTML puts each -deflate run beside its plain twin, and says what the payload is.
    let page = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    assert!(page.contains("<h3>permessage-deflate</h3>"));
    assert!(page.contains("Messages are JSON records"));
    assert!(page.contains("<td>wss-deflate</td><td>echo</td><td>2 KiB json</td>"));
    // The terminal table has the compressed-payload row.
    let out = protolab(
        home.path(),
        &[&["compare"][..], &args[..args.len() - 2], &["--no-report"]].concat(),
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("compressed payload ↑ / ↓"), "{table}");
    // Above the columns: where the lab ran, then what the payload is.
    assert!(
        table.starts_with("lab: in-process") && table.contains("\npayload: JSON records"),
        "{table}"
    );
}
