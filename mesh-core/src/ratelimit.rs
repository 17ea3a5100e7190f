//! Local rate limiting: a token bucket per sidecar (Envoy's `local_ratelimit` filter), applied on
//! the inbound side before a request reaches the app. A request that finds the bucket empty is
//! answered 429 `rate_limited` at once. Refill follows tokio time, so simulated time applies.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub rps: f64,
    /// Requests allowed at once on a full bucket.
    pub burst: u32,
}

/// A token bucket.
#[derive(Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    state: Mutex<(f64, Option<Instant>)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit) -> Self {
        let burst = f64::from(limit.burst.max(1));
        Self {
            limit,
            state: Mutex::new((burst, None)),
        }
    }

    /// Take a token if there is one.
    pub fn try_acquire(&self) -> bool {
        let now = Instant::now(); // tokio clock (simulated under sim); allow-nondeterminism
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *st;
        if let Some(last) = *last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            *tokens = (*tokens + dt * self.limit.rps).min(f64::from(self.limit.burst.max(1)));
        }
        *last = Some(now);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Requests a bucket with `limit` admits over `elapsed` at most (for tests and docs).
pub fn admits_at_most(limit: &RateLimit, elapsed: Duration) -> f64 {
    f64::from(limit.burst.max(1)) + limit.rps * elapsed.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Over any arrival pattern, admissions never exceed burst + rate × elapsed.
        #[test]
        fn never_admits_more_than_rate_and_burst(rps in 1u32..500, burst in 1u32..50, gaps_ms in proptest::collection::vec(0u64..20, 1..400)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            rt.block_on(async {
                let limit = RateLimit { rps: f64::from(rps), burst };
                let b = TokenBucket::new(limit.clone());
                let start = Instant::now(); // tokio clock (simulated under sim); allow-nondeterminism
                let mut admitted = 0u32;
                for g in gaps_ms {
                    tokio::time::advance(Duration::from_millis(g)).await;
                    admitted += u32::from(b.try_acquire());
                    prop_assert!(f64::from(admitted) <= admits_at_most(&limit, start.elapsed()) + 1e-9);
                }
                Ok(())
            })?;
        }

        /// And never fewer than it must: a full bucket admits exactly `burst` requests arriving
        /// at once, and after `gap` idle it admits exactly the whole tokens that accrued
        /// (min(burst, ⌊rps × gap⌋)) — a limiter that refused everything, or never refilled,
        /// fails here.
        #[test]
        fn admits_its_burst_and_refills_at_its_rate(rps in 1u32..500, burst in 1u32..50, gap_ms in 1u64..5_000) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            rt.block_on(async {
                let b = TokenBucket::new(RateLimit { rps: f64::from(rps), burst });
                let at_once = |b: &TokenBucket| (0..burst + 10).filter(|_| b.try_acquire()).count() as u64;
                prop_assert_eq!(at_once(&b), u64::from(burst));
                tokio::time::advance(Duration::from_millis(gap_ms)).await;
                // Whole tokens accrued: rps × gap / 1000, in integers so no rounding decides it.
                let accrued = (u64::from(rps) * gap_ms / 1000).min(u64::from(burst));
                prop_assert_eq!(at_once(&b), accrued);
                Ok(())
            })?;
        }
    }
}
