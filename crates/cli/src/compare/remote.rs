//! `compare --lab HOST` / `--lab-url`: the workloads go to a lab deployed elsewhere (`protolab
//! up` in a VM, a container, another machine) instead of one compare starts in-process.
//!
//! Everything that can be wrong with those flags is found before the first run: each app is
//! asked for one echo, and a failure becomes an error naming the flag to fix (exit 2), since
//! a run against the wrong port or an unverified certificate would measure nothing useful.

use std::net::{IpAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use protolab_load::{Config, Scheme, Target, Trust, Workload};
use protolab_server::Protocol;

use super::ProtocolArg;
use crate::usage;
use crate::Context;

/// The ports `protolab up` listens on by default, which `--lab HOST` assumes.
const DEFAULT_PORTS: [(Protocol, u16); 7] = [
    (Protocol::Http, 3000),
    (Protocol::Https, 3001),
    (Protocol::Ws, 3002),
    (Protocol::Wss, 3003),
    (Protocol::Sse, 3004),
    (Protocol::H2, 3005),
    (Protocol::Grpc, 3006),
];
/// The lab apps `--lab-url` names, for messages.
const APPS: &str = "http, https, ws, wss, sse, h2, grpc";
/// Said when sse, poll or long-poll push runs go to a lab elsewhere: the SSE feed is one for
/// every stream, paced by the lab, and compare cannot set it as it does in-process.
pub const SSE_FEED_ELSEWHERE: &str = "the SSE app elsewhere pushes at the lab's own interval (`protolab up --push-interval`, 5s by default), not at --push-interval: sse, poll and long-poll push runs see that lab's events; start it with --push-interval near this run's for figures that compare with ws's";
/// Bound on each step of the check that the lab answers (TCP, TLS, upgrade, echo).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Which flag gave an app's URL, so an error can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `--lab HOST` with the app's default port.
    Lab,
    /// `--lab-url PROTOCOL=…`.
    LabUrl,
}

impl Source {
    fn flag(self) -> &'static str {
        match self {
            Self::Lab => "--lab",
            Self::LabUrl => "--lab-url",
        }
    }
}

/// One app of the remote lab.
#[derive(Debug, Clone)]
pub struct RemoteApp {
    /// The lab app.
    pub protocol: Protocol,
    /// Where the workloads go.
    pub url: String,
    /// `url` parsed.
    pub target: Target,
    /// What the compared protocols load on this app (by their names), each checked before
    /// the runs: `h2` and `h2-tls` both on the h2 app, `poll` by the SSE app's stream.
    probes: Vec<(String, Target)>,
    source: Source,
}

/// The checked `--lab`, `--lab-url`, `--lab-ca` and `--lab-keylog` flags.
#[derive(Debug, Clone)]
pub struct RemoteLab {
    /// `--lab HOST`, or the distinct hosts of the URLs, for the report.
    pub host: String,
    /// One URL per lab app compared.
    pub apps: Vec<RemoteApp>,
    /// `--lab-ca`.
    pub ca: Option<PathBuf>,
    /// `--lab-keylog`: the lab's TLS secrets, read after the runs for `--capture`.
    pub keylog: Option<PathBuf>,
}

