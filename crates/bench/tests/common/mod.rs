//! What the tests that run the `protolab-bench` binary share: the `protolab` binary built
//! beside them, one bounded bench run with its JSON results, and the `--skip` usage check.

// Each test binary compiles this module and uses only its part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// `protolab`, built next to this test's binaries.
pub(crate) fn protolab() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_protolab-bench"));
    let path = bench.with_file_name("protolab");
    assert!(
        path.is_file(),
        "{} not found: build it first with `cargo build -p protolab` (same profile as this test)",
        path.display()
    );
    path
}

/// What one `protolab-bench` run printed and wrote with `--json`.
pub(crate) struct BenchRun {
    pub(crate) stdout: String,
    pub(crate) results: serde_json::Value,
}

/// Runs `protolab-bench ARGS --protolab PROTOLAB --json FILE` (`args`: the subcommand and its
/// flags, split on white space), prints its output, asserts it succeeded and returns its
/// table and JSON results.
pub(crate) fn run_bench(args: &str) -> BenchRun {
    let args: Vec<&str> = args.split_whitespace().collect();
    let subcommand = args.first().copied().unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "protolab-bench-{subcommand}-test-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("results.json");
    let out = Command::new(env!("CARGO_BIN_EXE_protolab-bench"))
        .args(&args)
        .arg("--protolab")
        .arg(protolab())
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap_or_else(|e| panic!("running protolab-bench {subcommand}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "protolab-bench {subcommand} failed: {stderr}"
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON results")).expect("JSON");
    let _ = std::fs::remove_dir_all(&dir);
    BenchRun { stdout, results }
}

/// `protolab-bench SUBCOMMAND --skip UNKNOWN` exits 2 and lists the servers it knows.
pub(crate) fn assert_unknown_skip_is_a_usage_error(subcommand: &str, unknown: &str, known: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_protolab-bench"))
        .args([subcommand, "--skip", unknown])
        .output()
        .unwrap_or_else(|e| panic!("running protolab-bench {subcommand}: {e}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(known));
}
