//! HTTP and HTTPS apps through curl and openssl.

use protolab_server::Protocol;
use protolab_test_support::{run, Peer, TestLab};

use crate::PEER_LIMIT;

/// `curl -sS` with the lab's CA, returning (status, body).
async fn curl(lab: &TestLab, url: &str, extra: &[&str]) -> (u16, String) {
    let mut args = vec![
        "-sS",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code}",
        "--cacert",
    ];
    let ca = lab.ca.to_string_lossy().into_owned();
    args.push(&ca);
    args.extend_from_slice(extra);
    args.push(url);
    let out = run(Peer::Curl.command(&args), PEER_LIMIT).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, status) = stdout.rsplit_once('\n').expect("status line");
    (status.parse().expect("numeric status"), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_every_endpoint_over_http_and_https() {
    let lab = TestLab::start(&[Protocol::Http, Protocol::Https], |_| {}).await;
    for protocol in [Protocol::Http, Protocol::Https] {
        let base = lab.url(protocol);
        let (status, body) = curl(&lab, &base, &[]).await;
        assert_eq!(status, 200);
        assert!(body.contains("HTTP demo"), "{protocol} page: {body}");

        let (status, body) = curl(&lab, &format!("{base}echo?msg=hello%20lab"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "hello lab"));

        let (status, body) = curl(
            &lab,
            &format!("{base}echo"),
            &[
                "-H",
                "content-type: text/plain",
                "--data-binary",
                "posted body",
            ],
        )
        .await;
        assert_eq!((status, body.as_str()), (200, "posted body"));

        let (status, body) = curl(
            &lab,
            &format!("{base}echo"),
            &[
                "-H",
                "transfer-encoding: chunked",
                "--data-binary",
                "chunked body",
            ],
        )
        .await;
        assert_eq!((status, body.as_str()), (200, "chunked body"));

        let (status, body) = curl(
            &lab,
            &format!("{base}api/birds?species=tit&sort=-count&limit=3"),
            &[],
        )
        .await;
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let rows = json["results"].as_array().expect("results");
        assert_eq!(rows.len(), 3);
        assert!(rows
            .iter()
            .all(|r| r["species"].as_str().is_some_and(|s| s.contains("Tit"))));
        let counts: Vec<u64> = rows.iter().filter_map(|r| r["count"].as_u64()).collect();
        assert!(
            counts.windows(2).all(|w| w[0] >= w[1]),
            "sorted descending: {counts:?}"
        );

        let (status, body) = curl(&lab, &format!("{base}api/birds?year=twenty"), &[]).await;
        assert_eq!(status, 400);
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
        assert_eq!(json["parameter"], "year", "{body}");

        let (status, body) = curl(&lab, &format!("{base}api/birds?colour=red"), &[]).await;
        assert_eq!(status, 400);
        assert!(body.contains("colour"), "{body}");

        let (status, body) = curl(&lab, &format!("{base}healthz"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));

        let (status, _) = curl(&lab, &format!("{base}nowhere"), &[]).await;
        assert_eq!(status, 404);
        let (status, _) = curl(&lab, &format!("{base}healthz"), &["-X", "DELETE"]).await;
        assert_eq!(status, 405);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_refuses_https_without_the_ca_and_large_bodies_get_413() {
    let lab = TestLab::start(&[Protocol::Https], |c| c.limits.max_body_bytes = 1024).await;
    let url = lab.url(Protocol::Https);
    let out = run(
        Peer::Curl.command(["-sS", "--max-time", "10", &url]),
        PEER_LIMIT,
    )
    .await;
    // 60: peer certificate cannot be authenticated with known CA certificates.
    assert_eq!(
        out.status.code(),
        Some(60),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let big = "x".repeat(4096);
    let (status, _) = curl(&lab, &format!("{url}echo"), &["--data-binary", &big]).await;
    assert_eq!(status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_100_kib_of_headers_gets_431() {
    let lab = TestLab::start(&[Protocol::Http], |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    std::fs::write(&headers, format!("X-Big: {}\n", "a".repeat(100 * 1024))).unwrap();
    let header_arg = format!("@{}", headers.display());
    let (status, body) = curl(
        &lab,
        &format!("{}healthz", lab.url(Protocol::Http)),
        &["-H", &header_arg],
    )
    .await;
    assert_eq!(status, 431, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_sees_a_verified_chain_with_the_right_sans() {
    let lab = TestLab::start(&[Protocol::Https], |_| {}).await;
    let connect = format!("127.0.0.1:{}", lab.port(Protocol::Https));
    let ca = lab.ca.to_string_lossy().into_owned();
    let out = run(
        Peer::Openssl.command([
            "s_client",
            "-connect",
            &connect,
            "-servername",
            "localhost",
            "-verify_hostname",
            "localhost",
            "-CAfile",
            &ca,
            "-showcerts",
        ]),
        PEER_LIMIT,
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(
        text.contains(" 0 s:CN = localhost") || text.contains(" 0 s:CN=localhost"),
        "leaf first: {text}"
    );
    assert!(text.contains(" 1 s:"), "chain includes the CA: {text}");

    // The leaf as the server sent it, through `openssl x509`.
    let leaf_pem: String = text
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|rest| rest.split("-----END CERTIFICATE-----").next())
        .map(|b64| format!("-----BEGIN CERTIFICATE-----{b64}-----END CERTIFICATE-----\n"))
        .expect("a certificate in the s_client output");
    let dir = tempfile::tempdir().unwrap();
    let leaf = dir.path().join("leaf.pem");
    std::fs::write(&leaf, leaf_pem).unwrap();
    let leaf = leaf.to_string_lossy().into_owned();
    let out = run(
        Peer::Openssl.command(["x509", "-noout", "-text", "-in", &leaf]),
        PEER_LIMIT,
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
        "CA:FALSE",
        "TLS Web Server Authentication",
    ] {
        assert!(text.contains(needle), "leaf lacks {needle}: {text}");
    }

    // TLS 1.2 and 1.3 both work; the lab offers nothing older.
    for version in ["-tls1_2", "-tls1_3"] {
        let out = run(
            Peer::Openssl.command([
                "s_client",
                "-connect",
                &connect,
                "-servername",
                "localhost",
                "-CAfile",
                &ca,
                version,
            ]),
            PEER_LIMIT,
        )
        .await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{version}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_keep_alive_is_honoured_and_absolute_form_targets_route() {
    let lab = TestLab::start(&[Protocol::Http], |_| {}).await;
    let base = lab.url(Protocol::Http);
    // An HTTP/1.0 client that asks to keep the connection (ab -k does) can reuse it only if
    // the answer says `Connection: keep-alive`.
    let first = format!("{base}echo?msg=one");
    let second = format!("{base}echo?msg=two");
    let out = run(
        Peer::Curl.command([
            "-sv",
            "--max-time",
            "10",
            "--http1.0",
            "-H",
            "Connection: keep-alive",
            &first,
            &second,
        ]),
        PEER_LIMIT,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "onetwo");
    assert!(stderr.contains("< connection: keep-alive"), "{stderr}");
    assert!(stderr.contains("Re-using existing connection"), "{stderr}");

    // Absolute-form (what clients send to proxies), which origin servers must accept too.
    let absolute = format!("{base}echo?msg=absolute");
    let (status, body) = curl(&lab, &base, &["--request-target", &absolute]).await;
    assert_eq!((status, body.as_str()), (200, "absolute"));
}

/// Drives `openssl s_client` interactively: each line of `script` is written after the
/// previous response (or command) had time to land; returns everything it printed (stdout,
/// then stderr).
async fn s_client_session(lab: &TestLab, version: &str, script: &[&str]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let connect = format!("127.0.0.1:{}", lab.port(Protocol::Https));
    let ca = lab.ca.to_string_lossy().into_owned();
    let mut child = Peer::Openssl
        .command([
            "s_client",
            "-connect",
            &connect,
            "-servername",
            "localhost",
            "-CAfile",
            &ca,
            "-crlf",
            version,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_client starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    // s_client prints its commands' effects (KEYUPDATE, RENEGOTIATING) on stderr.
    let reader = tokio::spawn(async move {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let _ = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        )
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for line in script {
        // s_client may have ended the connection itself (it gives up after a refused
        // renegotiation); what it printed until then is what the test checks.
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    drop(stdin);
    let _ = tokio::time::timeout(PEER_LIMIT, child.wait()).await;
    tokio::time::timeout(PEER_LIMIT, reader)
        .await
        .expect("s_client output in time")
        .expect("reader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_key_updates_mid_connection_keep_the_https_app_answering() {
    let lab = TestLab::start(&[Protocol::Https], |_| {}).await;
    let request = "GET /echo?msg=KEYS%d HTTP/1.1\nHost: localhost\n\n";
    let (first, second, third) = (
        request.replace("%d", "1"),
        request.replace("%d", "2"),
        request.replace("%d", "3"),
    );
    // `K`: a KeyUpdate asking the server to update too; `k`: one that does not.
    let text = s_client_session(
        &lab,
        "-tls1_3",
        &[&first, "K\n", &second, "k\n", &third, "Q\n"],
    )
    .await;
    assert!(
        text.matches("KEYUPDATE").count() == 2,
        "s_client sent both key updates: {text}"
    );
    for msg in ["KEYS1", "KEYS2", "KEYS3"] {
        assert!(
            text.contains(msg),
            "answer to {msg} after the key updates: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_1_2_renegotiation_is_refused_with_a_no_renegotiation_alert() {
    let lab = TestLab::start(&[Protocol::Https], |_| {}).await;
    let request = "GET /echo?msg=BEFORE-RENEG HTTP/1.1\nHost: localhost\n\n";
    let text = s_client_session(&lab, "-tls1_2", &[request, "R\n", "Q\n"]).await;
    assert!(text.contains("BEFORE-RENEG"), "served before: {text}");
    assert!(text.contains("RENEGOTIATING"), "s_client tried: {text}");
    // The refusal is a no_renegotiation alert sealed under the session's keys, which OpenSSL
    // reads (and then gives up on the connection, its choice for a refused renegotiation).
    assert!(
        text.contains("no renegotiation"),
        "refused by alert: {text}"
    );
}