/// Parses the flags; `None` when neither `--lab` nor `--lab-url` was given. `compared` are
/// the protocols the runs load, whose lab apps need a URL.
pub fn parse(
    lab: Option<&str>,
    lab_urls: &[String],
    ca: Option<&Path>,
    keylog: Option<&Path>,
    compared: &[ProtocolArg],
) -> anyhow::Result<Option<RemoteLab>> {
    if lab.is_none() && lab_urls.is_empty() {
        ensure_usage!(
            ca.is_none() && keylog.is_none(),
            "--lab-ca and --lab-keylog are for a lab deployed elsewhere: add --lab HOST (or --lab-url)"
        );
        return Ok(None);
    }
    let host = lab.map(parse_host).transpose()?;
    let mut given: Vec<(Protocol, String)> = Vec::new();
    for entry in lab_urls.iter().filter(|e| !e.trim().is_empty()) {
        let Some((name, value)) = entry.split_once('=') else {
            bail_usage!("--lab-url `{entry}`: write PROTOCOL=URL (e.g. wss=wss://localhost:3003/ws) or PROTOCOL=PORT with --lab");
        };
        // `h2-tls`, `poll` ...: the app that serves them, as results.json names it.
        let protocol = super::protocols::lab_protocol(name.trim()).ok_or_else(|| {
            usage(format!(
                "--lab-url `{entry}`: unknown protocol `{name}`; choose from {APPS}"
            ))
        })?;
        ensure_usage!(
            !given.iter().any(|(p, _)| *p == protocol),
            "--lab-url gives {protocol} twice"
        );
        let value = value.trim();
        let url = if let Ok(port) = value.parse::<u16>() {
            let Some(host) = &host else {
                bail_usage!("--lab-url {protocol}={port}: a bare port needs --lab HOST to say where; or give the whole URL");
            };
            ensure_usage!(
                port != 0,
                "--lab-url {protocol}=0: the port must be 1 to 65535"
            );
            default_url(protocol, host, port)
        } else {
            value.to_owned()
        };
        given.push((protocol, url));
    }
    let mut needed: Vec<Protocol> = Vec::new();
    for arg in compared {
        if !needed.contains(&arg.protocol()) {
            needed.push(arg.protocol());
        }
    }
    let mut apps = Vec::new();
    for protocol in needed {
        let (url, source) = match (given.iter().find(|(p, _)| *p == protocol), &host) {
            (Some((_, url)), _) => (url.clone(), Source::LabUrl),
            (None, Some(host)) => {
                let port = DEFAULT_PORTS
                    .iter()
                    .find(|(p, _)| *p == protocol)
                    .map_or(0, |(_, port)| *port);
                (default_url(protocol, host, port), Source::Lab)
            }
            (None, None) => bail_usage!(
                "--lab-url names no {protocol} app, which --protocols compares: add {protocol}=URL, leave {protocol} out of --protocols, or give --lab HOST for the default ports"
            ),
        };
        let flag = source.flag();
        // gRPC has no URL scheme: `up` prints its app as host:port.
        let parsed = if protocol == Protocol::Grpc && !url.contains("://") {
            Target::parse(&format!("grpc://{url}"))
        } else {
            Target::parse(&url)
        };
        let target = parsed.map_err(|e| usage(format!("{flag} {protocol}: {e}")))?;
        let schemes = app_schemes(protocol);
        ensure_usage!(
            schemes.contains(&target.scheme),
            "{flag} {protocol}={url}: the URL's scheme is {}, the {protocol} app takes {}",
            target.scheme,
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(" or ")
        );
        let mut probes: Vec<(String, Target)> = Vec::new();
        for arg in compared.iter().filter(|a| a.protocol() == protocol) {
            // Polling needs pushes to answer: the stream of the same app tells the port.
            let probe = match arg {
                ProtocolArg::Poll | ProtocolArg::LongPoll => ProtocolArg::Sse,
                other => *other,
            };
            let probe_target = probe
                .target(&url)
                .map_err(|e| usage(format!("{flag} {protocol}: {e}")))?;
            if !probes.iter().any(|(_, t)| *t == probe_target) {
                probes.push((probe.name(), probe_target));
            }
        }
        apps.push(RemoteApp {
            protocol,
            url,
            target,
            probes,
            source,
        });
    }
    let host = host.unwrap_or_else(|| {
        let mut hosts: Vec<&str> = apps.iter().map(|a| a.target.host.as_str()).collect();
        hosts.dedup();
        hosts.join(", ")
    });
    if let Some(path) = keylog {
        protolab_capture::live::check_key_log(path)
            .map_err(|e| usage(format!("--lab-keylog: {e}")))?;
    }
    Ok(Some(RemoteLab {
        host,
        apps,
        ca: ca.map(Path::to_path_buf),
        keylog: keylog.map(Path::to_path_buf),
    }))
}

/// `--lab HOST`: a name or an address, without scheme or port (those go in `--lab-url`).
fn parse_host(raw: &str) -> anyhow::Result<String> {
    let host = raw.trim();
    ensure_usage!(!host.is_empty(), "--lab needs a host name or address");
    ensure_usage!(
        !host.contains("://") && !host.contains('/'),
        "--lab {host}: give only the host (e.g. 127.0.0.1); put URLs in --lab-url PROTOCOL=URL"
    );
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if unbracketed.parse::<IpAddr>().is_ok() {
        return Ok(unbracketed.to_owned());
    }
    ensure_usage!(
        !host.contains(':'),
        "--lab {host}: give only the host; other ports than 3000-3006 go in --lab-url (e.g. --lab-url http=13000)"
    );
    ensure_usage!(
        host.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'),
        "--lab {host}: not a host name or IP address"
    );
    Ok(host.to_owned())
}

