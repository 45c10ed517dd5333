//! `protolab compare`: start the lab in-process (or use one deployed elsewhere, `--lab`),
//! drive the same workloads over every protocol, print a side-by-side table and write a
//! report folder (`index.html`, `results.json`).
//!
//! The lab and the load generator run on separate runtimes with named threads (`pl-lab`,
//! `pl-load`), so the CPU each side used can be read per thread and charged per message, and
//! a load generator that saturated its threads is reported rather than mistaken for a
//! protocol's limit. A lab elsewhere has no threads here: its CPU is reported as unmeasured.

mod args;
pub mod contention;
mod cpu;
pub mod html;
pub mod model;
mod pinning;
mod progress;
mod protocols;
pub mod ratios;
mod recording;
pub mod remote;
pub mod rounds;
mod schedule;
mod site;
pub mod spread;
pub mod table;
mod timestamp;
pub mod wan;
mod warnings;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use protolab_load::{Config, Payload, Workload};
use protolab_server::Protocol;
use protolab_wire::ws::deflate::Offer;

use crate::Context;
pub use args::{CompareArgs, WorkloadArg};
use model::{Results, Settings};
use protocols::lab_protocol;
pub use protocols::ProtocolArg;
pub use timestamp::{folder_timestamp, rfc3339};

/// Thread name prefixes of the two runtimes (Linux keeps 15 bytes of a thread's name).
const LAB_THREADS: &str = "pl-lab";
const LOAD_THREADS: &str = "pl-load";
/// Said with every run of an unoptimised build: its per-byte loops (WebSocket masking above
/// all) cost the lab and the load generator far more than a release build's, unevenly by
/// protocol, so its ratios are not the protocols'.
const DEBUG_BUILD: &str = "this protolab is a debug build: unoptimised code costs each protocol differently (WebSocket masking most), so these figures do not compare protocols; build with `cargo build --release` and run target/release/protolab";
/// A load generator busier than this (share of its threads' time) is called the bottleneck.
const CLIENT_BOUND_AT: f64 = 0.9;
/// Pause between runs so the previous run's connections finish closing before the next
/// run's clock starts.
const SETTLE: Duration = Duration::from_millis(150);
/// Share of each echo and connect run left out of its rate and echo latency: the
/// connections' set-up, and the first exchanges on cold caches and a runtime still
/// spreading its tasks, moved the figures from run to run.
const WARMUP_SHARE: u32 = 5;

/// Rounds of the default run (a shorter `--duration` without `--rounds` gets fewer, see
/// [`schedule::default_rounds`]). On a shared machine a 0.67 s run's throughput moved by tens of
/// percent between rounds while two protocols measured back to back moved together (per-round
/// ratio spread ~13%, not ~50%); longer runs (2 s, 5 s) drifted apart within a pair, and
/// 0.33 s runs were now and then stalled whole. Seven rounds of 0.5 s keep the default run
/// under 90 s with a median that no two stray rounds move.
const DEFAULT_ROUNDS: usize = 7;
/// Measured time of the default run, split between its runs and rounds.
const DEFAULT_DURATION: Duration = Duration::from_secs(63);
/// The shortest run the default rounds are cut to keep: shorter runs were now and then
/// stalled whole on a busy machine.
const DEFAULT_RUN: Duration = Duration::from_millis(500);
/// The most rounds `--rounds` takes: each round of each run needs its own 100 ms at least.
const MAX_ROUNDS: usize = 100;

/// One planned run (one round of it).
#[derive(Debug, Clone, Copy)]
struct Step {
    protocol: ProtocolArg,
    workload: Workload,
    size: usize,
    /// Which round of the run this is, from 0.
    round: usize,
}

/// The validated plan of a compare run.
#[derive(Debug, Clone)]
pub struct Plan {
    steps: Vec<Step>,
    settings: Settings,
    run_time: Duration,
    push_interval: Duration,
    /// Where to write the capture, if asked for.
    capture: Option<(PathBuf, u64)>,
    /// The lab deployed elsewhere (`--lab`), or `None` to start one in-process.
    remote: Option<remote::RemoteLab>,
    /// Runs a protocol cannot do, and why: reported as warnings.
    skipped: Vec<String>,
}

