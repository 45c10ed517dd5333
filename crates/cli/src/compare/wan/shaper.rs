//! One direction of the userspace link: the pure schedule of delay, loss and rate, with no
//! I/O and no clock of its own (the caller passes `now`), so tests drive it deterministically.
//!
//! The model is netem's: a packet is lost (or not) on arrival, then waits for the link to be
//! free, takes its serialization time at the rate, and is delivered the one-way delay after
//! it left. The delay is constant and the link is FIFO, so release times never decrease and
//! a `VecDeque` is the whole delay line.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What a queued packet costs besides its bytes (its queue slot, its allocation), charged
/// against [`LinkConfig::queue_bytes`] so a flood of tiny packets is bounded too.
pub const PACKET_OVERHEAD: usize = 64;

/// Settings of one direction.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// One-way delay added to every packet (half the round trip).
    pub delay: Duration,
    /// Probability that a packet is lost, from 0 to 1, drawn independently per packet
    /// (netem's default model: no bursts).
    pub loss: f64,
    /// Rate limit in bits per second; `None` = as fast as packets arrive.
    pub rate_bits_per_sec: Option<f64>,
    /// Most memory held at once by packets waiting for the link or in flight on it, each
    /// charged its length plus [`PACKET_OVERHEAD`]. A packet that would exceed it is
    /// dropped (tail drop), which bounds memory whatever the sender does.
    pub queue_bytes: usize,
    /// Longest a packet may wait for the link under a rate limit before it is dropped (tail
    /// drop): a second, like the tbf queue `compare --bandwidth` uses without the fallback.
    pub max_backlog: Duration,
    /// Seed of the loss draws, so a run's losses can be replayed.
    pub seed: u64,
}

impl LinkConfig {
    /// Default for [`LinkConfig::queue_bytes`]: 64 MiB per direction.
    pub const DEFAULT_QUEUE_BYTES: usize = 64 << 20;
    /// Default for [`LinkConfig::max_backlog`].
    pub const DEFAULT_MAX_BACKLOG: Duration = Duration::from_secs(1);
}

/// What became of an offered packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Queued; it is released at `due`.
    Queued {
        /// When [`Shaper::pop_due`] hands it out.
        due: Instant,
    },
    /// Lost at random (the `--loss` draw).
    Lost,
    /// Dropped because the queue was full (bytes or backlog).
    QueueFull,
}

/// Packet counts of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets offered.
    pub packets_in: u64,
    /// Packets released (delivered to the other side).
    pub packets_out: u64,
    /// Bytes released.
    pub bytes_out: u64,
    /// Packets lost at random.
    pub lost: u64,
    /// Packets dropped on a full queue.
    pub queue_full: u64,
}

/// One direction's delay line.
#[derive(Debug)]
pub struct Shaper {
    config: LinkConfig,
    rng: SplitMix64,
    queue: VecDeque<(Instant, Vec<u8>)>,
    held_bytes: usize,
    /// `held_bytes` plus [`PACKET_OVERHEAD`] per packet.
    held_memory: usize,
    /// When the link finishes serializing the last queued packet (rate limit only).
    link_free_at: Option<Instant>,
    stats: LinkStats,
}

impl Shaper {
    /// An empty line with `config`.
    pub fn new(config: LinkConfig) -> Self {
        Self {
            rng: SplitMix64(config.seed),
            config,
            queue: VecDeque::new(),
            held_bytes: 0,
            held_memory: 0,
            link_free_at: None,
            stats: LinkStats::default(),
        }
    }

    /// Offers a packet that arrived at `now`.
    pub fn offer(&mut self, now: Instant, packet: Vec<u8>) -> Verdict {
        self.stats.packets_in += 1;
        // netem draws loss before queueing: a lost packet takes no link time.
        if self.config.loss > 0.0 && self.rng.next_f64() < self.config.loss {
            self.stats.lost += 1;
            return Verdict::Lost;
        }
        if self.held_memory + packet.len() + PACKET_OVERHEAD > self.config.queue_bytes {
            self.stats.queue_full += 1;
            return Verdict::QueueFull;
        }
        let left_at = match self.config.rate_bits_per_sec {
            None => now,
            Some(rate) => {
                let start = self.link_free_at.map_or(now, |free| free.max(now));
                if start.saturating_duration_since(now) > self.config.max_backlog {
                    self.stats.queue_full += 1;
                    return Verdict::QueueFull;
                }
                // Bits over bits per second; a rate is positive (parse_bandwidth checks).
                let serialization = Duration::from_secs_f64(packet.len() as f64 * 8.0 / rate);
                let done = start + serialization;
                self.link_free_at = Some(done);
                done
            }
        };
        let due = left_at + self.config.delay;
        self.held_bytes += packet.len();
        self.held_memory += packet.len() + PACKET_OVERHEAD;
        self.queue.push_back((due, packet));
        Verdict::Queued { due }
    }

    /// When the next packet is due, if any is queued.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(due, _)| *due)
    }

    /// The next packet due at or before `now`, in arrival order.
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_due()? > now {
            return None;
        }
        let (_, packet) = self.queue.pop_front()?;
        self.held_bytes -= packet.len();
        self.held_memory -= packet.len() + PACKET_OVERHEAD;
        self.stats.packets_out += 1;
        self.stats.bytes_out += packet.len() as u64;
        Some(packet)
    }

    /// Counts so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Bytes queued now.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator, plenty for loss draws and
