//! When a burst of changes becomes a push: Istio's debounce (`PILOT_DEBOUNCE_AFTER` 100 ms,
//! `PILOT_DEBOUNCE_MAX` 10 s, `pilot/pkg/features`). A push waits until no change has come for
//! the quiet period, but never longer than the maximum after the burst's first change, so a
//! steady trickle of changes (a rolling restart) still reaches proxies.

use std::time::Duration;

use tokio::time::Instant;

/// Debounce settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Debounce {
    /// Push once no change has come for this long.
    pub quiet: Duration,
    /// Push at the latest this long after the burst's first change.
    pub max: Duration,
}

impl Debounce {
    /// Istio's defaults: 100 ms quiet, 10 s at most.
    pub const ISTIO: Debounce = Debounce {
        quiet: Duration::from_millis(100),
        max: Duration::from_secs(10),
    };

    /// When a burst whose first change came at `first` and last at `last` is pushed.
    pub fn due(&self, first: Instant, last: Instant) -> Instant {
        (last + self.quiet).min(first + self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_change_waits_the_quiet_period_and_a_trickle_the_maximum() {
        let d = Debounce::ISTIO;
        let t0 = Instant::now();
        assert_eq!(d.due(t0, t0), t0 + Duration::from_millis(100));
        // A change every 50 ms never leaves 100 ms of quiet: pushed at 10 s.
        let last = t0 + Duration::from_secs(12);
        assert_eq!(d.due(t0, last), t0 + Duration::from_secs(10));
        let last = t0 + Duration::from_millis(9_950);
        assert_eq!(d.due(t0, last), t0 + Duration::from_secs(10));
        let last = t0 + Duration::from_millis(9_850);
        assert_eq!(d.due(t0, last), t0 + Duration::from_millis(9_950));
    }
}
