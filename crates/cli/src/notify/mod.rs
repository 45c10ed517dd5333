//! `protolab notify`: the daemon side of the hub. One notification with retries, or
//! (`--follow FILE`) every new line of a log file, through an on-disk spool while the hub is down.

mod follow;
mod tail;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use protolab_hub::client::{idempotency_key, Backoff, HubUrl, PublishError, Publisher};
use protolab_hub::{ChannelName, Level, Publication, PublicationLimits};

use crate::units::parse_duration;
use crate::{usage, Context};

/// Where the hub is and how to trust it; shared by `notify` and `subscribe`.
#[derive(Debug, Args)]
pub struct HubClientArgs {
    /// The hub's URL.
    #[arg(
        long,
        env = "PROTOLAB_HUB_URL",
        default_value = "http://localhost:4000",
        value_name = "URL"
    )]
    pub hub: String,
    /// Trust this CA file for an https hub (default: the protolab CA if there is one, and the
    /// system roots).
    #[arg(long, value_name = "PEM")]
    pub cacert: Option<PathBuf>,
}

impl HubClientArgs {
    /// The parsed URL (a usage error naming --hub) and, for https, a TLS configuration.
    pub(crate) fn connect_setup(
        &self,
        ctx: &Context,
    ) -> anyhow::Result<(HubUrl, Option<Arc<rustls::ClientConfig>>)> {
        let url = HubUrl::parse(&self.hub)
            .map_err(|err| usage(format!("--hub (or PROTOLAB_HUB_URL): {err}")))?;
        if !url.tls {
            return Ok((url, None));
        }
        let roots = protolab_tls::Roots::new();
        let roots = if let Some(ca) = &self.cacert {
            roots
                .with_ca_file(ca)
                .with_context(|| format!("--cacert {}", ca.display()))?
        } else {
            let lab_ca = protolab_tls::Store::open(&ctx.home).ca_cert_path();
            let roots = if lab_ca.exists() {
                roots.with_ca_file(&lab_ca)?
            } else {
                roots
            };
            match roots.clone().with_system() {
                Ok(with_system) => with_system,
                Err(_) if !roots.is_empty() => roots,
                Err(err) => return Err(err).context("no CA to trust; pass --cacert FILE"),
            }
        };
        Ok((url, Some(protolab_tls::client_config(&roots)?)))
    }
}

/// `protolab notify` arguments.
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// The notification's text. Not with --follow.
    #[arg(
        value_name = "MESSAGE",
        required_unless_present = "follow",
        conflicts_with = "follow"
    )]
    pub message: Option<String>,
    /// info, success, warning or error (with --follow: the level of lines no --level-regex
    /// matches).
    #[arg(long, default_value = "info", value_parser = parse_level, value_name = "LEVEL")]
    pub level: Level,
    /// The channel to publish on (`notifs` is the one the story's socket.io page listens to).
    #[arg(long, default_value = "notifs", value_parser = parse_channel, value_name = "NAME")]
    pub channel: ChannelName,
    /// A heading shown above the text.
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub title: String,
    /// Extra JSON delivered as given, e.g. '{"host":"a"}'.
    #[arg(long, value_parser = parse_json, value_name = "JSON")]
    pub data: Option<serde_json::Value>,
    /// Where the hub is.
    #[command(flatten)]
    pub hub: HubClientArgs,
    /// A file holding the publish API key (first line). Or set PROTOLAB_HUB_KEY to the key.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// How long to keep retrying while the hub is unreachable or answers 5xx/429 (e.g. 30s,
    /// 5m). Refusals (4xx) are never retried.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub retry_for: Duration,
    /// Follow this log file: each new line becomes a notification, spooled on disk (under the
    /// home) until the hub accepts it; handles truncation and rotation.
    #[arg(long, value_name = "FILE")]
    pub follow: Option<PathBuf>,
    /// With --follow: PATTERN=LEVEL pairs, comma-separated or repeated; a line takes the level
    /// of the first pattern (a regular expression) it matches, else --level.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "PATTERN=LEVEL",
        requires = "follow"
    )]
    pub level_regex: Vec<String>,
    /// With --follow: the most lines the spool holds while the hub is down; when full, reading
    /// the file pauses (lines wait in the file) with a warning.
    #[arg(long, default_value_t = 10_000, value_name = "N", requires = "follow")]
    pub spool_max: usize,
}

fn parse_level(text: &str) -> Result<Level, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a level; use info, success, warning or error"))
}

fn parse_channel(text: &str) -> Result<ChannelName, String> {
    text.parse().map_err(|err| format!("{err}"))
}

fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|err| format!("not valid JSON: {err}"))
}

/// The publish key: --api-key-file's first non-comment line, else $PROTOLAB_HUB_KEY.
fn api_key(file: Option<&PathBuf>) -> anyhow::Result<Option<String>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|err| {
            usage(format!(
                "--api-key-file: cannot read {}: {err}",
                path.display()
            ))
        })?;
        let key = text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'))
            .ok_or_else(|| usage(format!("--api-key-file {} holds no key", path.display())))?;
        return Ok(Some(key.to_owned()));
    }
    Ok(std::env::var("PROTOLAB_HUB_KEY")
        .ok()
        .map(|key| key.trim().to_owned())
        .filter(|key| !key.is_empty()))
}

/// The limits the hub applies, checked here so a refusal is a usage error before any retry.
fn check(publication: &Publication) -> anyhow::Result<()> {
    publication
        .validate(&PublicationLimits::default())
        .map_err(|invalid| {
            let flag = match invalid.field {
                "title" => "--title",
                "data" => "--data",
                _ => "MESSAGE",
            };
            usage(format!("{flag}: {invalid}"))
        })
}

/// The error for a refusal, with what to do about a key.
pub(crate) fn refused(err: PublishError) -> anyhow::Error {
    match &err {
        PublishError::Refused { status: 401, .. } => anyhow::anyhow!(
            "{err}; give the publish key with --api-key-file FILE or PROTOLAB_HUB_KEY"
        ),
        _ => anyhow::anyhow!("{err}"),
    }
}

/// Runs `protolab notify`.
pub async fn run(args: NotifyArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let (url, tls) = args.hub.connect_setup(ctx)?;
    let publisher = Publisher::new(url, api_key(args.api_key_file.as_ref())?, tls);
    if let Some(path) = &args.follow {
        return follow::run(&args, path, publisher, ctx).await;
    }
    let publication = Publication {
        channel: args.channel.clone(),
        level: args.level,
        title: args.title.clone(),
        body: args.message.clone().unwrap_or_default(),
        data: args.data.clone(),
        idempotency_key: Some(idempotency_key()),
    };
    check(&publication)?;
    let hub = publisher.url().url("", false);
    let result = publisher
        .publish_with_retry(
            &publication,
            args.retry_for,
            Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
            |err, wait| eprintln!("{err}; retrying in {wait:.1?}"),
        )
        .await;
    let published = match result {
        Ok(published) => published,
        Err(err) if err.is_retryable() => anyhow::bail!(
            "gave up after --retry-for {}: {err}; is the hub running at {hub} (`protolab hub`)?",
            humantime::format_duration(args.retry_for)
        ),
        Err(err) => return Err(refused(err)),
    };
    let mut out = std::io::stdout().lock();
    if ctx.json {
        writeln!(out, "{}", serde_json::to_string(&published)?)?;
    } else {
        writeln!(
            out,
            "published on {} at {}:{}{}",
            published.channel,
            published.epoch,
            published.offset,
            if published.duplicate {
                " (already delivered: not sent again)"
            } else {
                ""
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
