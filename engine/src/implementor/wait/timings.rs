//! Durations of the steps of a wake-up, recorded only while a benchmark asks for them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Samples kept at most between two [`Timings::take`] calls (a few MiB); later ones are dropped.
const MAX_SAMPLES: usize = 1 << 20;

/// Durations of one step (a watcher's change read, a woken reader's re-read, …), recorded
/// while [enabled](Timings::enable): a diagnostics hook for benchmarks (issue 19's
/// `streamstore-waiters`), off by default. When off, a sample costs one atomic load.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Timings {
    on: AtomicBool,
    samples: Mutex<Vec<Duration>>,
}

impl Timings {
    /// Starts (`true`) or stops recording.
    pub fn enable(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    /// Records `d` if recording.
    pub fn record(&self, d: Duration) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() < MAX_SAMPLES {
            samples.push(d);
        }
    }

    /// The samples recorded since the last call, in order.
    pub fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_only_while_enabled() {
        let t = Timings::default();
        t.record(Duration::from_millis(1));
        t.enable(true);
        t.record(Duration::from_millis(2));
        t.enable(false);
        t.record(Duration::from_millis(3));
        assert_eq!(t.take(), [Duration::from_millis(2)]);
        assert!(t.take().is_empty());
    }
}
