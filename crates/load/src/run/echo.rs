//! The `echo` workload (and `fanin` over HTTP/1.1): each worker keeps one connection, one
//! exchange in flight, closed loop or on its open-loop schedule, and opens another when the
//! server closes it.

use std::time::Instant;

use super::budget::{Budget, CLOSE_BOUND};
use super::stats::Stats;
use crate::client::{Conn, Plan};
use crate::tcp_info::TcpCounters;

pub(super) async fn echo_worker(plan: &Plan, budget: &Budget) -> Stats {
    let mut stats = Stats::default();
    'connections: while budget.claim() {
        let t0 = Instant::now();
        let (mut conn, opened) = match Conn::open(plan, budget.end).await {
            Ok(c) => c,
            Err(failure) => {
                stats.fail(&failure, budget.end);
                break;
            }
        };
        stats.opened(&opened);
        let mut first = true;
        let mut mark = opened.bytes;
        // TCP counters after the first exchange, and the exchanges since: the steady window.
        let mut after_first: Option<TcpCounters> = None;
        let mut steady_here = 0u64;
        let mut due = budget.schedule.map(|s| Instant::now() + s.offset);
        let mut last_done = Instant::now();
        loop {
            // Open loop: wait for this message's slot. If the previous echo came back after
            // the slot, the server held this message up and its latency starts at the slot;
            // otherwise it starts when it is sent, so our timer's lateness (tokio sleeps to
            // the millisecond) is not charged to the server. Closed loop: the clock is read
            // twice per exchange, here and when the echo is in.
            let (intended, sent) = match (due.as_mut(), budget.schedule) {
                (Some(due), Some(schedule)) => {
                    if *due >= budget.end {
                        break;
                    }
                    let slot = *due;
                    *due += schedule.every;
                    if last_done > slot {
                        (slot, Instant::now())
                    } else {
                        tokio::time::sleep_until(slot.into()).await;
                        let now = Instant::now();
                        (now, now)
                    }
                }
                _ => {
                    let now = Instant::now();
                    (now, now)
                }
            };
            let deadline = budget.end.min(sent + plan.request_timeout);
            match conn.exchange(plan, sent, deadline).await {
                Ok(ex) => {
                    let now = conn.counts();
                    last_done = ex.done;
                    if last_done >= budget.measured_from {
                        budget
                            .echo_latency
                            .record(last_done.saturating_duration_since(intended));
                        stats.timed_messages += 1;
                    }
                    let since_connect = first.then(|| ex.done.saturating_duration_since(t0));
                    stats.exchanged(&ex, now, now.since(mark), since_connect);
                    stats.finished = Some(ex.done);
                    mark = now;
                    if first {
                        after_first = conn.tcp_counters();
                    } else {
                        steady_here += 1;
                    }
                    first = false;
                    if !ex.reusable {
                        stats.sample_tcp(&conn, after_first, steady_here);
                        conn.close(Instant::now() + CLOSE_BOUND).await;
                        stats.add_totals(&conn);
                        continue 'connections;
                    }
                }
                Err(failure) => {
                    stats.fail(&failure, budget.end);
                    break;
                }
            }
            if !budget.claim_at(last_done) {
                break;
            }
        }
        stats.sample_tcp(&conn, after_first, steady_here);
        conn.close(Instant::now() + CLOSE_BOUND).await;
        stats.add_totals(&conn);
        break;
    }
    stats
}
