//! `protolab_load::run` against a small HTTP echo server that stalls on purpose: the open loop
//! must charge the stall to every message that was due during it (coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use protolab_load::{run, Config, Target};
use protolab_wire::http1::{parse_request, BodyFraming, HeadLimits};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Echoes POST bodies; the `stall_at`-th request (over all connections) waits `stall`
/// before its answer.
async fn stalling_echo(stall_at: u64, stall: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let served = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket, Arc::clone(&served), stall_at, stall));
        }
    });
    port
}

async fn serve(mut socket: TcpStream, served: Arc<AtomicU64>, stall_at: u64, stall: Duration) {
    let mut buf = Vec::new();
    loop {
        let (head, len) = loop {
            if let Some(parsed) =
                parse_request(&buf, &HeadLimits::default()).expect("a valid request head")
            {
                break parsed;
            }
            if socket.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        };
        let Ok(BodyFraming::ContentLength(n)) = head.body_framing() else {
            panic!("expected a Content-Length body");
        };
        let end = len + n as usize;
        while buf.len() < end {
            if socket.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        }
        if served.fetch_add(1, Ordering::Relaxed) + 1 == stall_at {
            tokio::time::sleep(stall).await;
        }
        let mut out = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n").into_bytes();
        out.extend_from_slice(&buf[len..end]);
        buf.drain(..end);
        if socket.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn open_loop_charges_a_stall_to_every_message_due_during_it() {
    let port = stalling_echo(10, Duration::from_millis(300)).await;
    let target = Target::parse(&format!("http://127.0.0.1:{port}/echo")).unwrap();
    let mut config = Config::new(target);
    config.duration = Duration::from_millis(1500);
    config.rate = Some(100.0);
    let report = run(config.clone()).await.unwrap();
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    // The backlog is sent as soon as the stall ends, so the rate holds.
    assert!(report.messages >= 130, "{report:?}");
    let latency = report.latency.unwrap();
    // ~30 of ~150 messages were due during the 300 ms stall: from 300 ms down to 0.
    assert!(latency.max_us >= 290_000.0, "{latency:?}");
    assert!(latency.p90_us >= 50_000.0, "{latency:?}");

    // The same stall in a closed loop hits one message only.
    let port = stalling_echo(10, Duration::from_millis(300)).await;
    config.target = Target::parse(&format!("http://127.0.0.1:{port}/echo")).unwrap();
    config.rate = None;
    config.duration = Duration::from_millis(500);
    let closed = run(config).await.unwrap();
    let latency = closed.latency.unwrap();
    assert!(latency.max_us >= 290_000.0, "{latency:?}");
    assert!(latency.p90_us < 50_000.0, "{latency:?}");
}

#[tokio::test]
async fn an_exchange_times_out_at_its_own_deadline() {
    // 50 messages a second; the 20th (sent at ~380 ms) stalls past the 400 ms request
    // timeout. The client's one watchdog was armed by the first exchange (for ~400 ms): it
    // must fire at the 20th's own deadline (~780 ms), not at the first's.
    let port = stalling_echo(20, Duration::from_secs(3)).await;
    let target = Target::parse(&format!("http://127.0.0.1:{port}/echo")).unwrap();
    let mut config = Config::new(target);
    config.duration = Duration::from_secs(3);
    config.rate = Some(50.0);
    config.request_timeout = Duration::from_millis(400);
    let started = std::time::Instant::now();
    let report = run(config).await.unwrap();
    let took = started.elapsed();
    assert_eq!(report.messages, 19, "{report:?}");
    assert_eq!(report.errors.timeout, 1, "{:?}", report.errors);
    assert_eq!(report.errors.total(), 1, "{:?}", report.errors);
    // ~380 ms of echoes, 400 ms of waiting, then a close bounded by 200 ms.
    assert!(
        took >= Duration::from_millis(760) && took < Duration::from_millis(1600),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_stall_within_the_warm_up_is_not_in_the_latency() {
    // The 3rd exchange (a few ms in) waits 300 ms and is done well inside the 600 ms
    // warm-up: it is counted as a message but its latency is not in the figures.
    let port = stalling_echo(3, Duration::from_millis(300)).await;
    let target = Target::parse(&format!("http://127.0.0.1:{port}/echo")).unwrap();
    let mut config = Config::new(target);
    config.duration = Duration::from_millis(1200);
    config.warmup = Duration::from_millis(600);
    let report = run(config.clone()).await.unwrap();
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    let latency = report.latency.unwrap();
    assert!(latency.max_us < 250_000.0, "{latency:?}");

    // Without a warm-up the same stall is the run's worst latency.
    let port = stalling_echo(3, Duration::from_millis(300)).await;
    config.target = Target::parse(&format!("http://127.0.0.1:{port}/echo")).unwrap();
    config.warmup = Duration::ZERO;
    let cold = run(config.clone()).await.unwrap();
    assert!(cold.latency.unwrap().max_us >= 290_000.0, "{cold:?}");

    // A warm-up as long as the run leaves nothing to measure: refused.
    config.warmup = config.duration;
    assert!(run(config).await.is_err());
}