impl CompareArgs {
    /// Checks the arguments and lays out the runs.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        let mut protocols: Vec<ProtocolArg> = Vec::new();
        for p in &self.protocols {
            if !protocols.contains(p) {
                protocols.push(*p);
            }
        }
        let mut workloads: Vec<Workload> = Vec::new();
        for w in &self.workloads {
            if !workloads.contains(&w.workload()) {
                workloads.push(w.workload());
            }
        }
        let mut sizes: Vec<usize> = Vec::new();
        let asked = match (self.sizes.is_empty(), self.quick) {
            (false, _) => self.sizes.clone(),
            (true, true) => vec![32],
            (true, false) => vec![32, 1 << 10, 64 << 10],
        };
        for s in asked {
            let Ok(s) = usize::try_from(s) else {
                bail_usage!("--sizes {s} is too large for this machine");
            };
            if s > protolab_load::MAX_MESSAGE {
                bail_usage!(
                    "--sizes {s} is larger than the {}-byte maximum message",
                    protolab_load::MAX_MESSAGE
                );
            }
            if !sizes.contains(&s) {
                sizes.push(s);
            }
        }
        ensure_usage!(!sizes.is_empty(), "--sizes needs at least one size");
        ensure_usage!(self.connections >= 1, "--connections must be at least 1");
        if let Some(rate) = self.rate {
            ensure_usage!(
                rate.is_finite() && rate > 0.0,
                "--rate must be a positive number of messages per second"
            );
        }
        ensure_usage!(
            !workloads.contains(&Workload::Push)
                || (Duration::from_millis(1)..=Duration::from_secs(3600))
                    .contains(&self.push_interval),
            "--push-interval must be from 1ms to 1h"
        );
        let mut steps = Vec::new();
        let mut skipped = Vec::new();
        for &workload in &workloads {
            let sizes_here: &[usize] = match workload {
                Workload::Echo => &sizes,
                _ => &sizes[..1],
            };
            for &size in sizes_here {
                for &protocol in &protocols {
                    if let Some(why) = protocol.cannot(workload) {
                        let note =
                            format!("{} {}: skipped, {why}", workload.as_str(), protocol.name());
                        if !skipped.contains(&note) {
                            skipped.push(note);
                        }
                        continue;
                    }
                    steps.push(Step {
                        protocol,
                        workload,
                        size,
                        round: 0,
                    });
                }
            }
        }
        ensure_usage!(
            !steps.is_empty(),
            "nothing to run: no protocol among --protocols can run these workloads (push needs ws, wss, sse, poll, long-poll or grpc; fanin needs http, https, h2 or grpc)"
        );
        let total = self.duration.unwrap_or(if self.quick {
            Duration::from_secs(6)
        } else {
            DEFAULT_DURATION
        });
        let rounds = match (self.rounds, self.quick) {
            (Some(rounds), _) => rounds,
            (None, true) => 1,
            (None, false) => schedule::default_rounds(total, steps.len()),
        };
        ensure_usage!(
            (1..=MAX_ROUNDS).contains(&rounds),
            "--rounds must be from 1 to {MAX_ROUNDS}"
        );
        // Round-robin: every run once per round, so the rounds of one protocol are spread
        // over the whole compare run rather than bunched in one stretch of it.
        let one_round = steps;
        let steps = schedule::rotated_rounds(&one_round, rounds);
        let run_time = total / u32::try_from(steps.len()).unwrap_or(u32::MAX);
        ensure_usage!(
            run_time >= Duration::from_millis(100),
            "--duration {} is too short for {} runs × {rounds} rounds: each needs at least 100 ms; give a longer --duration or fewer --rounds",
            humantime::format_duration(total),
            one_round.len()
        );
        let remote = remote::parse(
            self.lab.as_deref(),
            &self.lab_urls,
            self.lab_ca.as_deref(),
            self.lab_keylog.as_deref(),
            &protocols,
        )?;
        let sse_push = one_round
            .iter()
            .any(|s| s.workload == Workload::Push && s.protocol.protocol() == Protocol::Sse);
        if remote.is_some() && sse_push {
            skipped.push(remote::SSE_FEED_ELSEWHERE.to_owned());
        }
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        // A lab elsewhere leaves every CPU here to the load generator.
        let server_threads = match &remote {
            None => Some(self.server_threads.unwrap_or((cpus / 2).max(1))),
            Some(_) => None,
        };
        let client_threads = self
            .client_threads
            .unwrap_or(cpus.saturating_sub(server_threads.unwrap_or(0)).max(1));
        ensure_usage!(
            server_threads != Some(0) && client_threads >= 1,
            "--server-threads and --client-threads must be at least 1"
        );
        let wan =
            (self.rtt.is_some() || self.loss.is_some() || self.bandwidth.is_some()).then(|| {
                wan::WanSpec {
                    rtt_ms: self.rtt.map_or(0.0, wan::rtt_ms),
                    loss_percent: self.loss,
                    bandwidth: self.bandwidth.clone(),
                    emulator: self.wan_emulator,
                }
            });
        ensure_usage!(
            wan.is_some() || self.wan_emulator.is_none(),
            "--wan-emulator needs --rtt, --loss or --bandwidth"
        );
        ensure_usage!(
            self.wan_emulator != Some(wan::Emulator::Tbf)
                || (self.rtt.is_none() && self.loss.is_none()),
            "--wan-emulator tbf only limits the rate: use netem or userspace for --rtt and --loss"
        );
        let settings = Settings {
            wan,
            protocols: protocols.iter().map(|p| p.name()).collect(),
            payload: if protocols.iter().any(|p| p.deflate()) {
                Payload::Json
            } else {
                Payload::Alphabet
            },
            workloads: workloads.iter().map(|w| w.as_str().to_owned()).collect(),
            sizes: sizes.clone(),
            connections: self.connections,
            run_secs: run_time.as_secs_f64(),
            rounds,
            rate: self.rate,
            push_interval_ms: u64::try_from(self.push_interval.as_millis()).unwrap_or(u64::MAX),
            tls_resumption: self.tls_resume,
            server_threads,
            client_threads,
        };
        Ok(Plan {
            steps,
            settings,
            run_time,
            push_interval: self.push_interval,
            capture: None,
            remote,
            skipped,
        })
    }
}

