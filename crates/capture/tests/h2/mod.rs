//! `inspect` against tshark on HTTP/2 and gRPC from the lab: curl over h2c (prior knowledge)
//! and over TLS (ALPN h2, decrypted with the lab's key log), and Python grpcio over h2c. Per
//! direction of every connection, the frames (stream id, type) and the decoded header lists
//! must be tshark's, and the gRPC message lengths tshark's `grpc.message_length`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use protolab_capture::{inspect_with, Dir, Event, Filter, InspectOptions, KeyLog, Report};
use protolab_server::Protocol;
use protolab_test_support::{require, run, run_json, Peer, TestLab};

use super::{start_capture, stop_capture, tempfile_dir};

/// Frames of one direction of one connection, keyed by (sending port, receiving port).
type PerDirection<T> = BTreeMap<(u16, u16), Vec<T>>;

/// Frames (stream id, type), headers (name, value) and gRPC message lengths, per direction.
type Decoded = (
    PerDirection<(u32, u8)>,
    PerDirection<(String, String)>,
    PerDirection<u32>,
);

/// Field values tshark aggregates within one packet are joined with this (header values hold
/// commas).
const AGGREGATOR: char = '\u{1f}';

/// `tshark -r file -o prefs… -d decodes… -Y filter -T fields`: rows of fields, each a list of
/// the packet's values.
fn tshark(
    file: &std::path::Path,
    prefs: &[String],
    filter: &str,
    fields: &[&str],
) -> Vec<Vec<Vec<String>>> {
    let out = Command::new(require("tshark", "apt-get install -y tshark"))
        .arg("-r")
        .arg(file)
        .args(prefs)
        .args(["-Y", filter, "-T", "fields", "-E", "separator=\u{1e}"])
        .arg(format!("-Eaggregator={AGGREGATOR}"))
        .args(fields.iter().flat_map(|f| ["-e", f]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            l.split('\u{1e}')
                .map(|f| {
                    if f.is_empty() {
                        Vec::new()
                    } else {
                        f.split(AGGREGATOR).map(str::to_string).collect()
                    }
                })
                .collect()
        })
        .collect()
}

fn ports(c_client: SocketAddr, c_server: SocketAddr, dir: Dir) -> (u16, u16) {
    match dir {
        Dir::ToServer => (c_client.port(), c_server.port()),
        Dir::ToClient => (c_server.port(), c_client.port()),
    }
}

fn type_number(name: &str) -> u8 {
    match name {
        "DATA" => 0,
        "HEADERS" => 1,
        "PRIORITY" => 2,
        "RST_STREAM" => 3,
        "SETTINGS" => 4,
        "PUSH_PROMISE" => 5,
        "PING" => 6,
        "GOAWAY" => 7,
        "WINDOW_UPDATE" => 8,
        "CONTINUATION" => 9,
        other => panic!("unexpected frame type {other}"),
    }
}

/// Ours: (stream id, type) per direction; header (name, value) per direction; gRPC message
/// lengths per direction.
fn ours(report: &Report) -> Decoded {
    let (mut frames, mut headers, mut grpc) = (
        PerDirection::new(),
        PerDirection::new(),
        PerDirection::new(),
    );
    for c in &report.connections {
        for t in &c.events {
            match &t.event {
                Event::Http2Frame {
                    dir,
                    frame_type,
                    stream_id,
                    headers: list,
                    detail,
                    ..
                } => {
                    let key = ports(c.client, c.server, *dir);
                    frames
                        .entry(key)
                        .or_insert_with(Vec::new)
                        .push((*stream_id, type_number(frame_type)));
                    assert!(
                        detail
                            .as_deref()
                            .is_none_or(|d| !d.contains("error:") && !d.contains("not decoded")),
                        "{detail:?}"
                    );
                    headers
                        .entry(key)
                        .or_insert_with(Vec::new)
                        .extend(list.iter().cloned());
                }
                Event::GrpcMessage { dir, len, .. } => {
                    grpc.entry(ports(c.client, c.server, *dir))
                        .or_insert_with(Vec::new)
                        .push(*len);
                }
                _ => {}
            }
        }
    }
    (frames, headers, grpc)
}

