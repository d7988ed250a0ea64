//! Reconnection backoff, shared by the backends: after a failure the next attempt waits 1 s,
//! doubling with each further failure, at most 30 s; a success starts over.

use std::time::{Duration, Instant};

pub const FIRST: Duration = Duration::from_secs(1);
pub const MAX: Duration = Duration::from_secs(30);

/// When the next attempt to reach a peer is due.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    delay: Duration,
    max: Duration,
    next_attempt: Instant,
}

impl Backoff {
    /// Due at once.
    pub fn new() -> Backoff {
        Backoff::with_max(MAX)
    }

    /// Due at once; waits grow to `max` instead of [`MAX`].
    pub fn with_max(max: Duration) -> Backoff {
        Backoff { delay: FIRST.min(max), max, next_attempt: Instant::now() }
    }

    /// How long until the next attempt is due; zero when it is due.
    pub fn wait(&self, now: Instant) -> Duration {
        self.next_attempt.saturating_duration_since(now)
    }

    /// An attempt failed (or a connection died): the next one waits the current delay, and
    /// the delay doubles. Returns the wait.
    pub fn failed(&mut self, now: Instant) -> Duration {
        self.next_attempt = now + self.delay;
        self.delay = (self.delay * 2).min(self.max);
        self.wait(now)
    }

    /// An attempt succeeded: the next failure waits the first delay again.
    pub fn succeeded(&mut self) {
        self.delay = FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_thirty_seconds_and_a_success_starts_over() {
        let mut b = Backoff::new();
        let now = Instant::now();
        assert_eq!(b.wait(now), Duration::ZERO);
        let waits: Vec<u64> = (0..7).map(|_| b.failed(now).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        b.succeeded();
        assert_eq!(b.failed(now).as_secs(), 1);
    }

    #[test]
    fn a_capped_backoff_never_waits_longer_than_its_cap() {
        let mut b = Backoff::with_max(Duration::from_secs(3));
        let now = Instant::now();
        let waits: Vec<u64> = (0..5).map(|_| b.failed(now).as_secs()).collect();
        assert_eq!(waits, [1, 2, 3, 3, 3]);
    }
}
