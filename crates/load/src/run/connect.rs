//! The `connect` workload: each exchange on a connection of its own, timed from connect to
//! the echo (for SSE, to the stream's first event).

use std::time::{Duration, Instant};

use super::budget::{Budget, CLOSE_BOUND};
use super::stats::Stats;
use crate::client::{Conn, Counts, Failure, Plan};

pub(super) async fn connect_worker(plan: &Plan, budget: &Budget) -> Stats {
    let mut stats = Stats::default();
    while budget.claim() {
        let t0 = Instant::now();
        let result = async {
            let (mut conn, opened) = Conn::open(plan, budget.end).await?;
            stats.opened(&opened);
            if plan.target.scheme.is_sse() {
                // An SSE connect ends at the stream's first event: all its bytes are the
                // handshake's, its time is connect to that event.
                let done = Instant::now();
                let since_connect = done.saturating_duration_since(t0);
                stats.latency.record(since_connect);
                let ex = crate::client::Exchange {
                    first_byte: opened.upgrade,
                    total: opened.upgrade.unwrap_or(since_connect),
                    done,
                    reusable: false,
                };
                stats.exchanged(&ex, opened.bytes, Counts::default(), Some(since_connect));
                stats.finished = Some(done);
                stats.sample_tcp(&conn, opened.tcp_counters, 1);
                conn.close(Instant::now() + CLOSE_BOUND).await;
                stats.add_totals(&conn);
                return Ok(());
            }
            let sent = Instant::now();
            let deadline = budget.end.min(sent + plan.request_timeout);
            let exchanged = conn.exchange(plan, sent, deadline).await;
            let now = conn.counts();
            let ex = match exchanged {
                Ok(ex) => ex,
                Err(failure) => {
                    stats.add_totals(&conn);
                    return Err(failure);
                }
            };
            stats.latency.record(ex.total);
            let since_connect = ex.done.saturating_duration_since(t0);
            stats.exchanged(&ex, now, now.since(opened.bytes), Some(since_connect));
            stats.finished = Some(ex.done);
            if ex.done >= budget.measured_from {
                stats.timed_messages += 1;
            }
            stats.sample_tcp(&conn, opened.tcp_counters, 1);
            conn.close(Instant::now() + CLOSE_BOUND).await;
            stats.add_totals(&conn);
            Ok::<_, Failure>(())
        }
        .await;
        if let Err(failure) = result {
            stats.fail(&failure, budget.end);
            // Do not spin on a refusing port: one attempt per 10 ms per worker at most.
            tokio::time::sleep_until(
                budget
                    .end
                    .min(Instant::now() + Duration::from_millis(10))
                    .into(),
            )
            .await;
        }
    }
    stats
}