/// The URL schemes an app's `--lab-url` may have: its own, and for the apps reached under
/// another scheme (SSE over http://, HTTP/2 and gRPC in cleartext or over TLS) those too.
fn app_schemes(protocol: Protocol) -> &'static [Scheme] {
    match protocol {
        Protocol::Http => &[Scheme::Http],
        Protocol::Https => &[Scheme::Https],
        Protocol::Ws => &[Scheme::Ws],
        Protocol::Wss => &[Scheme::Wss],
        Protocol::Sse => &[Scheme::Http, Scheme::Sse],
        Protocol::H2 => &[Scheme::Https, Scheme::Http, Scheme::H2, Scheme::H2c],
        Protocol::Grpc => &[Scheme::Grpc, Scheme::Grpcs, Scheme::Http, Scheme::Https],
    }
}

/// The URL `protolab up` prints for `protocol` on `host:port`.
fn default_url(protocol: Protocol, host: &str, port: u16) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match protocol {
        Protocol::Http | Protocol::Https => format!("{protocol}://{host}:{port}/"),
        Protocol::Ws | Protocol::Wss => format!("{protocol}://{host}:{port}/ws"),
        Protocol::Sse => format!("http://{host}:{port}/events"),
        Protocol::H2 => format!("https://{host}:{port}/"),
        Protocol::Grpc => format!("{host}:{port}"),
    }
}

/// Every address `host` resolves to is this machine's loopback. Resolves (blocking).
fn is_local(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    (host, 0)
        .to_socket_addrs()
        .map(|addrs| {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        })
        .unwrap_or(false)
}

impl RemoteLab {
    /// Whether the app is loaded over TLS by a compared protocol.
    fn uses_tls(app: &RemoteApp) -> bool {
        app.probes.iter().any(|(_, t)| t.scheme.is_tls())
    }

    /// Whether a compared protocol runs over TLS (HTTPS, WSS, h2-tls, grpc-tls).
    fn has_tls(&self) -> bool {
        self.apps.iter().any(Self::uses_tls)
    }

    /// What HTTPS and WSS are verified against, and that CA's path: `--lab-ca`, or, when every
    /// app is on this machine, the CA of this protolab's home (which `up` used when run with
    /// the same `--home`). Verification is never turned off. Blocking (resolves names).
    pub fn trust(&self, ctx: &Context) -> anyhow::Result<(Trust, Option<String>)> {
        if !self.has_tls() {
            return Ok((Trust::Roots(protolab_tls::Roots::new()), None));
        }
        let (path, flag) = match &self.ca {
            Some(path) => (path.clone(), "--lab-ca"),
            None => {
                let remote: Vec<&str> = self
                    .apps
                    .iter()
                    .filter(|a| Self::uses_tls(a) && !is_local(&a.target.host))
                    .map(|a| a.target.host.as_str())
                    .collect();
                ensure_usage!(
                    remote.is_empty(),
                    "--lab-ca FILE is needed: the lab at {} made its certificates with its own CA; copy that lab's ca.pem (`protolab certs show` there prints where it is) and pass it as --lab-ca",
                    remote.join(", ")
                );
                let path = ctx.store().ca_cert_path();
                ensure_usage!(
                    path.exists(),
                    "--lab-ca: none given, and this home has no CA at {} for the local lab's certificates; pass --lab-ca with the ca.pem of the --home that `protolab up` used",
                    path.display()
                );
                (path, "--lab-ca (default: this home's CA)")
            }
        };
        let roots = protolab_tls::Roots::new()
            .with_ca_file(&path)
            .map_err(|e| usage(format!("{flag} {}: {e}", path.display())))?;
        Ok((Trust::Roots(roots), Some(path.display().to_string())))
    }

    /// Asks every app for one echo over a fresh connection (TCP, TLS, upgrade), so a wrong host,
    /// port or CA stops compare before the first run with an error naming the flag.
    pub async fn check(&self, trust: &Trust) -> anyhow::Result<()> {
        for app in &self.apps {
            for (name, target) in &app.probes {
                self.check_one(app, name, target, trust).await?;
            }
        }
        Ok(())
    }

