//! The `push` workload: one connection per worker, opened at its offset within one push
//! interval, reading what the server pushes until the run ends; bytes are charged to pushes
//! at message boundaries.

use std::time::Instant;

use super::budget::{Budget, CLOSE_BOUND};
use super::stats::Stats;
use crate::client::{Conn, Plan};

pub(super) async fn push_worker(plan: &Plan, budget: &Budget) -> Stats {
    let mut stats = Stats::default();
    if let Some(schedule) = budget.schedule {
        let at = (Instant::now() + schedule.offset).min(budget.end);
        tokio::time::sleep_until(at.into()).await;
    }
    let (mut conn, opened) = match Conn::open(plan, budget.end).await {
        Ok(c) => c,
        Err(failure) => {
            stats.fail(&failure, budget.end);
            return stats;
        }
    };
    stats.opened(&opened);
    // Bytes are charged to pushes only at a message boundary: when a read brought more than
    // the push just taken (the next ones, after a stall), those bytes belong to pushes not
    // taken yet, so the pushes and their bytes wait until the buffer is drained again.
    // Otherwise a run that ends with pushes read ahead charges their bytes to counted ones.
    // The same holds at the start: pushes read together with the upgrade's answer have their
    // bytes in the handshake's count, so charging starts at the first boundary after them.
    let mut mark = opened.bytes;
    let mut charging = conn.read_ahead() == 0;
    let (mut pending, mut pending_payload) = (0u64, 0u64);
    let mut pushes = 0u64;
    let mut first_at = None;
    while budget.claim() {
        match conn.next_push(budget.end).await {
            Ok(push) => {
                stats.latency.record(push.delay);
                stats.messages += 1;
                let now = Instant::now();
                first_at.get_or_insert(now);
                stats.finished = Some(now);
                pushes += 1;
                pending += 1;
                pending_payload += push.payload as u64;
                if conn.read_ahead() == 0 {
                    let now = conn.counts();
                    if charging {
                        stats.steady = stats.steady.plus(now.since(mark));
                        stats.steady_messages += pending;
                        stats.push_payload += pending_payload;
                    }
                    (mark, pending, pending_payload, charging) = (now, 0, 0, true);
                }
            }
            Err(failure) => {
                stats.fail(&failure, budget.end);
                break;
            }
        }
    }
    if pushes == 0 {
        stats.silent += 1;
    }
    if let (Some(first), Some(last)) = (first_at, stats.finished) {
        let span = last.saturating_duration_since(first).as_secs_f64();
        if pushes > 1 && span > 0.0 {
            stats.push_rate = (pushes - 1) as f64 / span;
        }
    }
    stats.sample_tcp(&conn, opened.tcp_counters, pushes);
    conn.close(Instant::now() + CLOSE_BOUND).await;
    stats.add_totals(&conn);
    stats
}
