// `protolab bench` against the lab's four apps in-process, plus the ways it must fail fast.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser as _;
use protolab::{bench, Cli, Command, Context};
use protolab_load::Report;
use protolab_server::Protocol;
use protolab_test_support::TestLab;

fn cli(args: &[&str]) -> Cli {
    Cli::parse_from(std::iter::once("protolab").chain(args.iter().copied()))
}

/// Runs `bench` with `args` and returns the report instead of printing it.
async fn measure(lab: &TestLab, args: &[&str]) -> Report {
    let cli = cli(args);
    let Command::Bench(bench_args) = cli.command else {
        panic!("not a bench command");
    };
    let ctx = Context {
        home: lab.home().to_owned(),
        json: false,
    };
    let report = bench::measure(&bench_args, &ctx).await.expect("bench runs");
    println!("{}", bench::render(&report));
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_loads_each_lab_protocol() {
    let lab = TestLab::start(
        &[Protocol::Http, Protocol::Https, Protocol::Ws, Protocol::Wss],
        |_| {},
    )
    .await;
    let ca = lab.ca.to_str().unwrap().to_owned();
    let size = 1024.0;
    let mut reports = Vec::new();
    for p in [Protocol::Http, Protocol::Https, Protocol::Ws, Protocol::Wss] {
        let url = lab.url(p);
        let r = measure(
            &lab,
            &[
                "bench",
                &url,
                "--size",
                "1KiB",
                "-c",
                "2",
                "--duration",
                "1s",
                "-n",
                "3000",
                "--cacert",
                &ca,
            ],
        )
        .await;
        assert!(r.messages > 0, "{p}: {r:?}");
        assert_eq!(r.errors.total(), 0, "{p}: {:?}", r.errors);
        assert!(r.duration_secs <= 1.0, "{p}: {r:?}");
        let sent = r.bytes.sent_per_message.unwrap();
        let received = r.bytes.received_per_message.unwrap();
        assert!(sent >= size && received >= size, "{p}: {:?}", r.bytes);
        let latency = r.latency.unwrap();
        assert!(
            latency.p50_us > 0.0 && latency.p50_us <= latency.max_us,
            "{p}"
        );
        assert_eq!(r.connections_opened, 2, "{p}");
        reports.push((p, r));
    }
    let get = |p: Protocol| &reports.iter().find(|(q, _)| *q == p).unwrap().1;
    let per_msg = |p: Protocol| get(p).bytes.sent_per_message.unwrap();
    let handshake = |p: Protocol| {
        let b = get(p).bytes;
        b.handshake_sent_per_connection.unwrap() + b.handshake_received_per_connection.unwrap()
    };
    assert!(per_msg(Protocol::Https) > per_msg(Protocol::Http));
    assert!(per_msg(Protocol::Wss) > per_msg(Protocol::Ws));
    // A WebSocket frame header is smaller than an HTTP request head.
    assert!(per_msg(Protocol::Ws) < per_msg(Protocol::Http));
    assert!(handshake(Protocol::Wss) > handshake(Protocol::Ws));
    assert!(handshake(Protocol::Ws) > 0.0);
    assert_eq!(handshake(Protocol::Http), 0.0);
    assert!(get(Protocol::Wss).phases.tls_handshake.is_some());
    assert!(get(Protocol::Ws).phases.ws_upgrade.is_some());

    // A new connection per message: every phase is timed.
    let wss = lab.url(Protocol::Wss);
    let r = measure(
        &lab,
        &[
            "bench",
            &wss,
            "--workload",
            "connect",
            "--duration",
            "1s",
            "-n",
            "20",
            "--insecure",
        ],
    )
    .await;
    assert_eq!((r.messages, r.connections_opened), (20, 20), "{r:?}");
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    for phase in [
        r.phases.tcp_connect,
        r.phases.tls_handshake,
        r.phases.ws_upgrade,
        r.phases.first_echo,
    ] {
        assert!(phase.is_some_and(|s| s.count == 20), "{:?}", r.phases);
    }

    // Resumed sessions skip the certificate: far fewer handshake bytes from the server.
    let resumed = measure(
        &lab,
        &[
            "bench",
            &wss,
            "--workload",
            "connect",
            "--duration",
            "1s",
            "-n",
            "20",
            "--cacert",
            &ca,
            "--tls-resume",
        ],
    )
    .await;
    assert_eq!(resumed.messages, 20, "{resumed:?}");
    let full = r.bytes.handshake_received_per_connection.unwrap();
    let short = resumed.bytes.handshake_received_per_connection.unwrap();
    assert!(short < full * 0.75, "resumed {short} vs full {full}");

    // The whole command, JSON out, exit code 0.
    let ws = lab.url(Protocol::Ws);
    let code = protolab::run(cli(&[
        "--json",
        "--home",
        lab.home().to_str().unwrap(),
        "bench",
        &ws,
        "-n",
        "10",
        "--duration",
        "1s",
        "--subprotocol",
        "chat",
    ]))
    .await
    .unwrap();
    assert_eq!(code, ExitCode::SUCCESS);
}

#[tokio::test]
async fn bench_fails_fast_when_nothing_listens() {
    // Bind then drop: the port is free and nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = tempfile::tempdir().unwrap();
    for workload in ["echo", "connect"] {
        let url = format!("http://127.0.0.1:{port}/");
        let t0 = Instant::now();
        let err = protolab::run(cli(&[
            "--home",
            home.path().to_str().unwrap(),
            "bench",
            &url,
            "--workload",
            workload,
            "-c",
            "2",
            "--duration",
            "1s",
        ]))
        .await
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("no message came back"), "{msg}");
        assert!(msg.contains("refused"), "{msg}");
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "{workload} took {:?}",
            t0.elapsed()
        );
    }
}

