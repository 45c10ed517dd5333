// Running `protolab compare` through the binary and reading its results.json, for the
// compare and WAN tests.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs the protolab binary with `--home home` and `args`.
pub(crate) fn protolab(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_protolab"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// `protolab --json compare ARGS`, which must succeed, as parsed JSON.
pub(crate) fn compare_json(home: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json", "compare"];
    all.extend_from_slice(args);
    let out = protolab(home, &all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "compare failed: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("compare --json printed no JSON ({e}); stderr:\n{stderr}"))
}

/// The run of `protocol` under `workload` in a results.json.
pub(crate) fn run_of<'a>(results: &'a Value, protocol: &str, workload: &str) -> &'a Value {
    results["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["protocol"] == protocol && r["workload"] == workload)
        .unwrap_or_else(|| panic!("no {protocol} {workload} run"))
}

/// A JSON number, or a panic naming what was there instead.
pub(crate) fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}
