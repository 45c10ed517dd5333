//! The lab a compare run drives: one it starts on its own runtime (optionally inside the WAN
//! namespace), or one deployed elsewhere (`--lab`) that it only checks and talks to. The rest
//! of compare sees the same endpoints either way, and [`LabSite`] says which it was.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use protolab_load::Trust;
use protolab_server::{LabConfig, Limits, Protocol};
use protolab_tls::keylog::KeyLogBuffer;

use super::model::{LabEndpoint, LabKind, LabSite};
use super::remote::RemoteLab;
use super::{wan, Plan, LAB_THREADS};
use crate::Context;

/// One app the workloads go to.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    pub(super) protocol: Protocol,
    pub(super) url: String,
    /// `addr:port` as listened on (in-process) or as the URL names it (elsewhere).
    pub(super) addr: String,
    pub(super) port: u16,
}

enum Running {
    InProcess {
        lab: protolab_server::Lab,
        runtime: tokio::runtime::Runtime,
        keylog: Option<Arc<KeyLogBuffer>>,
    },
    Elsewhere(RemoteLab),
}

/// A lab ready for the runs.
pub(super) struct Site {
    running: Running,
    pub(super) endpoints: Vec<Endpoint>,
    /// What HTTPS and WSS verify against.
    pub(super) trust: Trust,
    pub(super) info: LabSite,
}

impl Site {
    /// Starts the lab in-process, or checks that every app of the lab elsewhere answers (on
    /// `load_rt`) so a wrong flag fails before the first run.
    pub(super) fn start(
        plan: &Plan,
        protocols: &[Protocol],
        wan: Option<&wan::Wan>,
        load_rt: &tokio::runtime::Runtime,
        lab_cpus: Option<&[usize]>,
        ctx: &Context,
    ) -> anyhow::Result<Self> {
        if let Some(remote) = &plan.remote {
            let (trust, ca) = remote.trust(ctx)?;
            load_rt.block_on(remote.check(&trust))?;
            let endpoints = remote
                .apps
                .iter()
                .map(|a| Endpoint {
                    protocol: a.protocol,
                    url: a.url.clone(),
                    addr: a.target.authority(),
                    port: a.target.port,
                })
                .collect();
            return Ok(Self {
                info: LabSite {
                    kind: LabKind::Remote,
                    host: Some(remote.host.clone()),
                    ca,
                    server_cpu_measured: false,
                },
                running: Running::Elsewhere(remote.clone()),
                endpoints,
                trust,
            });
        }
        let threads = plan.settings.server_threads.unwrap_or(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(LAB_THREADS)
            .on_thread_start({
                let cpus = lab_cpus.map(<[usize]>::to_vec);
                move || {
                    if let Some(cpus) = &cpus {
                        super::pinning::pin_current_thread(cpus);
                    }
                }
            })
            .enable_all()
            .build()
            .context("starting the lab's runtime")?;
        let bind = wan.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |w| IpAddr::V4(w.lab_ip));
        let config = crate::up::UpConfig {
            lab: LabConfig {
                bind,
                apps: protocols.iter().map(|&p| (p, 0)).collect(),
                push_interval: Duration::from_secs(5),
                // The SSE feed pushes as often as the WS clients of the push workload ask to.
                event_interval: Some(plan.event_interval()),
                allowed_origins: Vec::new(),
                limits: Limits::default(),
                tls: None,
                // As many event loop threads as the lab has runtime threads, pinned with them
                // below, so the WS app's connections run where the lab's CPU is counted.
                ws_loop_threads: Some(threads),
                ..LabConfig::default()
            },
            keylog: None,
            keylog_buffer: plan.capture.as_ref().map(|_| Arc::new(KeyLogBuffer::new())),
            proxy: None,
            acme: None,
        };
        let keylog = config.keylog_buffer.clone();
        // No proxy was asked for, so `start` returns none.
        let (lab, _) = match wan {
            None => runtime.block_on(crate::up::start(config, ctx))?,
            Some(wan) => wan.run_inside(|| runtime.block_on(crate::up::start(config, ctx)))?,
        };
        if let Some(cpus) = lab_cpus {
            super::pinning::pin_threads_named(protolab_server::WS_LOOP_THREADS, cpus);
        }
        // accepts_tls: the gRPC app serves TLS beside h2c (compare's grpc-tls).
        let trust = if protocols.iter().any(|p| p.accepts_tls()) {
            let ca = ctx.store().ca_cert_path();
            Trust::Roots(protolab_tls::Roots::new().with_ca_file(&ca)?)
        } else {
            Trust::Insecure
        };
        let endpoints = lab
            .endpoints()
            .iter()
            .map(|e| Endpoint {
                protocol: e.protocol,
                url: e.url(),
                addr: e.addr.to_string(),
                port: e.addr.port(),
            })
            .collect();
        Ok(Self {
            running: Running::InProcess {
                lab,
                runtime,
                keylog,
            },
            endpoints,
            trust,
            info: LabSite::in_process(),
        })
    }

    pub(super) fn endpoint(&self, protocol: Protocol) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.protocol == protocol)
    }

    /// Where a capture sees the traffic: the WAN link's host end, loopback for a lab here,
    /// or the interface that reaches the lab elsewhere.
    pub(super) fn capture_interface(&self, wan: Option<&wan::Wan>) -> anyhow::Result<String> {
        match (&self.running, wan) {
            (Running::Elsewhere(remote), _) => remote.capture_interface(),
            (Running::InProcess { .. }, Some(wan)) => Ok(wan.host_interface().to_owned()),
            (Running::InProcess { .. }, None) => Ok("lo".to_owned()),
        }
    }

    /// The TLS secrets to embed in the capture and where they came from; a warning says
    /// why there are none when HTTPS or WSS was compared without them.
    pub(super) fn secrets(&self, warnings: &mut Vec<String>) -> Option<(Vec<u8>, String)> {
        match &self.running {
            Running::InProcess { keylog, .. } => keylog
                .as_ref()
                .map(|b| (b.contents().into_bytes(), "in-process lab".to_owned())),
            Running::Elsewhere(remote) => {
                let tls = self.endpoints.iter().any(|e| e.protocol.is_tls());
                match &remote.keylog {
                    None if tls => {
                        warnings.push(format!(
                            "the capture holds HTTPS/WSS encrypted: the TLS secrets stay with the lab at {}; run it with `protolab up --keylog FILE` and pass that file as --lab-keylog, or decrypt later with `protolab inspect --keylog FILE capture.pcapng`",
                            remote.host
                        ));
                        None
                    }
                    None => None,
                    Some(path) => match protolab_capture::live::read_key_log(path) {
                        Ok(bytes) => Some((bytes, format!("--lab-keylog {}", path.display()))),
                        Err(err) => {
                            warnings.push(format!(
                                "--lab-keylog: {err}; HTTPS/WSS stay encrypted in the capture"
                            ));
                            None
                        }
                    },
                }
            }
        }
    }

    /// The endpoints as results.json lists them.
    pub(super) fn lab_endpoints(&self) -> Vec<LabEndpoint> {
        self.endpoints
            .iter()
            .map(|e| LabEndpoint {
                protocol: e.protocol.name().to_owned(),
                addr: e.addr.clone(),
                url: e.url.clone(),
            })
            .collect()
    }

    /// Stops a lab started here; one elsewhere keeps running.
    pub(super) fn stop(self) {
        if let Running::InProcess { lab, runtime, .. } = self.running {
            runtime.block_on(lab.shutdown());
        }
    }
}
