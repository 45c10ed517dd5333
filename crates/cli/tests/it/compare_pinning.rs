// `protolab compare` keeps the lab's runtime threads and the load generator's on separate
// CPUs when it may use two or more: read from the kernel (/proc/PID/task/*/status,
// Cpus_allowed_list) while a run is under way, not from anything compare prints. And a
// debug build says its figures are not to be compared.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step should panic right there"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child when dropped, so a failing test leaves no compare running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `0-2,5` as the kernel writes it, as a set.
fn parse_cpu_list(list: &str) -> BTreeSet<usize> {
    let mut cpus = BTreeSet::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => {
                cpus.insert(part.parse().unwrap());
            }
        }
    }
    cpus
}

fn cpus_allowed(status: &str) -> Option<BTreeSet<usize>> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(parse_cpu_list)
}

/// Each thread of `pid` whose name starts with `prefix`: its CPUs, by thread id.
fn threads_cpus(pid: u32, prefix: &str) -> BTreeMap<String, BTreeSet<usize>> {
    let mut found = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        // A thread may end between the listing and the reads: skip it.
        let (Ok(comm), Ok(status)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue;
        };
        if comm.trim_end().starts_with(prefix) {
            if let Some(cpus) = cpus_allowed(&status) {
                found.insert(task.file_name().to_string_lossy().into_owned(), cpus);
            }
        }
    }
    found
}

fn start_compare(home: &Path) -> KillOnDrop {
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_protolab"))
            .arg("--home")
            .arg(home)
            .args([
                "compare",
                "--protocols",
                "ws",
                "--workloads",
                "push",
                "--rounds",
                "1",
                "--duration",
                "4s",
                "--no-report",
            ])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn lab_and_load_threads_run_on_separate_cpus() {
    let allowed = cpus_allowed(&std::fs::read_to_string("/proc/self/status").unwrap()).unwrap();
    assert!(
        allowed.len() >= 2,
        "this test needs two CPUs to see them shared out; it may use {allowed:?}"
    );
    let home = tempfile::tempdir().unwrap();
    let mut compare = start_compare(home.path());
    let pid = compare.0.id();
    // Both runtimes are up once the first run starts; sample until each side was seen.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (lab, load) = loop {
        let lab = threads_cpus(pid, "pl-lab");
        let load = threads_cpus(pid, "pl-load");
        if !lab.is_empty() && !load.is_empty() {
            break (lab, load);
        }
        assert!(
            compare.0.try_wait().unwrap().is_none(),
            "compare ended before its threads were seen"
        );
        assert!(
            Instant::now() < deadline,
            "no pl-lab and pl-load threads seen"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let lab_cpus: BTreeSet<usize> = lab.values().flatten().copied().collect();
    let load_cpus: BTreeSet<usize> = load.values().flatten().copied().collect();
    assert!(
        lab_cpus.is_disjoint(&load_cpus),
        "lab threads {lab:?} and load threads {load:?} share CPUs"
    );
    assert!(
        lab_cpus.is_subset(&allowed) && load_cpus.is_subset(&allowed),
        "threads run outside the CPUs the process may use ({allowed:?}): lab {lab:?}, load {load:?}"
    );
    // Every CPU goes to one side, the lab's first.
    let all: BTreeSet<usize> = lab_cpus.union(&load_cpus).copied().collect();
    assert_eq!(all, allowed);
    assert!(lab_cpus.iter().max() < load_cpus.iter().min());
    let status = compare.0.wait().unwrap();
    assert!(status.success(), "compare failed: {status}");
}

/// The tests run a debug build of protolab, whose figures do not compare protocols
/// (unoptimised per-byte code costs WebSocket more than HTTP): every run says so.
#[test]
fn a_debug_build_says_its_figures_do_not_compare_protocols() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_protolab"))
        .arg("--home")
        .arg(home.path())
        .args([
            "--json",
            "compare",
            "--protocols",
            "ws",
            "--workloads",
            "push",
            "--rounds",
            "1",
            "--duration",
            "1s",
            "--no-report",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warned = results["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().is_some_and(|w| w.contains("debug build")));
    assert_eq!(warned, cfg!(debug_assertions), "{}", results["warnings"]);
}
