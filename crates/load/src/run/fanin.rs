//! The `fanin` workload on HTTP/2 and gRPC: one connection, [`Config::connections`] request
//! streams in flight on it at once, each a closed loop (a new stream as soon as its last
//! echo is in). HTTP/1.1 has no multiplexing, so there the run's echo workers open one
//! connection per stream instead; the two are compared at the same concurrency.
//!
//! [`Config::connections`]: super::Config::connections

use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use super::budget::{Budget, CLOSE_BOUND};
use super::stats::Stats;
use crate::client::http2::h2_echo;
use crate::client::{bounded, Conn, Failure, Plan};
use crate::report::ErrorKind;

/// Opens the one connection, makes its first echo alone, runs `streams` concurrent loops on
/// it until the budget is spent, and charges the connection's bytes after that first echo to
/// the loops' messages.
pub(super) async fn fanin_worker(plan: Arc<Plan>, budget: Budget, streams: usize) -> Stats {
    let mut stats = Stats::default();
    let t0 = Instant::now();
    let (mut conn, opened) = match Conn::open(&plan, budget.end).await {
        Ok(c) => c,
        Err(failure) => {
            stats.fail(&failure, budget.end);
            return stats;
        }
    };
    stats.opened(&opened);
    let (Some(mut sender), Some(request)) = (conn.h2_sender(), plan.h2.as_ref()) else {
        stats.fail(
            &Failure::new(ErrorKind::Protocol, "fanin needs an HTTP/2 connection"),
            budget.end,
        );
        return stats;
    };
    // The SETTINGS exchange rides on the connection's first request (the client's SETTINGS
    // go out with it, the server's and both ACKs come back by its answer): that echo is the
    // connection's first, charged as echo charges one, so the per-message bytes are the
    // streams' alone, as they are for every other workload.
    let mut mark = opened.bytes;
    if budget.claim() {
        let sent = Instant::now();
        let deadline = budget.end.min(sent + plan.request_timeout);
        let echo = h2_echo(&mut sender, request, sent, true);
        match bounded(deadline, "waiting for the first echo", echo).await {
            Ok(ex) => {
                let now = conn.counts();
                stats.latency.record(ex.total);
                stats.exchanged(
                    &ex,
                    now,
                    now.since(mark),
                    Some(ex.done.saturating_duration_since(t0)),
                );
                stats.finished = Some(ex.done);
                mark = now;
            }
            Err(failure) => {
                stats.fail(&failure, budget.end);
                drop(sender);
                conn.close(Instant::now() + CLOSE_BOUND).await;
                stats.add_totals(&conn);
                return stats;
            }
        }
    }
    let first_messages = stats.messages;
    let budget = Arc::new(budget);
    let mut loops = JoinSet::new();
    for _ in 0..streams {
        let (plan, budget, mut send) = (Arc::clone(&plan), Arc::clone(&budget), sender.clone());
        loops.spawn(async move {
            let mut stats = Stats::default();
            let Some(request) = plan.h2.as_ref() else {
                return stats;
            };
            while budget.claim() {
                let sent = Instant::now();
                let deadline = budget.end.min(sent + plan.request_timeout);
                let echo = h2_echo(&mut send, request, sent, false);
                match bounded(deadline, "waiting for the echo", echo).await {
                    Ok(ex) => {
                        stats.latency.record(ex.total);
                        stats.messages += 1;
                        stats.finished = Some(ex.done);
                    }
                    Err(failure) => {
                        stats.fail(&failure, budget.end);
                        break;
                    }
                }
            }
            stats
        });
    }
    drop(sender);
    while let Some(joined) = loops.join_next().await {
        match joined {
            Ok(loop_stats) => stats.merge(&loop_stats),
            Err(join) => stats
                .errors
                .add(ErrorKind::Io, &format!("stream loop: {join}")),
        }
    }
    // Streams interleave on the wire, so bytes are charged to messages in bulk: everything
    // after the first echo over the loops' echoes.
    stats.steady = stats.steady.plus(conn.counts().since(mark));
    stats.steady_messages += stats.messages - first_messages;
    stats.sample_tcp(&conn, opened.tcp_counters, stats.messages);
    conn.close(Instant::now() + CLOSE_BOUND).await;
    stats.add_totals(&conn);
    stats
}
