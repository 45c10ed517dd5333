//! `protolab subscribe CHANNEL…`: notifications in the terminal as they are published, over the
//! hub's WebSocket protocol; after a lost connection it reconnects with backoff and resumes each
//! channel from the last notification it printed, and says so when it could not.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use protolab_hub::client::{subscribe, Backoff, SubscriberEvent, SubscriptionRequest};
use protolab_hub::{ChannelName, Level, Notification, Since};
use tokio::sync::mpsc;

use crate::notify::HubClientArgs;
use crate::{usage, Context};

/// `protolab subscribe` arguments.
#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// The channels to print.
    #[arg(required = true, value_name = "CHANNEL")]
    pub channels: Vec<String>,
    /// Where to start: `start` (everything the hub's history holds) or a position
    /// `EPOCH:OFFSET` printed earlier. Default: new notifications only.
    #[arg(long, value_name = "start|EPOCH:OFFSET")]
    pub since: Option<String>,
    /// Where the hub is.
    #[command(flatten)]
    pub hub: HubClientArgs,
    /// A subscriber JWT, for a hub started with --jwt-secret-file or --jwt-public-key.
    #[arg(
        long,
        env = "PROTOLAB_HUB_TOKEN",
        value_name = "JWT",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// Runs `protolab subscribe`.
pub async fn run(args: SubscribeArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let since = match args.since.as_deref() {
        None => Since::Now,
        Some("start") => Since::Start,
        Some(position) => Since::Position(
            position
                .parse()
                .map_err(|err| usage(format!("--since {position:?}: {err}; or `start`")))?,
        ),
    };
    let channels = args
        .channels
        .iter()
        .map(|name| {
            name.parse::<ChannelName>()
                .map(|channel| (channel, since.clone()))
                .map_err(|err| usage(format!("CHANNEL {name:?}: {err}")))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (url, tls) = args.hub.connect_setup(ctx)?;
    let request = SubscriptionRequest {
        channels,
        token: args.token.clone(),
    };
    let (events, mut received) = mpsc::channel(256);
    let subscriber = subscribe(url, tls, request, events, Backoff::default());
    tokio::pin!(subscriber);
    let shutdown = crate::signals::shutdown_signal()?;
    tokio::pin!(shutdown);
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(ExitCode::SUCCESS),
            ended = &mut subscriber => {
                // Only a refusal ends it while events are read.
                ended?;
                return Ok(ExitCode::SUCCESS);
            }
            Some(event) = received.recv() => show(&event, ctx.json, colour)?,
        }
    }
}

fn show(event: &SubscriberEvent, json: bool, colour: bool) -> anyhow::Result<()> {
    match event {
        SubscriberEvent::Notification(notification) => {
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string(notification)?)?;
            } else {
                writeln!(out, "{}", line(notification, colour))?;
            }
            out.flush()?;
        }
        SubscriberEvent::Connected(url) => eprintln!("connected to {url}"),
        SubscriberEvent::Subscribed {
            channel,
            epoch,
            offset,
            asked,
            recovered,
        } => match asked {
            Some(asked) if !recovered && asked.epoch != *epoch => eprintln!(
                "{channel}: history could not be recovered since {asked}: the channel's epoch is now {epoch} (the hub restarted or lost its history); notifications published in between are missing"
            ),
            Some(asked) if !recovered => eprintln!(
                "{channel}: history could not be recovered since {asked}: the hub no longer holds all of it (its --history-size/--history-ttl); some notifications are missing"
            ),
            Some(asked) => eprintln!("{channel}: resumed after {asked}, nothing missed"),
            None => eprintln!("{channel}: subscribed at {epoch}:{offset}"),
        },
        SubscriberEvent::Disconnected { reason, retry_in } => {
            eprintln!("disconnected: {reason}; reconnecting in {retry_in:.1?}");
        }
    }
    Ok(())
}

/// `2024-05-01T10:00:00Z ops:7 ERROR title: body`, the level coloured on a terminal.
fn line(notification: &Notification, colour: bool) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(notification.time_ms);
    let level = format!("{:<7}", notification.level.as_str().to_uppercase());
    let level = if colour {
        let code = match notification.level {
            Level::Info => "36",
            Level::Success => "32",
            Level::Warning => "33",
            Level::Error => "1;31",
        };
        format!("\x1b[{code}m{level}\x1b[0m")
    } else {
        level
    };
    let text = match (notification.title.is_empty(), notification.body.is_empty()) {
        (false, false) => format!("{}: {}", notification.title, notification.body),
        (false, true) => notification.title.clone(),
        _ => notification.body.clone(),
    };
    format!(
        "{} {}:{} {level} {}",
        humantime::format_rfc3339_seconds(time),
        notification.channel,
        notification.offset,
        // a notification's text is the publisher's: no terminal control sequences from it
        text.replace(|c: char| c.is_control(), " ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_coloured_only_on_request_and_never_carry_control_characters() {
        let notification: Notification = serde_json::from_str(
            r#"{"channel":"ops","offset":7,"epoch":"e","level":"error","title":"disk","body":"full\u001b[2J","time_ms":0}"#,
        )
        .expect("notification");
        assert_eq!(
            line(&notification, false),
            "1970-01-01T00:00:00Z ops:7 ERROR   disk: full [2J"
        );
        assert!(line(&notification, true).contains("\x1b[1;31mERROR  \x1b[0m"));
    }
}
