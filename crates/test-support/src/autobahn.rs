//! Autobahn|Testsuite (`wstest`, the Python 3 port that `scripts/autobahn/build-py3.sh`
//! builds): its fuzzing server for testing a WebSocket client ([`FuzzingServer`]), its fuzzing
//! client for testing a server ([`fuzzing_client`]), the cases a run takes ([`cases`]), and the
//! `index.json` both write ([`Verdicts`]).
//!
//! Verdicts are the suite's own: `OK`, `NON-STRICT` (allowed but not the strict reading of
//! RFC 6455), `INFORMATIONAL`, `UNIMPLEMENTED` and `FAILED`. [`Verdicts::check`] fails on any
//! `FAILED`, on `UNIMPLEMENTED`, on a close that was not clean, and on a `NON-STRICT` case not
//! in an explicit allowance list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::repo_root;

/// The `wstest` launcher, or a panic that says how to build it: a missing suite is a failed
/// test, never a skip. `$AUTOBAHN_HOME` overrides the build folder (default
/// `~/.cache/autobahn-py3`, as build-py3.sh uses).
pub fn wstest() -> PathBuf {
    let home = std::env::var_os("AUTOBAHN_HOME").map_or_else(
        || {
            let base = std::env::var_os("XDG_CACHE_HOME").map_or_else(
                || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"),
                PathBuf::from,
            );
            base.join("autobahn-py3")
        },
        PathBuf::from,
    );
    let wstest = home.join("venv/bin/wstest");
    assert!(
        wstest.is_file(),
        "peer missing: Autobahn|Testsuite is not built at {}; run `{}` (scripts/install-test-peers does it)",
        wstest.display(),
        repo_root().join("scripts/autobahn/build-py3.sh").display()
    );
    wstest
}

/// Starts `wstest ARGS -s DIR/spec.json` in `dir` with `spec` written there, its output going
/// to `DIR/wstest.log`; killed when dropped.
fn spawn(wstest: &Path, args: &[&str], spec: &serde_json::Value, dir: &Path) -> Child {
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).expect("write spec.json");
    let log = std::fs::File::create(dir.join("wstest.log")).expect("wstest log");
    Command::new(wstest)
        .args(args)
        .arg("-s")
        .arg(&spec_path)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("wstest starts")
}

/// `wstest -m fuzzingserver`: the suite acting as a server, for a client under test. The
/// client fetches [`case_count_url`](Self::case_count_url), runs each case at
/// [`case_url`](Self::case_url) echoing every text and binary message back unchanged, and
/// asks for the report at [`report_url`](Self::report_url). Killed when dropped.
#[derive(Debug)]
pub struct FuzzingServer {
    child: Child,
    port: u16,
    outdir: tempfile::TempDir,
}

impl FuzzingServer {
    /// Starts the suite on a free loopback port with `cases` (patterns such as `1.*` or
    /// `12.1.3`) and returns once it accepts connections.
    pub async fn start(cases: &[&str]) -> Self {
        let wstest = wstest();
        let outdir = tempfile::tempdir().expect("report folder");
        let port = crate::free_port();
        let spec = serde_json::json!({
            "url": format!("ws://127.0.0.1:{port}"),
            "outdir": outdir.path().join("reports"),
            "options": {"failByDrop": false},
            "cases": cases,
            "exclude-cases": [],
            "exclude-agent-cases": {},
        });
        let child = spawn(
            &wstest,
            &["-m", "fuzzingserver", "--webport", "0"],
            &spec,
            outdir.path(),
        );
        let mut server = Self {
            child,
            port,
            outdir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "wstest exited with {status} before listening:\n{}",
                    server.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "wstest did not listen within 30 s:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    /// `ws://127.0.0.1:PORT/getCaseCount`: answers the number of cases, then closes.
    pub fn case_count_url(&self) -> String {
        format!("ws://127.0.0.1:{}/getCaseCount", self.port)
    }

    /// `/getCaseInfo?case=N`: answers `{"id": "1.1.1", "description": ...}`.
    pub fn case_info_url(&self, case: u32) -> String {
        format!("ws://127.0.0.1:{}/getCaseInfo?case={case}", self.port)
    }

    /// `/runCase?case=N&agent=AGENT`: case N (1-based) for `agent`.
    pub fn case_url(&self, case: u32, agent: &str) -> String {
        format!(
            "ws://127.0.0.1:{}/runCase?case={case}&agent={agent}",
            self.port
        )
    }

    /// `/updateReports?agent=AGENT`: writes `index.json` for `agent`, then closes.
    pub fn report_url(&self, agent: &str) -> String {
        format!("ws://127.0.0.1:{}/updateReports?agent={agent}", self.port)
    }

    /// The verdicts for `agent` once the report was written.
    pub fn verdicts(&self, agent: &str) -> Verdicts {
        Verdicts::read(&self.outdir.path().join("reports/index.json"), agent)
    }

    /// wstest's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.outdir.path().join("wstest.log")).unwrap_or_default()
    }
}

/// Every case of categories 1–10 and 12–13 (`PROTOLAB_AUTOBAHN_CASES=all`).
pub const ALL_CASES: &str = "1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*,12.*,13.*";

/// The cases a run takes: `PROTOLAB_AUTOBAHN_CASES` (`all`, or comma-separated patterns), else
/// all of 1–10; of 12 (five data sets × 18 sizes and fragmentations) the JSON set whole and the
/// other four up to 64 KiB unfragmented (x.y.1–x.y.9); of 13 (seven negotiations) every
/// negotiation up to 64 KiB unfragmented. Every case category and every set of deflate terms
/// is exercised; only large repetitions of the same are left to `all`, which takes several
/// times as long (the suite's Python compressor is most of it). The suite reads a pattern as a
/// regular expression only if it has a `*`, so ranges are spelled out.
pub fn cases() -> Vec<String> {
    match std::env::var("PROTOLAB_AUTOBAHN_CASES") {
        Ok(all) if all == "all" => ALL_CASES.split(',').map(str::to_owned).collect(),
        Ok(list) => list.split(',').map(str::to_owned).collect(),
        Err(_) => {
            let mut cases: Vec<String> = ["1", "2", "3", "4", "5", "6", "7", "9", "10", "12.1"]
                .iter()
                .map(|c| format!("{c}.*"))
                .collect();
            for (category, sets) in [(12, 2..=5), (13, 1..=7)] {
                for set in sets {
                    cases.extend((1..=9).map(|size| format!("{category}.{set}.{size}")));
                }
            }
            cases
        }
    }
}

/// Runs `wstest -m fuzzingclient` — the suite as a client — against the server at `url`
/// (`ws://` or `wss://`; the suite does not check certificates) with `cases`, and returns the
/// verdicts. Panics, with the suite's log, if it does not finish within `limit`.
pub async fn fuzzing_client(url: &str, cases: &[String], agent: &str, limit: Duration) -> Verdicts {
    let wstest = wstest();
    let outdir = tempfile::tempdir().expect("report folder");
    let spec = serde_json::json!({
        "outdir": outdir.path().join("reports"),
        "servers": [{"agent": agent, "url": url}],
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    });
    let mut child = spawn(&wstest, &["-m", "fuzzingclient"], &spec, outdir.path());
    let log_path = outdir.path().join("wstest.log");
    let status = tokio::time::timeout(limit, child.wait()).await;
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        Ok(Ok(status)) if status.success() => {}
        Ok(other) => panic!("wstest against {url} ended with {other:?}:\n{}", log()),
        Err(_) => panic!(
            "wstest against {url} did not finish within {limit:?}:\n{}",
            log()
        ),
    }
    Verdicts::read(&outdir.path().join("reports/index.json"), agent)
}

