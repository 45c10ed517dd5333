// `protolab compare` says when the machine, not the protocol, limited a run: its run-queue
// wait for the load generator's and the lab's threads is checked against pidstat's %wait
// (sysstat) for the same threads of the same process, on a run pinned to one core beside a
// busy loop (the warning must fire) and on a light run left alone (it must not); and a
// userspace WAN link starved of CPU the same way is reported as behind its schedule, which
// the measured round trips (time ÷ RTT) confirm. The WAN case needs root, as --rtt does.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step should panic right there"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

use protolab_test_support::require;
use serde_json::Value;

use crate::results::number;

/// compare's threshold (`contention::WAIT_LIMIT`), in percent as pidstat prints it.
const WAIT_LIMIT_PERCENT: f64 = 10.0;

/// Kills the child when dropped, so a failing test leaves no pidstat running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A shell spinning on CPU 0 under `timeout`, stopped with SIGTERM when dropped: `timeout`
/// passes SIGTERM on to the shell, where SIGKILL would leave the shell spinning. The timeout
/// only bounds a test that died without dropping it: it must outlast a compare run that
/// starts late on a loaded machine (at 20 s, one run found CPU 0 free and its link on time).
struct BusyLoop(Child);

impl BusyLoop {
    fn start() -> Self {
        Self(
            Command::new(require("timeout", "apt-get install -y coreutils"))
                .args([
                    "120",
                    "taskset",
                    "-c",
                    "0",
                    "sh",
                    "-c",
                    "while :; do :; done",
                ])
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for BusyLoop {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// What compare said and what pidstat saw of the same run.
struct Observed {
    results: Value,
    /// Mean over the seconds the group ran of its threads' %wait added up.
    pidstat_load_wait: f64,
    pidstat_lab_wait: f64,
}

/// Where compare runs.
#[derive(Clone, Copy, PartialEq)]
enum Placement {
    /// Wherever the scheduler puts it.
    Free,
    /// On CPU 0 alone.
    Pinned,
    /// On CPU 0 alone at nice 19: a thread that mostly sleeps (the userspace WAN link) is
    /// run at once on waking beside busy loops of the default priority, so only a lower
    /// priority starves it whatever else the machine runs.
    PinnedLowPriority,
}

/// Runs `protolab --json compare ARGS` placed as asked, with pidstat sampling its threads
/// every second.
fn observe(home: &Path, placement: Placement, args: &[&str]) -> Observed {
    let pidstat = require("pidstat", "apt-get install -y sysstat");
    let bin = env!("CARGO_BIN_EXE_protolab");
    // nice and taskset exec what they run: the pid is compare's own.
    let mut cmd = match placement {
        Placement::Free => Command::new(bin),
        Placement::Pinned => {
            let mut c = Command::new(require("taskset", "apt-get install -y util-linux"));
            c.args(["-c", "0", bin]);
            c
        }
        Placement::PinnedLowPriority => {
            let mut c = Command::new(require("nice", "apt-get install -y coreutils"));
            c.args(["-n", "19"])
                .arg(require("taskset", "apt-get install -y util-linux"))
                .args(["-c", "0", bin]);
            c
        }
    };
    cmd.arg("--home")
        .arg(home)
        .args(["--json", "compare"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let compare = cmd.spawn().unwrap();
    let pid = compare.id().to_string();
    let mut sampler = KillOnDrop(
        Command::new(pidstat)
            .args(["-u", "-t", "-p", &pid, "1"])
            .env("LC_ALL", "C")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = compare.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "compare failed: {stderr}");
    let results: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("compare --json printed no JSON ({e}); stderr:\n{stderr}"));
    let _ = sampler.0.kill();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut sampler.0.stdout.take().unwrap(), &mut text).unwrap();
    Observed {
        pidstat_load_wait: mean_wait(&text, &["pl-load"]),
        // The lab's runtime and the WS app's event loop threads.
        pidstat_lab_wait: mean_wait(&text, &["pl-lab", protolab_server::WS_LOOP_THREADS]),
        results,
    }
}

/// From `pidstat -u -t` lines (`TIME UID TGID TID %usr %system %guest %wait %CPU CPU
/// Command`), the %wait of the threads whose name holds one of `group` added up per second,
/// averaged over the seconds they were busy (ran or waited), so start-up and shutdown do not
/// dilute it.
fn mean_wait(pidstat: &str, group: &[&str]) -> f64 {
    let mut by_second: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
    let mut seen = false;
    for line in pidstat.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 11 || !group.iter().any(|g| f[10].contains(g)) {
            continue;
        }
        seen = true;
        let (Ok(wait), Ok(cpu)) = (f[7].parse::<f64>(), f[8].parse::<f64>()) else {
            continue;
        };
        let slot = by_second.entry(f[0]).or_default();
        slot.0 += wait;
        slot.1 += cpu;
    }
    let busy: Vec<f64> = by_second
        .values()
        .filter(|(wait, cpu)| wait + cpu > 0.0)
        .map(|(wait, _)| *wait)
        .collect();
    assert!(
        seen,
        "pidstat saw none of the {group:?} threads:\n{pidstat}"
    );
    // A light run's lab threads can stay under pidstat's tick every second (the echo runs on
    // the event loop, the handshakes on the runtime): no second busy, no wait seen.
    if busy.is_empty() {
        return 0.0;
    }
    busy.iter().sum::<f64>() / busy.len() as f64
}

fn judged(o: &Observed) -> (&Value, f64, f64) {
    let run = &o.results["runs"][0];
    let c = &run["contention"];
    (
        run,
        number(&c["client_wait_share"]) * 100.0,
        number(&c["server_wait_share"]) * 100.0,
    )
}

#[test]
fn a_busy_loop_on_the_same_core_is_reported_and_pidstat_agrees() {
    let home = tempfile::tempdir().unwrap();
    // Bounded twice: stopped when the test ends, and by timeout if the test dies first.
    let _busy = BusyLoop::start();
    let o = observe(
        home.path(),
        Placement::Pinned,
        &[
            "--protocols",
            "ws",
            "--workloads",
            "echo",
            "--sizes",
            "32",
            "-c",
            "2",
            "--rounds",
            "1",
            "--duration",
            "3s",
            "--no-report",
        ],
    );
    let (run, load, lab) = judged(&o);
    assert!(
        o.pidstat_load_wait > WAIT_LIMIT_PERCENT,
        "pidstat: the busy loop did not make the load generator wait ({:.1}%)",
        o.pidstat_load_wait
    );
    assert!(
        (load - o.pidstat_load_wait).abs() < 10.0 && (lab - o.pidstat_lab_wait).abs() < 10.0,
        "compare's run-queue wait (load {load:.1}%, lab {lab:.1}%) is not pidstat's (load {:.1}%, lab {:.1}%)",
        o.pidstat_load_wait,
        o.pidstat_lab_wait
    );
    assert_eq!(run["machine_bound"], true, "{run}");
    let warnings = o.results["warnings"].to_string();
    assert!(
        warnings.contains("the machine, not the protocol, limited 1 of 1 runs")
            && warnings.contains("ws echo 32 B: the load generator's threads waited for a CPU"),
        "{warnings}"
    );
}

#[test]
fn a_light_run_is_machine_bound_only_when_pidstat_sees_waiting() {
    let home = tempfile::tempdir().unwrap();
    let o = observe(
        home.path(),
        Placement::Free,
        &[
            "--protocols",
            "ws",
            "--workloads",
            "echo",
            "--sizes",
            "32",
            "-c",
            "2",
            "--rate",
            "200",
            "--rounds",
            "1",
            "--duration",
            "3s",
            "--no-report",
        ],
    );
    let (run, load, lab) = judged(&o);
    assert!(
        (load - o.pidstat_load_wait).abs() < 10.0,
        "compare's load wait {load:.1}% is not pidstat's {:.1}%",
        o.pidstat_load_wait
    );
    // Tests run side by side: when another test kept this run's threads waiting (pidstat saw
    // it too), a machine-bound verdict is the right one, so the verdict is held to pidstat's
    // figures with a margin either side of the limit.
    let pidstat_worst = o.pidstat_load_wait.max(o.pidstat_lab_wait);
    let flagged = o.results["warnings"]
        .to_string()
        .contains("the machine, not the protocol");
    if pidstat_worst < WAIT_LIMIT_PERCENT - 3.0 && steal(run) < 0.05 {
        assert_eq!(
            run["machine_bound"], false,
            "pidstat: {pidstat_worst:.1}%; {run}"
        );
        assert!(!flagged, "{}", o.results["warnings"]);
    } else if pidstat_worst > WAIT_LIMIT_PERCENT + 3.0 {
        assert_eq!(
            run["machine_bound"], true,
            "pidstat: {pidstat_worst:.1}%, compare load {load:.1}% lab {lab:.1}%; {run}"
        );
        assert!(flagged, "{}", o.results["warnings"]);
    }
}

#[test]
fn a_starved_userspace_wan_link_is_reported_behind_its_schedule() {
    let home = tempfile::tempdir().unwrap();
    let _busy = (BusyLoop::start(), BusyLoop::start());
    let o = observe(
        home.path(),
        Placement::PinnedLowPriority,
        &[
            "--rtt",
            "50ms",
            "--wan-emulator",
            "userspace",
            "--protocols",
            "ws",
            "--workloads",
            "connect",
            "-c",
            "8",
            "--rounds",
            "1",
            "--duration",
            "3s",
            "--no-report",
        ],
    );
    let run = &o.results["runs"][0];
    let link = &run["contention"]["link"];
    assert_eq!(link["behind_schedule"], true, "{run}");
    assert_eq!(run["machine_bound"], true, "{run}");
    let warnings = o.results["warnings"].to_string();
    assert!(
        warnings.contains("the userspace WAN link fell behind its schedule"),
        "{warnings}"
    );
    // The lost time shows in the time a connection took, measured against the RTT.
    let rt = &run["round_trips"];
    assert!(
        number(&rt["measured"]) > number(&rt["counted"]) + 0.1,
        "a link this late should cost measured round trips: {rt}"
    );
}

/// The share of the run a hypervisor stole, as compare read it.
fn steal(run: &Value) -> f64 {
    run["contention"]["steal_share"].as_f64().unwrap_or(0.0)
}