    /// One echo of `name` (a compared protocol) on `app`.
    async fn check_one(
        &self,
        app: &RemoteApp,
        name: &str,
        target: &Target,
        trust: &Trust,
    ) -> anyhow::Result<()> {
        let mut config = Config::new(target.clone());
        config.workload = Workload::Connect;
        config.max_messages = 1;
        config.duration = CHECK_TIMEOUT * 3;
        config.connect_timeout = CHECK_TIMEOUT;
        config.request_timeout = CHECK_TIMEOUT;
        config.trust = trust.clone();
        let flag = app.source.flag();
        let protocol = app.protocol;
        // `grpc-tls` on the grpc app: which of the app's ways failed.
        let url = if name == protocol.name() {
            app.url.clone()
        } else {
            format!("{} ({name})", app.url)
        };
        let report = protolab_load::run(config)
            .await
            .map_err(|e| usage(format!("{flag}: the {protocol} app at {url}: {e}")))?;
        if report.messages > 0 {
            return Ok(());
        }
        let first = report
            .errors
            .first
            .clone()
            .unwrap_or_else(|| "no answer".to_owned());
        if report.errors.tls > 0 {
            if let Some(why) = self.certificate_problem(app, trust).await {
                bail_usage!(
                    "--lab-ca: the {protocol} app at {url} presented a certificate the CA does not verify ({}): {first}\n  {why}\n  pass the CA that lab was made with (its ca.pem) as --lab-ca",
                    self.ca.as_ref().map_or_else(|| "this home's CA".to_owned(), |p| p.display().to_string())
                );
            }
            bail_usage!("{flag}: the {protocol} app at {url} failed TLS: {first}; is that the {protocol} port?");
        }
        if report.errors.protocol > 0 || report.errors.closed > 0 {
            bail_usage!(
                "{flag}: {url} answered, but not as protolab's {protocol} app ({first}); is that the {protocol} port?"
            );
        }
        bail_usage!(
            "{flag}: cannot reach the {protocol} app at {url}: {first}; is `protolab up` running there with its ports reachable from here (forwarded, firewall open)?"
        );
    }

    /// What is wrong with the certificate `app` presented, in words; `None` when TLS failed
    /// for another reason (e.g. the port does not speak TLS).
    async fn certificate_problem(&self, app: &RemoteApp, trust: &Trust) -> Option<String> {
        let Trust::Roots(roots) = trust else {
            return None;
        };
        let (addr, name, roots) = (
            app.target.authority(),
            app.target.host.clone(),
            roots.clone(),
        );
        let diagnosis = tokio::task::spawn_blocking(move || {
            protolab_tls::check::check_remote(&addr, &name, &roots)
        })
        .await;
        match diagnosis {
            Ok(Ok(d)) if !d.ok => Some(d.explanation.trim().to_owned()),
            _ => None,
        }
    }

    /// The interface a capture listens on to see this machine's traffic to the lab: `lo` for a
    /// lab on loopback (forwarded ports), else the one the kernel routes its address through.
    pub fn capture_interface(&self) -> anyhow::Result<String> {
        let host: &str = self
            .apps
            .first()
            .map_or(self.host.as_str(), |a| a.target.host.as_str());
        let addr = (host, 0)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| usage(format!("--lab {host}: the name does not resolve")))?;
        if addr.ip().is_loopback() {
            return Ok("lo".to_owned());
        }
        let out = std::process::Command::new("ip")
            .args(["-o", "route", "get", &addr.ip().to_string()])
            .output()
            .map_err(|e| anyhow::anyhow!("running `ip route get` to find the interface toward {host}: {e} (install iproute2)"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "dev")
            .nth(1)
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no route to {host} ({}): compare --capture cannot tell which interface to listen on", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(
        lab: Option<&str>,
        lab_urls: &[&str],
        needed: &[ProtocolArg],
    ) -> anyhow::Result<Vec<String>> {
        let lab_urls: Vec<String> = lab_urls.iter().map(|s| (*s).to_owned()).collect();
        let remote = parse(lab, &lab_urls, None, None, needed)?.expect("a remote lab");
        Ok(remote.apps.into_iter().map(|a| a.url).collect())
    }

    #[test]
    fn lab_host_means_the_up_ports_and_lab_url_overrides_one() {
        assert_eq!(
            // Every app at the port `up` gives it; poll and long-poll are the SSE app's.
            urls(
                Some("10.0.0.7"),
                &[],
                &[
                    ProtocolArg::Http,
                    ProtocolArg::Https,
                    ProtocolArg::Ws,
                    ProtocolArg::Wss,
                    ProtocolArg::LongPoll,
                    ProtocolArg::Sse,
                    ProtocolArg::H2Tls,
                    ProtocolArg::Grpc,
                ]
            )
            .unwrap(),
            [
                "http://10.0.0.7:3000/",
                "https://10.0.0.7:3001/",
                "ws://10.0.0.7:3002/ws",
                "wss://10.0.0.7:3003/ws",
                "http://10.0.0.7:3004/events",
                "https://10.0.0.7:3005/",
                "10.0.0.7:3006"
            ]
        );
        assert_eq!(
            urls(
                Some("::1"),
                &["wss=8443", "http=http://[::1]:9/x"],
                &[ProtocolArg::Http, ProtocolArg::WssDeflate]
            )
            .unwrap(),
            ["http://[::1]:9/x", "wss://[::1]:8443/ws"]
        );
        // The new apps' URLs as `up` prints them, or with the scheme of a compared protocol.
        assert_eq!(
            urls(
                None,
                &[
                    "grpc=lab.test:9006",
                    "h2=h2c://lab.test:9005/",
                    "poll=sse://lab.test:9004/events"
                ],
                &[ProtocolArg::GrpcTls, ProtocolArg::H2, ProtocolArg::Poll]
            )
            .unwrap(),
            [
                "lab.test:9006",
                "h2c://lab.test:9005/",
                "sse://lab.test:9004/events"
            ]
        );
    }

