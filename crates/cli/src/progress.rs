//! The progress line of long commands (`compare`, `bench`): a bar redrawn in place on stderr,
//! and only when stderr is a terminal, so pipes and log files get no control codes.

use std::future::Future;
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

/// Bar width in characters.
const WIDTH: usize = 24;
/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(200);

/// Whether progress is shown at all: stderr is a terminal.
pub fn on_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Draws `[#####.......] {middle} {left} s left` over the current line.
pub fn draw(fraction: f64, middle: &str, left: Duration) {
    let filled = (fraction.clamp(0.0, 1.0) * WIDTH as f64) as usize;
    // Rounded up: "0 s left" only once nothing is left.
    let left_secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    eprint!(
        "\r\x1b[2K[{}{}] {middle} {left_secs:>3} s left",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
    );
}

/// Erases the progress line, leaving the cursor at its start.
pub fn clear() {
    eprint!("\r\x1b[2K");
}

/// Runs `fut`, calling `redraw` with the time since it started every 200 ms until it ends.
pub async fn tick_while<F: Future>(fut: F, mut redraw: impl FnMut(Duration)) -> F::Output {
    tokio::pin!(fut);
    let started = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => redraw(started.elapsed()),
        }
    }
}
