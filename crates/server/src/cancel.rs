//! A one-shot shutdown signal that every connection checks and waits on between reads.
//!
//! tokio-util's `CancellationToken` takes a mutex to answer `is_cancelled` and again each
//! time a waiter that is already registered is polled. A WebSocket session waits on two such
//! signals (drain, then hard stop) once per message; callgrind put the two at about 150
//! instructions per echoed message, more than parsing the frame. Here both are an atomic
//! load and an [`AtomicWaker`]; the lock is taken only when a waiter is first polled or
//! dropped, and when the signal fires.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

/// A signal that fires once and stays fired. Clones share it.
#[derive(Debug, Clone, Default)]
pub(crate) struct CancelToken {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    fired: AtomicBool,
    waiters: Mutex<Waiters>,
}

/// The wakers of every waiter that has been polled and not dropped; a freed slot is reused.
#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Arc<AtomicWaker>>>,
    free: Vec<usize>,
}

impl CancelToken {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Fires the signal and wakes every waiter; later calls do nothing more.
    pub(crate) fn cancel(&self) {
        self.shared.fired.store(true, Ordering::SeqCst);
        let waiters = self
            .shared
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for waker in waiters.slots.iter().flatten() {
            waker.wake();
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.shared.fired.load(Ordering::SeqCst)
    }

    /// Completes once the signal has fired. Keep the future pinned across waits: polling it
    /// again is the cheap path, creating it again takes the lock.
    pub(crate) fn cancelled(&self) -> Cancelled<'_> {
        Cancelled {
            shared: &self.shared,
            slot: None,
        }
    }
}

/// The future of [`CancelToken::cancelled`].
#[derive(Debug)]
pub(crate) struct Cancelled<'a> {
    shared: &'a Shared,
    /// This waiter's slot and waker, once polled.
    slot: Option<(usize, Arc<AtomicWaker>)>,
}

impl Future for Cancelled<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.fired.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        match &self.slot {
            Some((_, waker)) => waker.register(cx.waker()),
            None => {
                let waker = Arc::new(AtomicWaker::new());
                // Registered before it is listed, so `cancel` never finds it empty.
                waker.register(cx.waker());
                let mut waiters = self
                    .shared
                    .waiters
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let index = match waiters.free.pop() {
                    Some(index) => {
                        waiters.slots[index] = Some(Arc::clone(&waker));
                        index
                    }
                    None => {
                        waiters.slots.push(Some(Arc::clone(&waker)));
                        waiters.slots.len() - 1
                    }
                };
                drop(waiters);
                self.slot = Some((index, waker));
            }
        }
        // A `cancel` between the first check and the registration has either seen this
        // waker (and woken it) or stored the flag before this load.
        if self.shared.fired.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Cancelled<'_> {
    fn drop(&mut self) {
        if let Some((index, _)) = self.slot.take() {
            let mut waiters = self
                .shared
                .waiters
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            waiters.slots[index] = None;
            waiters.free.push(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::CancelToken;

    #[tokio::test]
    async fn wakes_every_waiter_and_stays_fired() {
        let token = CancelToken::new();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let token = token.clone();
            tasks.push(tokio::spawn(async move { token.cancelled().await }));
        }
        // A dropped waiter frees its slot for the next one.
        {
            let early = token.cancelled();
            tokio::pin!(early);
            assert!(futures_poll_once(early.as_mut()).await.is_pending());
        }
        tokio::task::yield_now().await;
        assert!(!token.is_cancelled());
        token.cancel();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("a waiter was not woken")
                .expect("waiter task");
        }
        assert!(token.is_cancelled());
        // Already fired: completes at once.
        tokio::time::timeout(Duration::from_secs(1), token.cancelled())
            .await
            .expect("a fired token must complete at once");
        assert_eq!(
            token
                .shared
                .waiters
                .lock()
                .map(|w| w.slots.iter().flatten().count())
                .unwrap_or(usize::MAX),
            0,
            "every finished waiter has left its slot"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancel_racing_new_waiters_reaches_all_of_them() {
        for _ in 0..20 {
            let token = CancelToken::new();
            let tasks: Vec<_> = (0..50)
                .map(|_| {
                    let token = token.clone();
                    tokio::spawn(async move { token.cancelled().await })
                })
                .collect();
            token.cancel();
            for task in tasks {
                tokio::time::timeout(Duration::from_secs(5), task)
                    .await
                    .expect("a waiter created around cancel() was not woken")
                    .expect("waiter task");
            }
        }
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(fut: F) -> std::task::Poll<()> {
        let mut fut = fut;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut fut).poll(cx).map(|_| ()))
        })
        .await
    }
}
