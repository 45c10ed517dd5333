//! The process-wide budget for bytes that WebSocket connections hold for messages in progress.
//!
//! One connection is bounded by the message size limit, but ten thousand connections each
//! holding a 15 MiB partial message are not: the budget is what keeps the sum under a figure
//! the machine can afford. Each connection charges what its buffers hold beyond a small free
//! allowance (the read buffer every connection has); a growth that would pass the limit is
//! refused, and the connection is closed with 1013 (try again later) instead of the process
//! growing.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::ratelog::EverySecond;

/// Shared by every listener of one lab.
#[derive(Debug)]
pub(crate) struct MessageBudget {
    limit: usize,
    used: AtomicUsize,
    refusals: EverySecond,
}

/// The budget would be exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverBudget;

impl MessageBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            refusals: EverySecond::new(),
        }
    }

    /// Bytes charged right now, over all connections.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// A connection's account, empty.
    pub(crate) fn account(&self) -> Charge<'_> {
        Charge {
            budget: self,
            held: 0,
        }
    }

    fn grow(&self, by: usize) -> Result<(), OverBudget> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.checked_add(by).filter(|&n| n <= self.limit);
            let Some(next) = next else {
                self.refusal(used, by);
                return Err(OverBudget);
            };
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    /// Brings a charge of `held` bytes to `bytes`: a growth asks the budget, a shrink always
    /// succeeds. On refusal the charge stays where it was.
    fn move_charge(&self, held: &mut usize, bytes: usize) -> Result<(), OverBudget> {
        if bytes > *held {
            self.grow(bytes - *held)?;
        } else if bytes < *held {
            self.shrink(*held - bytes);
        }
        *held = bytes;
        Ok(())
    }

    fn shrink(&self, by: usize) {
        self.used.fetch_sub(by, Ordering::Relaxed);
    }

    fn refusal(&self, used: usize, wanted: usize) {
        if let Some(refused) = self.refusals.due() {
            tracing::warn!(
                limit = self.limit,
                used,
                wanted,
                refused_so_far = refused,
                "WebSocket message buffer budget exhausted: closing connections that need more with 1013 (raise --max-buffered if this is legitimate load)"
            );
        }
    }
}

/// What one connection has charged to the budget; dropping it gives everything back.
#[derive(Debug)]
pub(crate) struct Charge<'a> {
    budget: &'a MessageBudget,
    held: usize,
}

impl Charge<'_> {
    /// Brings the charge to `bytes`: a growth asks the budget, a shrink always succeeds. On
    /// refusal the charge stays where it was.
    pub(crate) fn set(&mut self, bytes: usize) -> Result<(), OverBudget> {
        self.budget.move_charge(&mut self.held, bytes)
    }
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        self.budget.shrink(self.held);
    }
}

/// A charge that is not tied to one connection's lifetime: bytes queued by one task for
/// another (an echo POSTed for an SSE stream), given back when the bytes are dropped.
#[derive(Debug)]
pub(crate) struct OwnedCharge {
    budget: std::sync::Arc<MessageBudget>,
    held: usize,
}

impl MessageBudget {
    /// Charges `bytes` to `budget` until the returned charge is dropped.
    pub(crate) fn charge_owned(
        budget: &std::sync::Arc<Self>,
        bytes: usize,
    ) -> Result<OwnedCharge, OverBudget> {
        budget.grow(bytes)?;
        Ok(OwnedCharge {
            budget: std::sync::Arc::clone(budget),
            held: bytes,
        })
    }
}

impl Charge<'_> {
    /// The same account, held beyond the borrow of the budget: for a connection handed to a
    /// thread of its own. `budget` must be the budget this charge was taken from.
    pub(crate) fn into_owned(mut self, budget: &std::sync::Arc<MessageBudget>) -> OwnedCharge {
        debug_assert!(std::ptr::eq(self.budget, budget.as_ref()));
        // The bytes move to the owned charge; this one gives back nothing when dropped.
        let held = std::mem::take(&mut self.held);
        OwnedCharge {
            budget: std::sync::Arc::clone(budget),
            held,
        }
    }
}

impl OwnedCharge {
    /// Brings the charge to `bytes`, as [`Charge::set`] does.
    pub(crate) fn set(&mut self, bytes: usize) -> Result<(), OverBudget> {
        self.budget.move_charge(&mut self.held, bytes)
    }
}

impl Drop for OwnedCharge {
    fn drop(&mut self) {
        self.budget.shrink(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_bounded_and_given_back() {
        let budget = MessageBudget::new(100);
        let mut a = budget.account();
        let mut b = budget.account();
        assert_eq!(a.set(60), Ok(()));
        assert_eq!(b.set(50), Err(OverBudget));
        assert_eq!(budget.used(), 60, "a refused growth charges nothing");
        assert_eq!(b.set(40), Ok(()));
        assert_eq!(a.set(10), Ok(()));
        assert_eq!(b.set(90), Ok(()));
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 90);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn concurrent_charges_never_pass_the_limit() {
        let budget = std::sync::Arc::new(MessageBudget::new(1000));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let budget = std::sync::Arc::clone(&budget);
                std::thread::spawn(move || {
                    for i in 0..10_000usize {
                        let mut c = budget.account();
                        let _ = c.set(i % 400);
                        assert!(budget.used() <= 1000);
                    }
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok());
        }
        assert_eq!(budget.used(), 0);
    }
}
