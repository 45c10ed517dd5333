//! RS256 and ES256 subscriber tokens: keys made by `openssl` (RSA 2048, EC P-256), tokens
//! signed by PyJWT (`tests/peers/jwt_sign.py`), checked by the hub on a WebSocket upgrade. A
//! token signed with another key, for another algorithm, HS256 keyed with the public key
//! (algorithm confusion) or `alg: none` is refused with 401 and gets nothing.

use std::path::{Path, PathBuf};

use protolab_hub::auth::JwtVerifier;
use protolab_test_support::Peer;

use crate::ws::{args, subscribe};
use crate::{offsets, publish_n, python_subscriber, TestHub};

/// A private key made by `openssl genpkey` with `options`, and its public key; the paths.
async fn key_pair(dir: &Path, name: &str, options: &[&str]) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let made = Peer::Openssl
        .command(["genpkey"])
        .args(options)
        .arg("-out")
        .arg(&private)
        .output()
        .await
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "openssl genpkey {options:?}: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let made = Peer::Openssl
        .command(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .output()
        .await
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "openssl pkey -pubout: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    (private, public)
}

async fn rsa(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    key_pair(
        dir,
        name,
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    )
    .await
}

async fn ec(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    key_pair(
        dir,
        name,
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    )
    .await
}

/// A token for channel `ops`, valid a minute, from PyJWT (or by hand for HS256 and none).
async fn sign(alg: &str, key: Option<&Path>) -> String {
    let mut cmd = Peer::JwtSigner.command(["--alg", alg, "--channels", "ops"]);
    if let Some(key) = key {
        cmd.arg("--key").arg(key);
    }
    let out = cmd.output().await.expect("jwt_sign.py runs");
    assert!(
        out.status.success(),
        "jwt_sign.py --alg {alg} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn hub_for(public_key: &Path) -> TestHub {
    let pem = std::fs::read(public_key).expect("public key");
    let verifier = JwtVerifier::from_public_key_pem(&pem).expect("an RSA or EC public key");
    let hub = TestHub::start(|_, app| app.jwt = Some(verifier)).await;
    publish_n(&hub, "ops", 1, None).await;
    hub
}

/// What a WebSocket subscriber with `token` gets: `Ok(offsets)` or `Err(status)`.
async fn subscribe_with(hub: &TestHub, token: &str) -> Result<Vec<u64>, u64> {
    let got = python_subscriber(&args(
        &hub.ws_url(&format!("?token={token}")),
        &[
            "--send",
            &subscribe(&[("ops", Some("start".into()))]),
            "--notifications",
            "1",
            "--timeout",
            "10",
        ],
    ))
    .await;
    match got.first() {
        Some(first) if first["type"] == "refused" => {
            assert!(offsets(&got, "ops").is_empty());
            Err(first["status"].as_u64().expect("status"))
        }
        _ => Ok(offsets(&got, "ops")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_from_pyjwt_pass_and_forgeries_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (private, public) = rsa(dir.path(), "rsa").await;
    let (other, _) = rsa(dir.path(), "other").await;
    let (ec_private, _) = ec(dir.path(), "ec").await;
    let hub = hub_for(&public).await;

    let good = sign("RS256", Some(&private)).await;
    assert_eq!(subscribe_with(&hub, &good).await, Ok(vec![1]));
    for (what, token) in [
        ("another RSA key", sign("RS256", Some(&other)).await),
        ("an ES256 token", sign("ES256", Some(&ec_private)).await),
        (
            "HS256 keyed with the public key",
            sign("HS256", Some(&public)).await,
        ),
        ("alg none", sign("none", None).await),
    ] {
        assert_eq!(subscribe_with(&hub, &token).await, Err(401), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_tokens_from_pyjwt_pass_and_forgeries_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (private, public) = ec(dir.path(), "ec").await;
    let (other, _) = ec(dir.path(), "other").await;
    let (rsa_private, _) = rsa(dir.path(), "rsa").await;
    let hub = hub_for(&public).await;

    let good = sign("ES256", Some(&private)).await;
    assert_eq!(subscribe_with(&hub, &good).await, Ok(vec![1]));
    for (what, token) in [
        ("another EC key", sign("ES256", Some(&other)).await),
        ("an RS256 token", sign("RS256", Some(&rsa_private)).await),
        (
            "HS256 keyed with the public key",
            sign("HS256", Some(&public)).await,
        ),
        ("alg none", sign("none", None).await),
    ] {
        assert_eq!(subscribe_with(&hub, &token).await, Err(401), "{what}");
    }
}
