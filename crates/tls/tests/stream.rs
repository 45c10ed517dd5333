//! `protolab_tls::stream` against rustls' own record layer (tokio-rustls) on loopback, both
//! ways round, TLS 1.3 and 1.2, every AEAD suite: bytes arrive whole and in order across record
//! boundaries, closes are clean, key updates in both directions keep data flowing, and a
//! missing close_notify is reported. Real processes (curl, openssl, browsers) exercise it
//! through the lab's servers in the server crate's tests.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

use std::sync::Arc;

use protolab_tls::rustls::{self, pki_types::ServerName, CipherSuite};
use protolab_tls::stream::{self, TlsStream};
use protolab_tls::{Leaf, Options, Roots, Store};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

struct Pki {
    _dir: tempfile::TempDir,
    leaf: Leaf,
    roots: Roots,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state")).with_owner("test@lab");
    store.init().unwrap();
    let leaf = store.leaf_for(&["localhost".into()]).unwrap();
    let roots = Roots::new().with_ca(&store.ca().unwrap());
    Pki {
        _dir: dir,
        leaf,
        roots,
    }
}

/// The lab's provider, offering only `suite` if given.
fn provider(suite: Option<CipherSuite>) -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = (*protolab_tls::provider()).clone();
    if let Some(suite) = suite {
        provider.cipher_suites.retain(|s| s.suite() == suite);
    }
    Arc::new(provider)
}

fn server_config(pki: &Pki, tls12_only: bool) -> Arc<rustls::ServerConfig> {
    let base = protolab_tls::server_config_with(&pki.leaf, &Options::default()).unwrap();
    if !tls12_only {
        return base;
    }
    let mut config = rustls::ServerConfig::builder_with_provider(protolab_tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.leaf.chain.clone(), pki.leaf.key.clone_key())
        .unwrap();
    config.enable_secret_extraction = true;
    Arc::new(config)
}

fn client_config(pki: &Pki, suite: Option<CipherSuite>) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider(suite))
        .with_protocol_versions(protolab_tls::VERSIONS)
        .unwrap()
        .with_root_certificates(pki.roots.root_store())
        .with_no_client_auth();
    config.enable_secret_extraction = true;
    Arc::new(config)
}

fn name() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// Sizes that straddle record boundaries.
const SIZES: [usize; 7] = [1, 100, 16_383, 16_384, 16_385, 40_000, 200_000];

/// Writes each message, reads its echo back whole, then closes politely and expects a clean
/// end of stream.
async fn client_session<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    for (i, &size) in SIZES.iter().enumerate() {
        let msg: Vec<u8> = (0..size).map(|j| ((i * 31 + j) % 251) as u8).collect();
        s.write_all(&msg).await.unwrap();
        s.flush().await.unwrap();
        let mut back = vec![0; size];
        s.read_exact(&mut back).await.unwrap();
        assert!(back == msg, "echo of {size} bytes differs");
    }
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

/// Echoes until the client's close_notify, then closes.
async fn echo_session<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).await.unwrap();
        s.flush().await.unwrap();
    }
    s.shutdown().await.unwrap();
}

async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[derive(Clone, Copy, Debug)]
enum Side {
    Ours,
    Rustls,
}

async fn run_pair(client: Side, server: Side, tls12: bool, suite: Option<CipherSuite>) {
    let pki = pki();
    let (l, port) = listener().await;
    let sconf = server_config(&pki, tls12);
    let cconf = client_config(&pki, suite);
    let srv = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        match server {
            Side::Ours => {
                let s = stream::accept(sconf, tcp).await.unwrap();
                let expect = if tls12 {
                    rustls::ProtocolVersion::TLSv1_2
                } else {
                    rustls::ProtocolVersion::TLSv1_3
                };
                assert_eq!(s.negotiated().version, expect);
                if let Some(suite) = suite {
                    assert_eq!(s.negotiated().suite, suite);
                }
                echo_session(s).await;
            }
            Side::Rustls => {
                let s = tokio_rustls::TlsAcceptor::from(sconf)
                    .accept(tcp)
                    .await
                    .unwrap();
                echo_session(s).await;
            }
        }
    });
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    match client {
        Side::Ours => client_session(stream::connect(cconf, name(), tcp).await.unwrap()).await,
        Side::Rustls => {
            let s = tokio_rustls::TlsConnector::from(cconf)
                .connect(name(), tcp)
                .await
                .unwrap();
            client_session(s).await;
        }
    }
    srv.await.unwrap();
}

#[tokio::test]
async fn ours_against_rustls_both_ways_tls13_and_tls12() {
    for tls12 in [false, true] {
        run_pair(Side::Ours, Side::Rustls, tls12, None).await;
        run_pair(Side::Rustls, Side::Ours, tls12, None).await;
        run_pair(Side::Ours, Side::Ours, tls12, None).await;
    }
}

