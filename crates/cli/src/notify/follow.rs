//! `notify --follow FILE`: every new line of FILE becomes a notification. Each is written to the
//! spool (fsynced, with its idempotency key) before it is sent, and leaves the spool only once
//! the hub answered 202: while the hub is down lines pile up in the spool and are delivered in
//! order, once, when it is back, also across a restart of `notify`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use protolab_hub::client::{idempotency_key, Backoff, PublishError, Publisher, PushError, Spool};
use protolab_hub::{Level, Publication, Published};
use regex_automata::meta::Regex;
use tokio::task::JoinHandle;

use super::tail::Tail;
use super::NotifyArgs;
use crate::signals::Interrupts;
use crate::{usage, Context};

/// How often the file is checked for new lines.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// `--level-regex` pairs, in order.
fn level_rules(pairs: &[String]) -> anyhow::Result<Vec<(Regex, Level)>> {
    pairs
        .iter()
        .map(|pair| {
            let (pattern, level) = pair.rsplit_once('=').ok_or_else(|| {
                usage(format!(
                    "--level-regex {pair:?}: write PATTERN=LEVEL, e.g. 'ERROR=error,WARN=warning'"
                ))
            })?;
            let level = level.parse::<Level>().map_err(|_| {
                usage(format!(
                    "--level-regex {pair:?}: {level:?} is not a level; use info, success, warning or error"
                ))
            })?;
            let regex = Regex::new(pattern).map_err(|err| {
                usage(format!("--level-regex {pair:?}: bad regular expression: {err}"))
            })?;
            Ok((regex, level))
        })
        .collect()
}

pub(super) async fn run(
    args: &NotifyArgs,
    path: &Path,
    publisher: Publisher,
    ctx: &Context,
) -> anyhow::Result<ExitCode> {
    let rules = level_rules(&args.level_regex)?;
    ensure_usage!(args.spool_max > 0, "--spool-max must be at least 1");
    let source = std::path::absolute(path)
        .map_err(|err| usage(format!("--follow {}: {err}", path.display())))?;
    let spool_path = ctx
        .home
        .join("notify-spool")
        .join(Spool::file_name_for(&source));
    let opened = Spool::open(&spool_path, args.spool_max)
        .with_context(|| format!("opening the spool {}", spool_path.display()))?;
    if opened.skipped_lines > 0 {
        eprintln!(
            "warning: {} unreadable line(s) of {} skipped (a write cut short by a crash)",
            opened.skipped_lines,
            spool_path.display()
        );
    }
    let mut spool = opened.spool;
    let mut tail = Tail::new(source.clone(), spool.position());
    let mut interrupts = Interrupts::install()?;
    eprintln!(
        "spool {} ({} waiting); press Ctrl-C to stop",
        spool_path.display(),
        spool.len()
    );
    let mut ticks = tokio::time::interval(POLL_EVERY);
    let mut in_flight: Option<JoinHandle<Result<Published, PublishError>>> = None;
    let mut retry_at: Option<Instant> = None;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut hub_down = false;
    let mut full_warned = false;
    loop {
        if in_flight.is_none() && retry_at.is_none_or(|at| Instant::now() >= at) {
            if let Some(publication) = spool.front() {
                let publication = publication.clone();
                let publisher = publisher.clone();
                in_flight = Some(tokio::spawn(async move {
                    publisher.publish(&publication).await
                }));
            }
        }
        tokio::select! {
            () = interrupts.next() => break,
            _ = ticks.tick() => {
                let room = args.spool_max.saturating_sub(spool.len());
                if room == 0 {
                    if !full_warned {
                        eprintln!("warning: {}; reading {} pauses until the hub takes some (lines wait in the file, unless it is rotated meanwhile)",
                            protolab_hub::client::SpoolFull { limit: args.spool_max }, source.display());
                        full_warned = true;
                    }
                    continue;
                }
                full_warned = false;
                let (lines, notes) = tail
                    .poll(room)
                    .with_context(|| format!("reading {}", source.display()))?;
                for note in notes {
                    eprintln!("{note}");
                }
                for line in lines {
                    let level = rules
                        .iter()
                        .find(|(regex, _)| regex.is_match(&line.text))
                        .map_or(args.level, |(_, level)| *level);
                    let publication = Publication {
                        channel: args.channel.clone(),
                        level,
                        title: args.title.clone(),
                        body: line.text,
                        data: args.data.clone(),
                        idempotency_key: Some(idempotency_key()),
                    };
                    match spool.push(publication, Some(line.end)) {
                        Ok(()) => {}
                        Err(PushError::Full(full)) => anyhow::bail!("{full}"),
                        Err(PushError::Io(err)) => {
                            return Err(err).with_context(|| format!("writing the spool {}", spool_path.display()));
                        }
                    }
                }
            }
            result = async {
                match in_flight.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                in_flight = None;
                let result = result.context("the delivery task failed")?;
                match result {
                    Ok(_) => {
                        spool.pop_front().with_context(|| format!("writing the spool {}", spool_path.display()))?;
                        if hub_down {
                            eprintln!("the hub is back: delivering {} spooled notification(s)", spool.len() + 1);
                            hub_down = false;
                        }
                        backoff.reset();
                        retry_at = None;
                    }
                    Err(err) if err.is_retryable() => {
                        let wait = backoff.next_delay();
                        if !hub_down {
                            eprintln!("{err}; spooling to {} and retrying with backoff", spool_path.display());
                            hub_down = true;
                        }
                        retry_at = Some(Instant::now() + wait);
                    }
                    Err(err @ PublishError::Refused { status: 401 | 403, .. }) => {
                        eprintln!("the {} notification(s) in {} stay spooled for the next run", spool.len(), spool_path.display());
                        return Err(super::refused(err));
                    }
                    Err(err @ PublishError::Refused { .. }) => {
                        eprintln!("warning: {err}; dropping that line");
                        spool.pop_front().with_context(|| format!("writing the spool {}", spool_path.display()))?;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        }
    }
    if let Some(task) = in_flight {
        // The spool keeps the publication: if the hub got it, the next run's retry carries the
        // same idempotency key and is not delivered twice.
        task.abort();
    }
    eprintln!(
        "stopped; {} notification(s) stay in {} for the next `notify --follow {}`",
        spool.len(),
        spool_path.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
