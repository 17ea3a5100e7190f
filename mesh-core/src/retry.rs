//! Retry decisions: is this attempt's outcome retryable, how long to back off, may the budget
//! afford another retry. The retry loop itself is in the proxy's outbound path, which composes
//! these with the per-try timeout and the circuit breaker.
//!
//! # Why budgets and not only max retries?
//! A fixed retry count multiplies load under failure: three retries at each of three tiers is up
//! to 4³ = 64 attempts at the bottom for one request at the top (the retry storm of Google's SRE
//! book, "Handling Overload"). A budget bounds retries to a share of the traffic (Linkerd's 20%),
//! so a failing dependency sees at most ~1.2× its normal load from each caller, whatever the count.
//!
//! The budget is tower's `TpsBudget` (tokio time, so it follows simulated time); the backoff
//! jitter comes from an RNG the caller seeds, never from the OS.

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tower::retry::budget::{Budget as _, TpsBudget};

use crate::error::{ERROR_HEADER, ProxyError};
use crate::policy::{Budget, RetryOn};

/// How an attempt ended, as far as retry conditions care: typed, whether this proxy failed the
/// attempt itself or the upstream's sidecar did and said why in [`ERROR_HEADER`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptEnd {
    /// The response status (the proxy's own when it answered itself).
    pub status: u16,
    /// Why a proxy answered itself, if one did.
    pub error: Option<ProxyError>,
    /// The `grpc-status` header of a trailers-only gRPC response, if any.
    pub grpc_status: Option<u16>,
}

impl AttemptEnd {
    /// Read from a response's status and headers.
    pub fn of(status: http::StatusCode, headers: &http::HeaderMap) -> Self {
        let text = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
        Self {
            status: status.as_u16(),
            error: text(ERROR_HEADER).and_then(ProxyError::from_reason),
            grpc_status: text("grpc-status").and_then(|v| v.parse().ok()),
        }
    }

    /// An attempt this proxy failed with `e`.
    pub fn failed(e: ProxyError) -> Self {
        Self {
            status: e.status().as_u16(),
            error: Some(e),
            grpc_status: None,
        }
    }
}

/// Whether an attempt that ended as `end` may be retried under `on`.
pub fn retryable(on: &RetryOn, end: AttemptEnd) -> bool {
    let code = end.status;
    let is = |e: ProxyError| end.error == Some(e);
    (on.status_5xx && code >= 500)
        || (on.gateway_error && matches!(code, 502..=504))
        || (on.connect_failure && (is(ProxyError::ConnectFailed) || is(ProxyError::ConnectTimeout)))
        || (on.reset && is(ProxyError::UpstreamReset))
        || (on.refused_stream && is(ProxyError::RefusedStream))
        || on.statuses.contains(&code)
        || end.grpc_status.is_some_and(|g| on.grpc.contains(&g))
}

/// Full-jitter exponential backoff before retry number `retry` (1-based).
pub fn backoff(rng: &mut ChaCha8Rng, base: Duration, max: Duration, retry: u32) -> Duration {
    let cap = base
        .saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u32::MAX),
        )
        .min(max);
    if cap.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_micros(rng.random_range(0..cap.as_micros() as u64))
}

/// A retry budget for one destination of one proxy.
///
/// tower's `TpsBudget` keeps integer accounts: a ratio `r` ≤ 1 becomes one retry per ⌊1/r⌋
/// requests, so the effective ratio is 1/⌊1/r⌋ (0.2 and 0.1 are exact; 0.15 acts as 1/6).
/// [`RetryBudget::effective_ratio`] says what a configured ratio really allows.
#[derive(Debug)]
pub struct RetryBudget(TpsBudget);

impl RetryBudget {
    /// A budget as `b` describes it.
    pub fn new(b: &Budget) -> Self {
        let ttl = b.ttl.clamp(Duration::from_secs(1), Duration::from_secs(60));
        Self(TpsBudget::new(
            ttl,
            b.min_per_sec,
            b.ratio.clamp(0.0, 1000.0),
        ))
    }
    /// The ratio tower's integer accounting really grants for a configured `ratio`.
    pub fn effective_ratio(ratio: f32) -> f64 {
        if ratio <= 0.0 {
            0.0
        } else if ratio <= 1.0 {
            1.0 / (1.0 / f64::from(ratio)).trunc()
        } else {
            1000.0 / (1000.0 / f64::from(ratio)).trunc()
        }
    }

