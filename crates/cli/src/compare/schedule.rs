//! The order runs are measured in. Every round measures every run once; within a round, the
//! protocols of one workload and size run back to back, so the ratio between two of them
//! compares measurements taken a second or two apart, and the machine's drift (another build
//! starting, a CPU clocking down) hits both alike. Each round starts the protocols one place
//! further on, so no protocol is always the first after a change of workload (on a cold
//! cache, or in the wake of the previous run's closing connections).

use std::time::Duration;

use super::{Step, DEFAULT_ROUNDS, DEFAULT_RUN};

/// Rounds when `--rounds` is not given: [`DEFAULT_ROUNDS`], or fewer (down to one) where
/// `total` split over that many rounds of `runs` would make each run shorter than
/// [`DEFAULT_RUN`]: a short `--duration` buys fewer rounds rather than shorter runs.
pub(super) fn default_rounds(total: Duration, runs: usize) -> usize {
    let per_round = DEFAULT_RUN.as_secs_f64() * runs.max(1) as f64;
    let fit = (total.as_secs_f64() / per_round).floor();
    if fit >= DEFAULT_ROUNDS as f64 {
        DEFAULT_ROUNDS
    } else if fit >= 1.0 {
        fit as usize
    } else {
        1
    }
}

/// `one_round` (protocols of one workload and size adjacent) repeated `rounds` times, each
/// round's protocols rotated one place further than the round before; every step carries its
/// round's index.
pub(super) fn rotated_rounds(one_round: &[Step], rounds: usize) -> Vec<Step> {
    let mut steps = Vec::with_capacity(one_round.len() * rounds);
    for round in 0..rounds {
        for group in one_round.chunk_by(|a, b| a.workload == b.workload && a.size == b.size) {
            let start = round % group.len();
            for step in group[start..].iter().chain(&group[..start]) {
                steps.push(Step { round, ..*step });
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use protolab_load::Workload;

    use super::super::ProtocolArg;
    use super::*;

    fn step(protocol: ProtocolArg, workload: Workload, size: usize) -> Step {
        Step {
            protocol,
            workload,
            size,
            round: 0,
        }
    }

    #[test]
    fn a_short_duration_buys_fewer_rounds_not_shorter_runs() {
        // The default: 18 runs, 63 s, seven rounds of 0.5 s.
        assert_eq!(default_rounds(Duration::from_secs(63), 18), DEFAULT_ROUNDS);
        assert_eq!(default_rounds(Duration::from_secs(600), 18), DEFAULT_ROUNDS);
        assert_eq!(default_rounds(Duration::from_secs(36), 18), 4);
        assert_eq!(default_rounds(Duration::from_millis(500), 1), 1);
        assert_eq!(default_rounds(Duration::from_millis(300), 4), 1);
    }

    #[test]
    fn each_round_starts_one_protocol_further_within_each_workload_and_size() {
        use ProtocolArg::{Http, Https, Ws};
        let one_round = [
            step(Http, Workload::Echo, 32),
            step(Https, Workload::Echo, 32),
            step(Ws, Workload::Echo, 32),
            step(Ws, Workload::Push, 32),
            step(Http, Workload::Echo, 1024),
            step(Ws, Workload::Echo, 1024),
        ];
        let steps = rotated_rounds(&one_round, 4);
        let seen: Vec<(usize, String, &str, usize)> = steps
            .iter()
            .map(|s| (s.round, s.protocol.name(), s.workload.as_str(), s.size))
            .collect();
        let mut expected = Vec::new();
        for (round, order32, order1k) in [
            (0, ["http", "https", "ws"], ["http", "ws"]),
            (1, ["https", "ws", "http"], ["ws", "http"]),
            (2, ["ws", "http", "https"], ["http", "ws"]),
            (3, ["http", "https", "ws"], ["ws", "http"]),
        ] {
            expected.extend(order32.map(|p| (round, p.to_owned(), "echo", 32)));
            expected.push((round, "ws".to_owned(), "push", 32));
            expected.extend(order1k.map(|p| (round, p.to_owned(), "echo", 1024)));
        }
        assert_eq!(seen, expected);
    }
}