/// One case's outcome in `index.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// `OK`, `NON-STRICT`, `INFORMATIONAL`, `UNIMPLEMENTED` or `FAILED`.
    pub behavior: String,
    /// The closing handshake's verdict, in the same terms.
    pub behavior_close: String,
    /// The close code the peer under test sent, if any.
    pub remote_close_code: Option<u64>,
    /// How long the case took, milliseconds.
    pub duration_ms: u64,
}

/// Every case's outcome for one agent, by case id (`"1.1.1"`), in the suite's order.
#[derive(Debug, Clone)]
pub struct Verdicts(pub BTreeMap<CaseId, CaseResult>);

/// A case id compared number by number (`9.10.1` after `9.2.1`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CaseId(pub Vec<u32>);

impl std::fmt::Display for CaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

impl Verdicts {
    /// Reads `agent`'s results from an `index.json` the suite wrote.
    pub fn read(index: &Path, agent: &str) -> Self {
        let text = std::fs::read_to_string(index)
            .unwrap_or_else(|e| panic!("reading {}: {e}", index.display()));
        let json: serde_json::Value = serde_json::from_str(&text).expect("index.json is JSON");
        let cases = json
            .get(agent)
            .and_then(serde_json::Value::as_object)
            .unwrap_or_else(|| panic!("index.json has no results for agent `{agent}`"));
        let field = |v: &serde_json::Value, k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?")
                .to_owned()
        };
        Self(
            cases
                .iter()
                .map(|(id, v)| {
                    let id = CaseId(id.split('.').filter_map(|n| n.parse().ok()).collect());
                    let result = CaseResult {
                        behavior: field(v, "behavior"),
                        behavior_close: field(v, "behaviorClose"),
                        remote_close_code: v
                            .get("remoteCloseCode")
                            .and_then(serde_json::Value::as_u64),
                        duration_ms: v
                            .get("duration")
                            .and_then(serde_json::Value::as_u64)
                            .unwrap_or(0),
                    };
                    (id, result)
                })
                .collect(),
        )
    }

    /// Counts of each verdict per top-level category, e.g. `1: OK 16`.
    pub fn summary(&self) -> String {
        let mut by_category: BTreeMap<u32, BTreeMap<&str, usize>> = BTreeMap::new();
        for (id, r) in &self.0 {
            let category = id.0.first().copied().unwrap_or(0);
            *by_category
                .entry(category)
                .or_default()
                .entry(r.behavior.as_str())
                .or_default() += 1;
        }
        let mut out = String::new();
        for (category, counts) in by_category {
            let counts: Vec<String> = counts.iter().map(|(b, n)| format!("{b} {n}")).collect();
            out.push_str(&format!("{category}: {}\n", counts.join(", ")));
        }
        out
    }

    /// `Err` listing every case that `FAILED`, was `UNIMPLEMENTED`, closed badly, or is
    /// `NON-STRICT` without being in `allowed_non_strict` (ids like `"6.4.3"`).
    pub fn check(&self, allowed_non_strict: &[&str]) -> Result<(), String> {
        let ok = |b: &str| matches!(b, "OK" | "INFORMATIONAL");
        let bad: Vec<String> = self
            .0
            .iter()
            .filter(|(id, r)| {
                let allowed = allowed_non_strict.contains(&id.to_string().as_str());
                let non_strict = |b: &str| b == "NON-STRICT" && allowed;
                !(ok(&r.behavior) || non_strict(&r.behavior))
                    || !(ok(&r.behavior_close) || non_strict(&r.behavior_close))
            })
            .map(|(id, r)| {
                format!(
                    "{id}: {} / close {} (code {:?})",
                    r.behavior, r.behavior_close, r.remote_close_code
                )
            })
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("\n"))
        }
    }
}
