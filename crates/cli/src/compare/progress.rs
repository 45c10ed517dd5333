//! compare's progress on stderr while it measures.

use std::time::{Duration, Instant};

use protolab_load::Workload;

use super::{table, Plan, Step};

/// Phase and time left on stderr: a redrawn line on a terminal, a line per run otherwise.
pub(super) struct Progress {
    total: usize,
    run_time: Duration,
    started: Instant,
    tty: bool,
    label: String,
    index: usize,
}

impl Progress {
    pub(super) fn new(plan: &Plan) -> Self {
        Self {
            total: plan.steps.len(),
            run_time: plan.run_time,
            started: Instant::now(),
            tty: crate::progress::on_terminal(),
            label: String::new(),
            index: 0,
        }
    }

    pub(super) fn start(&mut self, index: usize, step: &Step) {
        self.index = index;
        self.label = match step.workload {
            Workload::Push => format!("push {}", step.protocol.name()),
            _ => format!(
                "{} {} {}",
                step.workload.as_str(),
                table::size_label(step.size),
                step.protocol.name()
            ),
        };
        if !self.tty {
            eprintln!("[{}/{}] {}", index + 1, self.total, self.label);
        }
    }

    /// Runs `fut`, redrawing the progress line every 200 ms on a terminal.
    pub(super) async fn tick_while<F: std::future::Future>(&self, fut: F) -> F::Output {
        if !self.tty {
            return fut.await;
        }
        crate::progress::tick_while(fut, |in_run| self.draw(in_run)).await
    }

    fn draw(&self, in_run: Duration) {
        let done =
            self.run_time * u32::try_from(self.index).unwrap_or(0) + in_run.min(self.run_time);
        let all = self.run_time * u32::try_from(self.total).unwrap_or(1);
        crate::progress::draw(
            done.as_secs_f64() / all.as_secs_f64().max(1e-9),
            &format!("{}/{} {:<24}", self.index + 1, self.total, self.label),
            all.saturating_sub(done),
        );
    }

    pub(super) fn finish(&self, done: usize) {
        if self.tty {
            eprintln!(
                "\r\x1b[2K{done} runs in {:.1} s",
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}