/// the same sequence on every platform.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1): the top 53 bits as a double's mantissa.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LinkConfig {
        LinkConfig {
            delay: Duration::from_millis(25),
            loss: 0.0,
            rate_bits_per_sec: None,
            queue_bytes: LinkConfig::DEFAULT_QUEUE_BYTES,
            max_backlog: LinkConfig::DEFAULT_MAX_BACKLOG,
            seed: 7,
        }
    }

    #[test]
    fn packets_leave_after_the_delay_in_order() {
        let t0 = Instant::now();
        let mut line = Shaper::new(config());
        assert_eq!(
            line.offer(t0, vec![1; 100]),
            Verdict::Queued {
                due: t0 + Duration::from_millis(25)
            }
        );
        line.offer(t0 + Duration::from_millis(3), vec![2; 50]);
        assert_eq!(line.held_bytes(), 150);
        assert_eq!(line.pop_due(t0 + Duration::from_millis(24)), None);
        assert_eq!(line.next_due(), Some(t0 + Duration::from_millis(25)));
        assert_eq!(
            line.pop_due(t0 + Duration::from_millis(27)),
            Some(vec![1; 100])
        );
        assert_eq!(line.pop_due(t0 + Duration::from_millis(27)), None);
        assert_eq!(
            line.pop_due(t0 + Duration::from_millis(28)),
            Some(vec![2; 50])
        );
        assert_eq!(line.next_due(), None);
        let stats = line.stats();
        assert_eq!(
            (stats.packets_in, stats.packets_out, stats.bytes_out),
            (2, 2, 150)
        );
        assert_eq!(line.held_bytes(), 0);
    }

    #[test]
    fn loss_is_seeded_and_near_its_probability() {
        let t0 = Instant::now();
        let run = |seed| {
            let mut line = Shaper::new(LinkConfig {
                loss: 0.05,
                seed,
                ..config()
            });
            (0..20_000)
                .map(|_| line.offer(t0, vec![0; 1]) == Verdict::Lost)
                .collect::<Vec<bool>>()
        };
        let a = run(1);
        assert_eq!(a, run(1), "the same seed loses the same packets");
        assert_ne!(a, run(2), "another seed loses others");
        let lost = a.iter().filter(|&&l| l).count();
        // 5% of 20,000 is 1,000 with a standard deviation of about 31.
        assert!((880..1120).contains(&lost), "{lost} lost of 20000 at 5%");

        let mut none = Shaper::new(config());
        let mut all = Shaper::new(LinkConfig {
            loss: 1.0,
            ..config()
        });
        for _ in 0..1000 {
            assert!(matches!(none.offer(t0, vec![0]), Verdict::Queued { .. }));
            assert_eq!(all.offer(t0, vec![0]), Verdict::Lost);
        }
        assert_eq!(all.stats().lost, 1000);
    }

    #[test]
    fn a_rate_spaces_packets_by_their_serialization_time() {
        let t0 = Instant::now();
        // 1 Mbit/s: 1250 bytes take 10 ms.
        let mut line = Shaper::new(LinkConfig {
            rate_bits_per_sec: Some(1e6),
            ..config()
        });
        let due: Vec<Instant> = (0..3)
            .map(|_| match line.offer(t0, vec![0; 1250]) {
                Verdict::Queued { due } => due,
                other => panic!("{other:?}"),
            })
            .collect();
        let ms = |d: Instant| (d - t0).as_secs_f64() * 1000.0;
        for (i, d) in due.iter().enumerate() {
            let expected = 25.0 + 10.0 * (i as f64 + 1.0);
            assert!((ms(*d) - expected).abs() < 0.01, "packet {i}: {}", ms(*d));
        }
        // An idle link starts afresh: a packet long after the burst waits only for itself.
        let later = t0 + Duration::from_secs(1);
        let Verdict::Queued { due } = line.offer(later, vec![0; 125]) else {
            panic!("queued");
        };
        assert!(((due - later).as_secs_f64() * 1000.0 - 26.0).abs() < 0.01);
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_and_backlog() {
        let t0 = Instant::now();
        let mut line = Shaper::new(LinkConfig {
            queue_bytes: 3000 + 2 * PACKET_OVERHEAD,
            ..config()
        });
        assert!(matches!(
            line.offer(t0, vec![0; 1500]),
            Verdict::Queued { .. }
        ));
        assert!(matches!(
            line.offer(t0, vec![0; 1500]),
            Verdict::Queued { .. }
        ));
        assert_eq!(line.offer(t0, vec![0; 1]), Verdict::QueueFull);
        assert!(line.pop_due(t0 + Duration::from_millis(30)).is_some());
        assert!(matches!(line.offer(t0, vec![0; 1]), Verdict::Queued { .. }));

        // Tiny packets are bounded by their overhead.
        let mut tiny = Shaper::new(LinkConfig {
            queue_bytes: 10 * PACKET_OVERHEAD,
            ..config()
        });
        let queued = (0..100)
            .filter(|_| matches!(tiny.offer(t0, Vec::new()), Verdict::Queued { .. }))
            .count();
        assert_eq!(queued, 10);
        assert_eq!(tiny.stats().queue_full, 90);

        // 8 kbit/s: 1000 bytes take 1 s, so the third packet would wait over a second.
        let mut slow = Shaper::new(LinkConfig {
            rate_bits_per_sec: Some(8000.0),
            ..config()
        });
        assert!(matches!(
            slow.offer(t0, vec![0; 1000]),
            Verdict::Queued { .. }
        ));
        assert!(matches!(
            slow.offer(t0, vec![0; 1000]),
            Verdict::Queued { .. }
        ));
        assert_eq!(slow.offer(t0, vec![0; 1000]), Verdict::QueueFull);
        assert_eq!(slow.stats().queue_full, 1);
        assert_eq!(slow.held_bytes(), 2000);
    }
}
