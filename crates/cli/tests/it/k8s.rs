// deploy/k8s: kustomize renders it (kubectl's built-in kustomize) and every resource passes
// the Kubernetes schemas offline (PyPI `kubernetes-validate`, which bundles them), strictly
// (no unknown fields); the resources the deployment needs are there, hardened.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step should panic right there"
)]

use std::process::Command;

use protolab_test_support::{repo_root, require};

fn render() -> String {
    let kubectl = require(
        "kubectl",
        "apt-get install -y kubernetes-client (its kubectl renders kustomize)",
    );
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(repo_root().join("deploy/k8s"))
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("YAML is UTF-8")
}

/// Runs kubernetes-validate on `yaml`; returns (passed, its output).
fn validate(yaml: &str) -> (bool, String) {
    let validator = require(
        "kubernetes-validate",
        "pip install -r tests/peers/requirements.txt",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(validator)
        .arg("--strict")
        .arg(&file)
        .output()
        .expect("kubernetes-validate runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn summary(yaml: &str) -> Vec<serde_json::Value> {
    use std::io::Write as _;
    let mut child = Command::new(require("python3", "apt-get install -y python3"))
        .arg(repo_root().join("tests/peers/k8s_summary.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "k8s_summary.py failed");
    serde_json::from_slice(&out.stdout).expect("summary JSON")
}

#[test]
fn manifests_render_and_pass_the_kubernetes_schemas() {
    let yaml = render();
    let (passed, report) = validate(&yaml);
    assert!(passed, "{report}");
    println!("{report}");

    let resources = summary(&yaml);
    let find = |kind: &str, name: &str| {
        resources
            .iter()
            .find(|r| r["kind"] == kind && r["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
    };
    for role in ["http", "https", "ws", "wss", "proxy", "hub", "redis"] {
        find("Deployment", role);
        find("Service", role);
    }
    let ingress = find("Ingress", "protolab");
    assert_eq!(
        ingress["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"],
        "3600"
    );
    let hpa = find("HorizontalPodAutoscaler", "hub");
    assert_eq!(hpa["target"], "hub");
    let job = find("Job", "load");
    assert!(job["parallelism"].as_u64().unwrap_or(0) >= 2, "{job}");
    let args = &job["containers"][0]["args"];
    assert!(
        args[0] == "bench" && args.as_array().unwrap().contains(&"--json".into()),
        "{job}"
    );
    for r in &resources {
        for c in r["containers"].as_array().into_iter().flatten() {
            let image = c["image"].as_str().unwrap_or_default();
            assert!(
                image.starts_with("localhost/protolab"),
                "{r}: image {image}"
            );
            assert_eq!(c["run_as_non_root"], true, "{r}");
            assert_eq!(c["read_only_root"], true, "{r}");
            assert_eq!(c["no_privilege_escalation"], true, "{r}");
            assert_eq!(c["capabilities_dropped"], serde_json::json!(["ALL"]), "{r}");
        }
    }
}

/// The validator is no rubber stamp: a replica count that is not a number fails it.
#[test]
fn the_schema_check_rejects_a_broken_manifest() {
    let yaml = render();
    let broken = yaml.replacen("replicas: 1", "replicas: one", 1);
    assert_ne!(broken, yaml);
    let (passed, report) = validate(&broken);
    assert!(
        !passed,
        "a Deployment with `replicas: one` passed:\n{report}"
    );
}