impl Plan {
    /// Whether sse echo runs share the lab with a push workload's fast SSE feed.
    fn sse_pushes_during_echo(&self) -> bool {
        let has = |w: Workload| {
            self.steps
                .iter()
                // poll and long-poll read the same feed as sse.
                .any(|s| s.workload == w && s.protocol.protocol() == Protocol::Sse)
        };
        has(Workload::Push) && has(Workload::Echo)
    }

    /// How often the SSE feed pushes: `--push-interval` when a push run needs it, otherwise
    /// the lab's default 5 s, so other runs see few pushes.
    fn event_interval(&self) -> Duration {
        if self.steps.iter().any(|s| s.workload == Workload::Push) {
            self.push_interval
        } else {
            Duration::from_secs(5)
        }
    }
}

/// What a finished compare run produced.
#[derive(Debug)]
pub struct Outcome {
    /// Everything measured.
    pub results: Results,
    /// The report folder, if one was written.
    pub report_dir: Option<PathBuf>,
}

/// Runs `protolab compare`: prints the table (or `--json`), writes the report folder.
pub async fn run(args: CompareArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut plan = args.plan()?;
    let planned = plan.steps.len();
    let baseline = match &args.baseline {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the baseline {}", path.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("the baseline {} is not JSON", path.display()))?;
            Some((path.clone(), value))
        }
        None => None,
    };
    let report_dir = if args.no_report {
        None
    } else {
        Some(args.out.clone().unwrap_or_else(|| {
            PathBuf::from("protolab-report").join(folder_timestamp(SystemTime::now()))
        }))
    };
    if args.capture {
        if let Some(dir) = &report_dir {
            plan.capture = Some((dir.join("capture.pcapng"), args.capture_max));
        }
    }
    let stop = crate::signals::StopFlag::install(
        "interrupted: finishing the current run, then writing what was measured",
    )?;
    let ctx2 = ctx.clone();
    let flag = stop.flag();
    let measured = tokio::task::spawn_blocking(move || measure(&plan, &ctx2, &flag)).await;
    drop(stop);
    let results = measured.context("the compare run panicked")??;
    if let Some(dir) = &report_dir {
        write_report(dir, &results)?;
    }
    if let Some(c) = &results.capture {
        match &c.secrets_from {
            Some(from) => eprintln!(
                "capture: {} packets → {} ({} TLS sessions' secrets embedded from the {from}; opens decrypted in Wireshark)",
                c.stats.kept, c.file, c.stats.secrets_sessions
            ),
            None => eprintln!(
                "capture: {} packets → {} (no TLS secrets embedded: HTTPS/WSS stay encrypted)",
                c.stats.kept, c.file
            ),
        }
    }
    let mut out = std::io::stdout().lock();
    if ctx.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&results)?)?;
    } else {
        write!(out, "{}", table::render(&results))?;
        write!(out, "{}", ratios::render(&results.ratios))?;
        write!(out, "{}", warnings::render(&results.warnings))?;
    }
    if let Some((path, value)) = &baseline {
        if let Some(other) = model::other_lab_site(&results, value) {
            eprintln!(
                "note: the baseline {} ran against a lab {other}, this run's {}: the changes include the lab's placement",
                path.display(),
                results.lab_site.describe().trim_start_matches("lab: ")
            );
        }
        match model::compare_with_baseline(&results, value) {
            Ok(changes) if changes.is_empty() => eprintln!(
                "baseline {}: no run in common with this one",
                path.display()
            ),
            Ok(changes) => {
                let text = format!(
                    "change against {}:\n{}",
                    path.display(),
                    table::render_changes(&changes)
                );
                if ctx.json {
                    eprint!("{text}");
                } else {
                    write!(out, "{text}")?;
                }
            }
            Err(why) => anyhow::bail!("cannot compare with {}: {why}", path.display()),
        }
    }
    out.flush()?;
    if let Some(dir) = &report_dir {
        eprintln!("report: {}", dir.join("index.html").display());
    }
    if results.partial {
        let written = match &report_dir {
            Some(dir) => format!("written to {}", dir.display()),
            None => "printed above".to_owned(),
        };
        // Counted in rounds of runs, as planned: with one round each run is one.
        let measured: usize = results.runs.iter().map(|r| r.rounds.max(1)).sum();
        let what = if results.settings.rounds > 1 {
            "runs (each round counted)"
        } else {
            "runs"
        };
        eprintln!(
            "interrupted: {measured} of {planned} {what} measured, {written} and marked partial"
        );
        return Ok(ExitCode::from(crate::signals::EXIT_INTERRUPTED));
    }
    let failed: Vec<String> = results
        .runs
        .iter()
        .filter(|r| r.report.as_ref().is_none_or(|rep| rep.messages == 0))
        .map(|r| format!("{} {}", r.protocol, r.workload.as_str()))
        .collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        // Point only at what exists: a report folder only when one was written.
        let mut see = if ctx.json {
            "the JSON's warnings and each run's errors say why".to_owned()
        } else {
            "the warnings above say why".to_owned()
        };
        if let Some(dir) = &report_dir {
            see.push_str(&format!("; also in {}", dir.join("results.json").display()));
        }
        eprintln!(
            "error: no message completed in: {} ({see})",
            failed.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Starts the lab (or checks the one elsewhere) and the load generator on their own
/// runtimes, runs every step, stops the lab. Blocking: call it off the async runtime.
/// Once `stop` is set (Ctrl-C), the run in progress ends early and keeps what it measured,
/// no further run starts, and the results are marked partial.
pub fn measure(plan: &Plan, ctx: &Context, stop: &Arc<AtomicBool>) -> anyhow::Result<Results> {
    let started_wall = SystemTime::now();
    let started = Instant::now();
    let s = &plan.settings;
    // A lab elsewhere leaves every CPU here to the load generator: nothing to share out.
    let cores = match &plan.remote {
        None => {
            pinning::CoreSplit::for_this_process(s.server_threads.unwrap_or(1), s.client_threads)
        }
        Some(_) => None,
    };
    let load_cpus = cores.as_ref().map(|c| c.load.clone());
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(s.client_threads)
        .thread_name(LOAD_THREADS)
        .on_thread_start(move || {
            if let Some(cpus) = &load_cpus {
                pinning::pin_current_thread(cpus);
            }
        })
        // Blocking-pool threads (name resolution) must outlive a run, or their CPU time
        // vanishes from the per-thread totals when they exit.
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
        .context("starting the load generator's runtime")?;
    let mut protocols: Vec<Protocol> = Vec::new();
    for p in s.protocols.iter().filter_map(|p| lab_protocol(p)) {
        if !protocols.contains(&p) {
            protocols.push(p);
        }
    }
    // Declared before the lab so it is dropped (the namespace deleted) after the lab stops.
    let wan = s.wan.as_ref().map(wan::Wan::create).transpose()?;
    let mut settings = plan.settings.clone();
    if let (Some(spec), Some(wan)) = (settings.wan.as_mut(), &wan) {
        spec.emulator = Some(wan.emulator());
    }
    let lab_cpus = cores.as_ref().map(|c| c.lab.as_slice());
    let lab = site::Site::start(plan, &protocols, wan.as_ref(), &load_rt, lab_cpus, ctx)?;
    let server_cpu = lab.info.server_cpu_measured;
    let mut capture = match &plan.capture {
        None => None,
        Some((path, max_bytes)) => Some((
            recording::start(
                path,
                *max_bytes,
                lab.capture_interface(wan.as_ref())?,
                lab.endpoints.iter().map(|e| e.port).collect(),
            )?,
            path.clone(),
        )),
    };
    let link_started = Instant::now();
    let link_cpu_before = cpu::by_thread_prefix(&[wan::userspace::THREADS]);
    let mut progress = progress::Progress::new(plan);
    let mut rounds = Vec::with_capacity(plan.steps.len());
    let mut warnings = plan.skipped.clone();
    if cfg!(debug_assertions) {
        warnings.push(DEBUG_BUILD.to_owned());
    }
    if plan.sse_pushes_during_echo() {
        warnings.push(format!(
            "the SSE app pushed an event every {} during every run (its feed is one for all streams), so sse echo bytes per message include the pushed events that arrived meanwhile",
            humantime::format_duration(plan.push_interval)
        ));
    }
    // Set when a signal ended the loop early; names the run it cut short, if one measured.
    let mut interrupted: Option<Option<String>> = None;
    for (index, step) in plan.steps.iter().enumerate() {
        let mut config_connect_to = None;
        if stop.load(Ordering::Relaxed) {
            interrupted = Some(None);
            break;
        }
        let Some(endpoint) = lab.endpoint(step.protocol.protocol()) else {
            continue;
        };
        let mut target = step.protocol.target(&endpoint.url)?;
        if wan.is_some() {
            // The lab behind the WAN link listens on the namespace's address; the requests
            // still name it `localhost:PORT`, as on loopback, so HTTP heads and TLS names are
            // the same length on both paths and their bytes compare (the lab's certificate
            // covers localhost). Only where the packets go differs.
            config_connect_to = Some(endpoint.addr.parse().with_context(|| {
                format!(
                    "the lab's address {} is not an IP address and port",
                    endpoint.addr
                )
            })?);
            target.host = "localhost".to_owned();
        }
        let mut config = Config::new(target);
        config.connect_to = config_connect_to.take();
        config.workload = step.workload;
        config.connections = s.connections;
        config.size = step.size;
        config.duration = plan.run_time;
        config.trust = lab.trust.clone();
        config.tls_resumption = s.tls_resumption;
        config.push_interval = plan.push_interval;
        config.payload = s.payload;
        config.deflate = step.protocol.deflate().then(Offer::browser);
        config.stop = Some(Arc::clone(stop));
        if step.workload == Workload::Echo {
            config.rate = s.rate;
        }
        if step.workload != Workload::Push {
            config.warmup = plan.run_time / WARMUP_SHARE;
        }
        progress.start(index, step);
        let before = machine_now(wan.as_ref());
        let t0 = Instant::now();
        let outcome = load_rt.block_on(progress.tick_while(protolab_load::run(config)));
        let wall = t0.elapsed();
        let sample = machine_now(wan.as_ref()).since(&before, wall);
        let name = step.protocol.name().to_owned();
        if stop.load(Ordering::Relaxed) {
            let measured = outcome.as_ref().is_ok_and(|r| r.messages > 0);
            interrupted = Some(measured.then(|| {
                format!(
                    "{} {} {name}, after {:.1} s of {:.1} s",
                    step.workload.as_str(),
                    table::size_label(step.size),
                    wall.as_secs_f64(),
                    plan.run_time.as_secs_f64()
                )
            }));
            if !measured {
                break;
            }
        }
        rounds.push(rounds::Round {
            step: *step,
            report: outcome.map_err(|e| e.to_string()),
            sample,
        });
        if interrupted.is_some() {
            break;
        }
        std::thread::sleep(SETTLE);
    }
    let measured_rounds = rounds.len();
    let ratios = ratios::per_round(&rounds, s, server_cpu, &mut warnings);
    let runs = rounds::combine(rounds, s, server_cpu, &mut warnings);
    if let Some(cut) = &interrupted {
        let cut = cut
            .as_ref()
            .map_or_else(String::new, |c| format!(", the last ({c}) cut short"));
        warnings.push(format!(
            "interrupted: {measured_rounds} of {} runs{} measured{cut}; the rest did not run",
            plan.steps.len(),
            if s.rounds > 1 {
                " (each round counted)"
            } else {
                ""
            }
        ));
    }
    progress.finish(measured_rounds);
    if let Some((up, down)) = wan.as_ref().and_then(wan::Wan::userspace_stats) {
        let link_cpu = cpu::by_thread_prefix(&[wan::userspace::THREADS])
            .first()
            .zip(link_cpu_before.first())
            .map_or(Duration::ZERO, |(after, before)| {
                after.saturating_sub(*before)
            });
        let wall = link_started.elapsed().as_secs_f64().max(1e-9);
        tracing::info!(
            "userspace WAN link: host→lab {up:?}, lab→host {down:?}, {:.3} s CPU",
            link_cpu.as_secs_f64()
        );
        warnings.push(format!(
            "the WAN link was emulated in userspace: its threads forwarded {} packets and used {:.1}% of a core, outside the lab's and the load generator's CPU figures",
            up.packets_out + down.packets_out,
            link_cpu.as_secs_f64() / wall * 100.0
        ));
        let full = up.queue_full + down.queue_full;
        if full > 0 {
            warnings.push(format!(
                "the userspace WAN link dropped {full} packets on a full queue (more than a second of backlog at --bandwidth, or 64 MiB held): the figures include those losses"
            ));
        }
    }
    let capture_summary = match capture.take() {
        None => None,
        Some((live, path)) => Some(recording::finish(live, &path, &lab, &mut warnings)?),
    };
    let lab_endpoints = lab.lab_endpoints();
    let lab_site = lab.info.clone();
    lab.stop();
    Ok(Results {
        schema: "protolab.compare.results",
        schema_version: model::SCHEMA_VERSION,
        protolab_version: env!("CARGO_PKG_VERSION"),
        started_at: rfc3339(started_wall),
        elapsed_secs: started.elapsed().as_secs_f64(),
        settings,
        machine: model::machine(),
        lab_site,
        lab: lab_endpoints,
        runs,
        warnings,
        partial: interrupted.is_some(),
        capture: capture_summary,
        ratios,
    })
}

/// The readings a round's [`contention::Sample`] is the difference of.
struct MachineReading {
    usage: Vec<cpu::Usage>,
    system: Option<cpu::SystemTimes>,
    link: Option<(u64, u64)>,
}

/// Reads the load generator's, the lab's and the userspace link's threads, /proc/stat, and
/// the link's packet and lateness counters.
fn machine_now(wan: Option<&wan::Wan>) -> MachineReading {
    MachineReading {
        usage: cpu::usage_by_thread_prefix(&[
            LOAD_THREADS,
            LAB_THREADS,
            wan::userspace::THREADS,
            protolab_server::WS_LOOP_THREADS,
        ]),
        system: cpu::system_times(),
        link: wan
            .and_then(wan::Wan::userspace_stats)
            .map(|(up, down)| (up.packets_out + down.packets_out, up.late_us + down.late_us)),
    }
}

impl MachineReading {
    /// What happened between `before` and this reading, `wall` apart.
    fn since(&self, before: &Self, wall: Duration) -> contention::Sample {
        let usage = |i: usize| {
            self.usage
                .get(i)
                .zip(before.usage.get(i))
                .map_or_else(cpu::Usage::default, |(a, b)| a.since(*b))
        };
        contention::Sample {
            wall,
            client: usage(0),
            // The lab's runtime and the WS app's event loops.
            server: usage(1).plus(usage(3)),
            link: self
                .link
                .zip(before.link)
                .map(|(a, b)| contention::LinkSample {
                    usage: usage(2),
                    packets: a.0.saturating_sub(b.0),
                    late_us: a.1.saturating_sub(b.1),
                }),
            system: self
                .system
                .zip(before.system)
                .map(|(a, b)| cpu::SystemTimes {
                    total: a.total.saturating_sub(b.total),
                    steal: a.steal.saturating_sub(b.steal),
                }),
        }
    }
}

/// Writes `results.json` and `index.html` into `dir` (created if missing).
pub fn write_report(dir: &Path, results: &Results) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the report folder {}", dir.display()))?;
    let json = serde_json::to_string_pretty(results)?;
    std::fs::write(dir.join("results.json"), json)
        .with_context(|| format!("writing {}", dir.join("results.json").display()))?;
    std::fs::write(dir.join("index.html"), html::render(results))
        .with_context(|| format!("writing {}", dir.join("index.html").display()))?;
    Ok(())
}