#[tokio::test]
async fn every_aead_suite() {
    for (tls12, suite) in [
        (false, CipherSuite::TLS13_AES_128_GCM_SHA256),
        (false, CipherSuite::TLS13_AES_256_GCM_SHA384),
        (false, CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
        (true, CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        (true, CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        (
            true,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ] {
        run_pair(Side::Rustls, Side::Ours, tls12, Some(suite)).await;
        run_pair(Side::Ours, Side::Rustls, tls12, Some(suite)).await;
    }
}

#[tokio::test]
async fn key_updates_both_ways_keep_data_flowing() {
    let pki = pki();
    let (l, port) = listener().await;
    let sconf = server_config(&pki, false);
    let srv = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut s = stream::accept(sconf, tcp).await.unwrap();
        // Our side moves to new send keys every 3 records from here on.
        s.set_key_update_interval(3);
        echo_session(s).await;
    });
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut c = tokio_rustls::TlsConnector::from(client_config(&pki, None))
        .connect(name(), tcp)
        .await
        .unwrap();
    for round in 0..5u8 {
        // rustls' client asks for a key update (and the server must follow) each round.
        c.get_mut().1.refresh_traffic_keys().unwrap();
        let msg = vec![round; 50_000];
        c.write_all(&msg).await.unwrap();
        c.flush().await.unwrap();
        let mut back = vec![0; msg.len()];
        c.read_exact(&mut back).await.unwrap();
        assert!(back == msg, "round {round}");
    }
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    srv.await.unwrap();
}

#[tokio::test]
async fn an_end_without_close_notify_is_an_error_not_a_clean_end() {
    let pki = pki();
    let (l, port) = listener().await;
    let sconf = server_config(&pki, false);
    let srv = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut s = tokio_rustls::TlsAcceptor::from(sconf)
            .accept(tcp)
            .await
            .unwrap();
        s.write_all(b"partial").await.unwrap();
        s.flush().await.unwrap();
        // Drop the TCP connection without a close_notify.
        let (tcp, _) = s.into_inner();
        drop(tcp);
    });
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut c: TlsStream<TcpStream> = stream::connect(client_config(&pki, None), name(), tcp)
        .await
        .unwrap();
    let mut got = Vec::new();
    let err = c.read_to_end(&mut got).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    assert_eq!(got, b"partial");
    srv.await.unwrap();
}

#[tokio::test]
async fn a_handshake_failure_is_reported_and_the_peer_gets_an_alert() {
    let pki = pki();
    let other = self::pki();
    let (l, port) = listener().await;
    let sconf = server_config(&pki, false);
    let srv = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        stream::accept(sconf, tcp).await.unwrap_err()
    });
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // A client that trusts another CA refuses our certificate.
    let err = stream::connect(client_config(&other, None), name(), tcp)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    let server_err = srv.await.unwrap();
    assert!(
        server_err.to_string().contains("UnknownCA") || server_err.to_string().contains("alert"),
        "the server learns why: {server_err}"
    );
}

/// Whether `s` waits for the socket: readiness pending, after a read has cleared what the
/// socket reported before (readiness is only cleared by a read that finds nothing).
fn waits<S: AsyncRead + protolab_tls::stream::ReadReady + Unpin>(
    s: &mut S,
    cx: &mut std::task::Context<'_>,
) -> bool {
    use std::task::Poll;
    loop {
        match s.poll_read_ready(cx) {
            Poll::Pending => return true,
            Poll::Ready(ready) => {
                ready.unwrap();
                let mut one = [0u8; 1];
                let mut into = tokio::io::ReadBuf::new(&mut one);
                if std::pin::Pin::new(&mut *s)
                    .poll_read(cx, &mut into)
                    .is_ready()
                {
                    return false;
                }
            }
        }
    }
}

#[tokio::test]
async fn an_idle_stream_gives_its_buffers_back() {
    use std::task::Poll;

    use protolab_tls::stream::ReadReady as _;

    let pki = pki();
    let (l, port) = listener().await;
    let sconf = server_config(&pki, false);
    let msg = vec![7u8; 50_000];
    let len = msg.len();
    let srv = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut s = stream::accept(sconf, tcp).await.unwrap();
        // Small reads: records are carried and their plaintext held between reads.
        let mut got = Vec::new();
        let mut chunk = [0u8; 1000];
        while got.len() < len {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&chunk[..n]);
        }
        s.write_all(&got).await.unwrap();
        s.flush().await.unwrap();
        assert!(s.buffered_capacity() > 0, "the buffers were used");
        // Everything read and sent, the client quiet: waiting holds no buffer.
        let waiting = std::future::poll_fn(|cx| Poll::Ready(waits(&mut s, cx))).await;
        assert!(waiting, "nothing more was sent");
        s.release_idle_buffers();
        assert_eq!(s.buffered_capacity(), 0, "an idle stream holds no buffers");
        let mut end = Vec::new();
        s.read_to_end(&mut end).await.unwrap();
        assert!(end.is_empty());
        s.shutdown().await.unwrap();
    });
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut c = tokio_rustls::TlsConnector::from(client_config(&pki, None))
        .connect(name(), tcp)
        .await
        .unwrap();
    c.write_all(&msg).await.unwrap();
    c.flush().await.unwrap();
    let mut back = vec![0; len];
    c.read_exact(&mut back).await.unwrap();
    assert!(back == msg);
    // Quiet for a moment, so the server finds nothing to read.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    srv.await.unwrap();
}
