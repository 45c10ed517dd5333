//! Warnings a peer can cause over and over (a budget refusal, a cross-origin upgrade): logged
//! at most once a second, with how many there were, so that a flood cannot flood the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Counts occurrences of one warning and says when to log it.
#[derive(Debug)]
pub(crate) struct EverySecond {
    count: AtomicU64,
    /// Second (since the Unix epoch) of the last one logged.
    logged_at: AtomicU64,
}

impl EverySecond {
    pub(crate) const fn new() -> Self {
        Self {
            count: AtomicU64::new(0),
            logged_at: AtomicU64::new(0),
        }
    }

    /// Counts one; `Some(count so far)` when this one should be logged: the first in its
    /// second.
    pub(crate) fn due(&self) -> Option<u64> {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        (self.logged_at.swap(now, Ordering::Relaxed) != now).then_some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::EverySecond;

    #[test]
    fn the_first_of_a_second_is_logged_with_the_count_so_far() {
        let warning = EverySecond::new();
        assert_eq!(warning.due(), Some(1));
        // The rest of a burst within the same second is only counted (a burst that straddles
        // a second boundary logs once more).
        let logged: Vec<u64> = (0..1000).filter_map(|_| warning.due()).collect();
        assert!(logged.len() <= 1, "{logged:?}");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(warning.due(), Some(1002));
    }
}
