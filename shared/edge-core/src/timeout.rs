//! Deadlines on the platform's timer: the first of a future and a sleep wins, and the loser is
//! dropped (which cancels an outbound request or a wait). No runtime, no `std::time`.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use crate::ports::Timer;

/// `Some(output)` if `fut` completes within `ms` milliseconds of `timer`'s time, else `None`.
/// `fut` is polled first, so a future that is already done wins even against `ms == 0`.
pub async fn within<F: Future, T: Timer>(timer: &T, ms: u64, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut sleep = pin!(timer.sleep(ms));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{block_on, MemoryTimer};

    #[test]
    fn a_ready_future_wins() {
        let t = MemoryTimer::default();
        assert_eq!(block_on(within(&t, 0, async { 7 })), Some(7));
    }

    #[test]
    fn a_future_that_never_completes_times_out() {
        let t = MemoryTimer::default();
        assert_eq!(
            block_on(within(&t, 2_000, std::future::pending::<u8>())),
            None
        );
        assert_eq!(t.slept(), vec![2_000]);
    }
}