    #[test]
    fn each_compared_protocol_is_checked_the_way_it_runs() {
        let lab_urls = ["h2=4005".to_owned(), "grpc=4006".to_owned()];
        let remote = parse(
            Some("127.0.0.1"),
            &lab_urls,
            None,
            None,
            &[
                ProtocolArg::Ws,
                ProtocolArg::WsDeflate,
                ProtocolArg::Poll,
                ProtocolArg::LongPoll,
                ProtocolArg::H2,
                ProtocolArg::H2Tls,
                ProtocolArg::GrpcTls,
            ],
        )
        .unwrap()
        .unwrap();
        let probes: Vec<(String, String)> = remote
            .apps
            .iter()
            .flat_map(|a| a.probes.iter())
            .map(|(name, target)| (name.clone(), target.to_string()))
            .collect();
        let expected = [
            ("ws", "ws://127.0.0.1:3002/ws"),
            ("sse", "sse://127.0.0.1:3004/events"),
            ("h2", "h2c://127.0.0.1:4005/"),
            ("h2-tls", "h2://127.0.0.1:4005/"),
            ("grpc-tls", "grpcs://127.0.0.1:4006/"),
        ];
        assert_eq!(
            probes,
            expected.map(|(n, t)| (n.to_owned(), t.to_owned())),
            "ws-deflate shares ws's check, polling the SSE stream's"
        );
        // TLS on the h2 and gRPC apps only when h2-tls or grpc-tls is compared.
        assert!(remote.has_tls());
        let plain = parse(
            Some("127.0.0.1"),
            &lab_urls,
            None,
            None,
            &[ProtocolArg::H2, ProtocolArg::Grpc],
        )
        .unwrap()
        .unwrap();
        assert!(!plain.has_tls());
    }

    #[test]
    fn bad_lab_flags_are_usage_errors_naming_the_flag() {
        for (lab, lab_urls, needed, expected) in [
            (
                Some("http://h:3000"),
                &[][..],
                &[ProtocolArg::Http][..],
                "--lab http://h:3000: give only the host",
            ),
            (
                Some("h:3000"),
                &[],
                &[ProtocolArg::Http],
                "--lab-url http=13000",
            ),
            (
                None,
                &["http=3000"][..],
                &[ProtocolArg::Http],
                "needs --lab HOST",
            ),
            (
                None,
                &["ftp=ftp://h/"],
                &[ProtocolArg::Http],
                "unknown protocol `ftp`",
            ),
            (
                None,
                &["http=https://h/"],
                &[ProtocolArg::Http],
                "the URL's scheme is https",
            ),
            (
                None,
                &["http=http://h/"],
                &[ProtocolArg::Http, ProtocolArg::Ws],
                "--lab-url names no ws app",
            ),
            (Some("h"), &["ws"], &[ProtocolArg::Ws], "write PROTOCOL=URL"),
            (
                None,
                &["sse=ws://h:1/ws"],
                &[ProtocolArg::Sse],
                "the sse app takes http:// or sse://",
            ),
            (
                None,
                &["grpc=h:1", "h2=https://h:2/"],
                &[ProtocolArg::Grpc, ProtocolArg::H2Tls, ProtocolArg::LongPoll],
                "--lab-url names no sse app",
            ),
        ] {
            let lab_urls: Vec<String> = lab_urls.iter().map(|s| (*s).to_owned()).collect();
            let err = parse(lab, &lab_urls, None, None, needed).expect_err(expected);
            assert!(err.is::<crate::UsageError>(), "{err}");
            assert!(err.to_string().contains(expected), "{err} lacks {expected}");
        }
        let err = parse(
            None,
            &[],
            Some(Path::new("ca.pem")),
            None,
            &[ProtocolArg::Https],
        )
        .expect_err("--lab-ca alone");
        assert!(err.to_string().contains("add --lab HOST"), "{err}");
    }
}