#[tokio::test]
async fn bench_rejects_other_schemes_and_bad_headers() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path().to_str().unwrap();
    let err = protolab::run(cli(&["--home", home, "bench", "ftp://127.0.0.1:21/"]))
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("unsupported scheme `ftp`"), "{msg}");
    assert!(msg.contains("http://, https://, ws://, wss://"), "{msg}");

    let parsed = Cli::try_parse_from([
        "protolab",
        "bench",
        "http://127.0.0.1:1/",
        "-H",
        "X-A: b\r\nEvil: 1",
    ]);
    assert!(parsed.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_open_loop_keeps_its_rate() {
    let lab = TestLab::start(&[Protocol::Ws], |_| {}).await;
    let url = lab.url(Protocol::Ws);
    let r = measure(
        &lab,
        &[
            "bench",
            &url,
            "-c",
            "2",
            "--rate",
            "200",
            "--duration",
            "1s",
        ],
    )
    .await;
    assert_eq!(r.rate, Some(200.0));
    // 200 msg/s for 1 s, minus the connections' set-up time and the last slot.
    assert!((150..=201).contains(&r.messages), "{r:?}");
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
}

#[tokio::test]
async fn bench_reports_a_silent_server_and_an_untrusted_certificate() {
    // A server that accepts and never answers: the run still ends on time.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let home = tempfile::tempdir().unwrap();
    let home_str = home.path().to_str().unwrap();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let t0 = Instant::now();
    let err = protolab::run(cli(&[
        "--home",
        home_str,
        "bench",
        &url,
        "--duration",
        "1s",
    ]))
    .await
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("timed out"), "{msg}");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
    hold.abort();

    // TLS against a lab whose CA we do not trust: a TLS failure, named as such.
    let lab = TestLab::start(&[Protocol::Https], |_| {}).await;
    let other = protolab_tls::Store::open(home.path());
    other.ensure_ca().unwrap();
    let other_ca = other.ca_cert_path();
    let url = lab.url(Protocol::Https);
    let cli = cli(&[
        "--home",
        home_str,
        "bench",
        &url,
        "--duration",
        "1s",
        "--cacert",
        other_ca.to_str().unwrap(),
    ]);
    let Command::Bench(args) = cli.command else {
        panic!("not bench");
    };
    let ctx = Context {
        home: home.path().to_owned(),
        json: false,
    };
    let r = bench::measure(&args, &ctx).await.unwrap();
    assert_eq!(r.messages, 0);
    assert_eq!(r.errors.tls, 1, "{:?}", r.errors);
    assert!(
        r.errors.first.as_deref().unwrap().contains("TLS"),
        "{:?}",
        r.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_skips_pushes_and_answers_pings() {
    // Pushes every 20 ms; a ping after 300 ms without traffic (3/4 of the idle timeout).
    let lab = TestLab::start(&[Protocol::Ws], |c| {
        c.push_interval = Duration::from_millis(20);
        c.limits.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let url = lab.url(Protocol::Ws);
    // One message every 350 ms: the server pings in each gap.
    let r = measure(
        &lab,
        &["bench", &url, "--rate", "2.86", "--duration", "1500ms"],
    )
    .await;
    assert!(r.messages >= 3, "{r:?}");
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert!(r.skipped_messages >= 20, "{r:?}");
    assert!(r.pings_answered >= 1, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_mid_run_is_reported_with_what_was_measured() {
    for protocol in [Protocol::Ws, Protocol::Https] {
        let lab = TestLab::start(&[protocol], |c| {
            // The server closes its WebSockets (1001) and drains quickly when it stops.
            c.limits.drain_timeout = Duration::from_millis(200);
        })
        .await;
        let url = lab.url(protocol);
        let ca = lab.ca.to_str().unwrap().to_owned();
        let home = lab.home().to_owned();
        let TestLab { lab: server, .. } = lab;
        // Stop the server one second into a three-second run.
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            server.shutdown().await;
        });
        let t0 = Instant::now();
        let cli = cli(&[
            "bench",
            &url,
            "-c",
            "2",
            "--duration",
            "3s",
            "--cacert",
            &ca,
        ]);
        let Command::Bench(args) = cli.command else {
            panic!("not a bench command");
        };
        let ctx = Context { home, json: false };
        let report = bench::measure(&args, &ctx).await.expect("bench runs");
        stopper.await.unwrap();
        println!("{}", bench::render(&report));
        // What was measured before the server left is kept, the failures are named, and the
        // run ends on time rather than waiting on a dead server.
        assert!(report.messages > 100, "{protocol}: {}", report.messages);
        let e = &report.errors;
        assert!(e.closed + e.refused > 0, "{protocol}: {e:?}");
        let first = e.first.as_deref().unwrap_or_default();
        assert!(
            !first.is_empty(),
            "{protocol}: no description of the first failure"
        );
        // The server ends connections politely even when it shuts down mid-run.
        assert!(!first.contains("close_notify"), "{protocol}: {first}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{protocol}: the run took {:?}",
            t0.elapsed()
        );
        assert!(bench::render(&report).contains("errors"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_loads_an_event_stream_with_push_by_default() {
    let lab = TestLab::start(&[Protocol::Sse], |c| {
        c.push_interval = Duration::from_millis(20);
    })
    .await;
    let http = lab.url(Protocol::Sse);
    let url = http.replacen("http://", "sse://", 1);
    assert!(url.ends_with("/events"), "{url}");
    let r = measure(&lab, &["bench", &url, "-c", "2", "--duration", "1s"]).await;
    assert_eq!(r.workload, protolab_load::Workload::Push, "{r:?}");
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    // Two streams, an event every 20 ms each, for a second.
    assert!(r.messages >= 40, "{r:?}");
    assert!(r.bytes.received_per_message.unwrap() > r.bytes.payload_received_per_message.unwrap());
}
