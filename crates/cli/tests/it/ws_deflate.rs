//! permessage-deflate in protolab's WebSocket client against a real server that negotiates
//! it (Python `websockets`, which compresses by default): `protolab bench --ws-deflate`
//! under several server policies, a server that declines, and a decompression bomb.

use std::time::Duration;

use clap::Parser as _;
use protolab::{bench, Cli, Command, Context};
use protolab_load::websocket::{Options, WebSocket, WsError};
use protolab_load::{ErrorKind, Report};
use protolab_test_support::{repo_root, require, Background};
use protolab_wire::ws::deflate::Offer;
use tokio::process::Command as Process;

/// Starts tests/peers/ws_server.py with `args`; returns it and its port.
async fn python_server(args: &[&str]) -> (Background, u16) {
    let mut cmd = Process::new(require("python3", "apt-get install -y python3"));
    cmd.arg(repo_root().join("tests/peers/ws_server.py"))
        .args(args)
        .kill_on_drop(true);
    let mut server = Background::spawn(cmd);
    let hello = server.next_json(Duration::from_secs(20)).await;
    let port = hello["port"].as_u64().expect("the server prints its port");
    (server, u16::try_from(port).expect("a port"))
}

async fn bench(args: &[&str]) -> Report {
    let cli = Cli::parse_from(std::iter::once("protolab").chain(args.iter().copied()));
    let Command::Bench(bench_args) = cli.command else {
        panic!("not a bench command");
    };
    let home = tempfile::tempdir().expect("home");
    let ctx = Context {
        home: home.path().to_owned(),
        json: false,
    };
    let report = bench::measure(&bench_args, &ctx).await.expect("bench runs");
    println!("{}", bench::render(&report));
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_ws_deflate_against_python_websockets() {
    // (server options, the terms the client must report)
    let policies: [(&[&str], &str); 3] = [
        (&[], "server_max_window_bits=15; client_max_window_bits=15"),
        (
            &[
                "--server-no-context-takeover",
                "--client-max-window-bits",
                "10",
            ],
            "server_no_context_takeover; server_max_window_bits=15; client_max_window_bits=10",
        ),
        (
            &[
                "--client-no-context-takeover",
                "--server-max-window-bits",
                "9",
            ],
            "client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=15",
        ),
    ];
    for (server_args, agreed) in policies {
        let (mut server, port) = python_server(server_args).await;
        let url = format!("ws://127.0.0.1:{port}/");
        let r = bench(&[
            "bench",
            &url,
            "--ws-deflate",
            "--size",
            "4KiB",
            "-c",
            "2",
            "-n",
            "400",
            "--duration",
            "5s",
        ])
        .await;
        assert_eq!(r.errors.total(), 0, "{server_args:?}: {:?}", r.errors);
        assert!(r.messages >= 400, "{server_args:?}: {}", r.messages);
        let c = r.compression.as_ref().expect("compression was offered");
        assert_eq!(c.offer, "permessage-deflate; client_max_window_bits");
        assert_eq!(c.agreed.as_deref(), Some(agreed), "{server_args:?}");
        assert_eq!(c.connections_accepted, 2);
        // JSON records shrink to well under half either way; the wire counts follow the
        // compressed frames, not the message size.
        let b = r.bytes;
        let sent = b
            .frame_payload_sent_per_message
            .expect("compressed size sent");
        let received = b
            .frame_payload_received_per_message
            .expect("compressed size received");
        assert!(sent < 2048.0 && received < 2048.0, "{server_args:?}: {b:?}");
        let wire = b.sent_per_message.expect("bytes sent");
        assert!(wire > sent && wire < sent + 20.0, "{server_args:?}: {b:?}");
        // The server saw the same extension and a clean close from every connection.
        for _ in 0..2 {
            let closed = server.next_json(Duration::from_secs(10)).await;
            assert_eq!(closed["close_code"], 1000, "{closed}");
            assert!(closed["messages"].as_u64() > Some(100), "{closed}");
            assert!(
                closed["extensions"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("permessage-deflate")),
                "{closed}"
            );
        }
    }
    // A server without compression: the offer is declined and messages go uncompressed.
    let (_server, port) = python_server(&["--no-compression"]).await;
    let url = format!("ws://127.0.0.1:{port}/");
    let r = bench(&["bench", &url, "--ws-deflate", "--size", "1KiB", "-n", "50"]).await;
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    let c = r.compression.expect("compression was offered");
    assert_eq!((c.agreed, c.connections_accepted), (None, 0));
    assert_eq!(r.bytes.frame_payload_sent_per_message, None);
    assert!(r.bytes.sent_per_message > Some(1024.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_from_the_server_is_refused_with_1009() {
    // 32 MiB of zeros, about 32 KiB compressed, against the client's 16 MiB message limit.
    let (mut server, port) = python_server(&["--mode", "bomb"]).await;
    let options = Options {
        deflate: Some(Offer::browser()),
        ..Options::default()
    };
    let mut ws = WebSocket::connect(&format!("ws://127.0.0.1:{port}/"), options)
        .await
        .expect("connects");
    assert!(ws.deflate().is_some());
    let err = ws.recv().await.expect_err("the bomb is refused");
    let WsError::Failed {
        kind, close_code, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        (*kind, *close_code),
        (ErrorKind::Protocol, Some(1009)),
        "{err}"
    );
    // What crossed the wire is the compressed message, not 32 MiB.
    assert!(ws.wire_bytes().received < 1 << 20, "{:?}", ws.wire_bytes());
    let closed = server.next_json(Duration::from_secs(10)).await;
    assert_eq!(closed["close_code"], 1009, "{closed}");
}
