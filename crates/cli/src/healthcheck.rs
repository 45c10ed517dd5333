//! `protolab healthcheck`: the container image's HEALTHCHECK. One image serves every role, so
//! what to check comes from the environment each role's service sets (`PROTOLAB_HEALTHCHECK`)
//! rather than from a per-service check command: podman-compose 1.0.3 (Debian 12) runs a
//! compose `healthcheck.test` through `/bin/sh`, which an image without a shell lacks, while
//! every compose tool passes `environment` on as written.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser};

use crate::bench::BenchArgs;
use crate::units::parse_duration;
use crate::Context;

/// `protolab healthcheck` arguments.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// What to check, comma-separated: an http://, https://, ws:// or wss:// URL gets one echo
    /// (as `bench -n 1`, trusting the CA in the state directory); tcp://HOST:PORT must accept
    /// a connection. Default: $PROTOLAB_HEALTHCHECK, else the HTTP app on 127.0.0.1:3000.
    #[arg(
        env = "PROTOLAB_HEALTHCHECK",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:3000/",
        value_name = "URL"
    )]
    pub urls: Vec<String>,
    /// Time each check may take.
    #[arg(long, default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// `bench`'s arguments on their own, to build one from a check's URL.
#[derive(Debug, Parser)]
struct BenchOnly {
    #[command(flatten)]
    bench: BenchArgs,
}

/// Runs every check in turn; exit status 0 when all pass, 1 (naming the first failure) when one
/// does not.
pub async fn run(args: HealthcheckArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    ensure_usage!(
        args.urls.iter().any(|u| !u.trim().is_empty()),
        "nothing to check: pass a URL or set PROTOLAB_HEALTHCHECK (e.g. ws://127.0.0.1:3002/ws)"
    );
    for url in args.urls.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
        check(url, args.timeout, ctx).await?;
        println!("{url}: ok");
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(url: &str, timeout: Duration, ctx: &Context) -> anyhow::Result<()> {
    if let Some(addr) = url.strip_prefix("tcp://") {
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow::anyhow!("{url}: no connection within {timeout:?}"))?
            .with_context(|| format!("{url}: connecting"))?;
        return Ok(());
    }
    let limit = humantime::format_duration(timeout).to_string();
    let parsed = BenchOnly::try_parse_from([
        "healthcheck",
        url,
        "-n",
        "1",
        "--duration",
        &limit,
        "--timeout",
        &limit,
    ])
    .map_err(|err| crate::usage(format!("{url}: not a URL to check: {err}")))?;
    let report = crate::bench::measure(&parsed.bench, ctx).await?;
    anyhow::ensure!(
        report.messages > 0,
        "{url}: no echo came back: {}",
        report
            .errors
            .first
            .as_deref()
            .unwrap_or("the check ended before the first echo")
    );
    Ok(())
}