    /// An original request passed: it earns the budget its share.
    pub fn deposit(&self) {
        self.0.deposit();
    }
    /// Take one retry from the budget; false when it is exhausted.
    pub fn withdraw(&self) -> bool {
        self.0.withdraw()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    #[test]
    fn conditions() {
        let on = RetryOn {
            gateway_error: true,
            ..RetryOn::default()
        };
        assert!(retryable(&on, end(502, None)));
        assert!(!retryable(&on, end(500, None)));
        let on = RetryOn {
            connect_failure: true,
            ..RetryOn::default()
        };
        assert!(retryable(&on, end(503, Some("connect_failed"))));
        assert!(!retryable(&on, end(503, Some("no_endpoints"))));
        assert!(!retryable(&on, end(503, Some("refused_stream"))));
        let on = RetryOn {
            refused_stream: true,
            ..RetryOn::default()
        };
        assert!(retryable(&on, end(503, Some("refused_stream"))));
        assert!(!retryable(&on, end(502, Some("upstream_reset"))));
        let on = RetryOn {
            statuses: vec![429],
            ..RetryOn::default()
        };
        assert!(retryable(&on, end(429, None)));
        assert!(!retryable(&RetryOn::default(), end(500, None)));
    }

    #[test]
    fn grpc_status_in_a_trailers_only_response() {
        let on = RetryOn {
            grpc: vec![14, 1],
            ..RetryOn::default()
        };
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("14"));
        assert!(retryable(
            &on,
            AttemptEnd::of(http::StatusCode::OK, &headers)
        ));
        headers.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert!(!retryable(
            &on,
            AttemptEnd::of(http::StatusCode::OK, &headers)
        ));
        assert!(!retryable(
            &on,
            AttemptEnd::of(http::StatusCode::OK, &http::HeaderMap::new())
        ));
    }

    fn end(status: u16, reason: Option<&str>) -> AttemptEnd {
        AttemptEnd {
            status,
            error: reason.map(|r| ProxyError::from_reason(r).expect("a proxy reason")),
            grpc_status: None,
        }
    }

    proptest! {
        /// Backoff never exceeds min(base·2ⁿ⁻¹, max).
        #[test]
        fn backoff_is_bounded(seed in any::<u64>(), base_ms in 1u64..100, max_ms in 1u64..1000, retry in 1u32..40) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let (base, max) = (Duration::from_millis(base_ms), Duration::from_millis(max_ms));
            let d = backoff(&mut rng, base, max, retry);
            let cap = base.saturating_mul(1u32.checked_shl(retry - 1).unwrap_or(u32::MAX)).min(max);
            prop_assert!(d < cap || cap.is_zero());
        }

        /// Full jitter: each draw is uniform on [0, cap), so the mean of n draws is cap/2 within
        /// 5 standard errors (σ = cap/√12/√n). A backoff stuck at zero, or one that does not grow
        /// with the retry number until `max`, fails here.
        #[test]
        fn backoff_is_uniform_up_to_its_cap(seed in any::<u64>(), base_ms in 1u64..100, max_ms in 1u64..1000, retry in 1u32..12) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let (base, max) = (Duration::from_millis(base_ms), Duration::from_millis(max_ms));
            let n = 400;
            let cap = (base_ms << (retry - 1)).min(max_ms) as f64 * 1000.0;
            let mean = (0..n).map(|_| backoff(&mut rng, base, max, retry).as_micros() as f64).sum::<f64>() / f64::from(n);
            let se = cap / 12f64.sqrt() / f64::from(n).sqrt();
            prop_assert!((mean - cap / 2.0).abs() <= 5.0 * se, "mean {} µs, cap {} µs", mean, cap);
        }

        /// Over any window the budget allows at most ratio × deposits + min_per_sec × ttl retries.
        #[test]
        fn budget_is_never_exceeded(deposits in 0u32..500, ratio_pct in 0u32..100, min_per_sec in 0u32..5) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            rt.block_on(async {
                let b = RetryBudget::new(&Budget { ratio: ratio_pct as f32 / 100.0, min_per_sec, ttl: Duration::from_secs(10) });
                for _ in 0..deposits {
                    b.deposit();
                }
                let mut granted = 0u32;
                while b.withdraw() {
                    granted += 1;
                    prop_assert!(granted <= 100_000, "runaway budget");
                }
                let ratio = RetryBudget::effective_ratio(ratio_pct as f32 / 100.0);
                let bound = deposits as f64 * ratio + (min_per_sec * 10) as f64 + 1.0;
                prop_assert!(granted as f64 <= bound, "granted {} > bound {}", granted, bound);
                Ok(())
            })?;
        }
    }
}