fn theirs(file: &std::path::Path, prefs: &[String], filter: &str) -> Decoded {
    let (mut frames, mut headers, mut grpc) = (
        PerDirection::new(),
        PerDirection::new(),
        PerDirection::new(),
    );
    let rows = tshark(
        file,
        prefs,
        filter,
        &[
            "tcp.srcport",
            "tcp.dstport",
            "http2.streamid",
            "http2.type",
            "http2.header.name",
            "http2.header.value",
            "grpc.message_length",
        ],
    );
    for r in rows {
        let key: (u16, u16) = (r[0][0].parse().unwrap(), r[1][0].parse().unwrap());
        // The preface's magic shows as a pseudo-frame with neither id nor type.
        let ids = &r[2];
        let types = &r[3];
        assert_eq!(ids.len(), types.len(), "{r:?}");
        frames.entry(key).or_insert_with(Vec::new).extend(
            ids.iter()
                .zip(types)
                .map(|(id, t)| (id.parse().unwrap(), t.parse().unwrap())),
        );
        assert_eq!(r[4].len(), r[5].len(), "{r:?}");
        headers
            .entry(key)
            .or_insert_with(Vec::new)
            .extend(r[4].iter().cloned().zip(r[5].iter().cloned()));
        grpc.entry(key)
            .or_insert_with(Vec::new)
            .extend(r[6].iter().map(|l| l.parse::<u32>().unwrap()));
    }
    frames.retain(|_, v| !v.is_empty());
    headers.retain(|_, v| !v.is_empty());
    grpc.retain(|_, v| !v.is_empty());
    (frames, headers, grpc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_grpc_frames_headers_and_messages_agree_with_tshark() {
    let dir = tempfile_dir("h2");
    let keys = dir.join("server.keys");
    let keys_for_lab = keys.clone();
    let lab = TestLab::start(&[Protocol::H2, Protocol::Grpc], move |c| {
        let mut tls = (**c.tls.as_ref().unwrap()).clone();
        tls.key_log =
            std::sync::Arc::new(protolab_tls::keylog::KeyLogFile::create(&keys_for_lab).unwrap());
        c.tls = Some(std::sync::Arc::new(tls));
    })
    .await;
    let (h2, grpc) = (lab.port(Protocol::H2), lab.port(Protocol::Grpc));
    let file = dir.join("h2.pcapng");
    let capture = start_capture(&[h2, grpc], &file);
    let ca = lab.ca.to_string_lossy().into_owned();
    let h2c_url = format!("http://127.0.0.1:{h2}/echo?msg=over-h2c");
    let out = run(
        Peer::Curl.command(["-sS", "--http2-prior-knowledge", h2c_url.as_str()]),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over-h2c", "{out:?}");
    let tls_url = format!("https://localhost:{h2}/echo?msg=over-tls");
    let out = run(
        Peer::Curl.command([
            "-sS",
            "--http2",
            "--cacert",
            ca.as_str(),
            tls_url.as_str(),
            tls_url.as_str(),
        ]),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "over-tlsover-tls",
        "{out:?}"
    );
    let target = format!("127.0.0.1:{grpc}");
    let result = run_json(
        Peer::PythonGrpc.command(["stream", target.as_str(), "--count", "3"]),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(result["code"], "OK", "{result}");
    let result = run_json(
        Peer::PythonGrpc.command(["echo", target.as_str(), "--size", "100"]),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(result["code"], "OK", "{result}");
    stop_capture(capture).await;

    let keylog_text = std::fs::read(&keys).unwrap();
    let (keylog, errors) = KeyLog::parse(&keylog_text);
    assert!(errors.is_empty(), "{errors:?}");
    let report = inspect_with(
        &std::fs::read(&file).unwrap(),
        &InspectOptions {
            filter: Filter::default(),
            keylog,
        },
    );
    assert_eq!(report.file_error, None);
    let protocols: Vec<&str> = report.connections.iter().map(|c| c.protocol()).collect();
    assert_eq!(
        protocols.iter().filter(|p| **p == "h2c").count(),
        3,
        "{protocols:?}"
    );
    assert_eq!(
        protocols.iter().filter(|p| **p == "h2").count(),
        1,
        "{protocols:?}"
    );

    // Two passes: tshark decodes h2c on a port only when told to (-d), and then no longer
    // looks for TLS there; without -d it decrypts the TLS connection and finds h2 by ALPN.
    let h2c = vec![
        "-d".to_string(),
        format!("tcp.port=={h2},http2"),
        "-d".to_string(),
        format!("tcp.port=={grpc},http2"),
    ];
    let tls = vec![
        "-o".to_string(),
        format!("tls.keylog_file:{}", keys.display()),
    ];
    let (our_frames, our_headers, our_grpc) = ours(&report);
    let (mut their_frames, mut their_headers, mut their_grpc) = theirs(&file, &h2c, "http2");
    let (tls_frames, tls_headers, tls_grpc) = theirs(&file, &tls, "tls && http2");
    assert_eq!(tls_frames.len(), 2, "{tls_frames:?}");
    for (key, frames) in tls_frames {
        assert!(their_frames.insert(key, frames).is_none());
    }
    their_headers.extend(tls_headers);
    their_grpc.extend(tls_grpc);
    assert_eq!(our_frames, their_frames);
    assert_eq!(our_headers, their_headers);
    assert_eq!(our_grpc, their_grpc);

    // What the comparison covered: four connections' frames both ways, the requests' paths,
    // and the gRPC calls (3 streamed messages each way, one unary each way).
    assert_eq!(our_frames.len(), 8, "{our_frames:?}");
    let values: Vec<&str> = our_headers
        .values()
        .flatten()
        .map(|(_, v)| v.as_str())
        .collect();
    for v in [
        "/echo?msg=over-h2c",
        "/echo?msg=over-tls",
        "/protolab.lab.v1.Lab/EchoStream",
        "/protolab.lab.v1.Lab/Echo",
    ] {
        assert!(values.contains(&v), "{v} not in {values:?}");
    }
    let messages: usize = our_grpc.values().map(Vec::len).sum();
    assert_eq!(messages, 8, "{our_grpc:?}");
    let events: Vec<&Event> = report
        .connections
        .iter()
        .flat_map(|c| c.events.iter().map(|t| &t.event))
        .collect();
    let statuses = events
        .iter()
        .filter(|e| matches!(e, Event::GrpcStatus { status, .. } if status == "0"))
        .count();
    assert_eq!(statuses, 2);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Http2Preface))
            .count(),
        4
    );
    std::fs::remove_dir_all(&dir).ok();
}
