//! Local rate limiting: a token bucket per sidecar, or per inbound route (Envoy's
//! `local_ratelimit` filter), as a tower layer ([`LocalRateLimitLayer`]) the proxy puts in front
//! of the local app. A request that finds its bucket empty fails with
//! [`ProxyError::RateLimited`] (429) at once, without reaching the service inside. Refill follows
//! tokio time, so simulated time applies.
//!
//! Which route a request is on is decided before the layer (the proxy's route phase) and
//! handed to it as a [`MatchedRoute`] request extension, so the layer owns buckets, not matching.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{Either, Ready, ready};
use tokio::time::Instant;

use crate::error::ProxyError;

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

/// The inbound route (index into the proxy's route limits) a request matched, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchedRoute(pub usize);

/// Buckets for a service-wide limit and per-route limits.
#[derive(Debug, Default)]
struct Buckets {
    service: Option<TokenBucket>,
    routes: Vec<TokenBucket>,
}

/// Wraps a service with local rate limits: the bucket of the request's [`MatchedRoute`], else
/// the service-wide one, else none.
#[derive(Clone, Debug)]
pub struct LocalRateLimitLayer {
    buckets: Arc<Buckets>,
}

impl LocalRateLimitLayer {
    /// A service-wide limit (if any) and one per route, in the order [`MatchedRoute`] indexes.
    pub fn new(service: Option<RateLimit>, routes: impl IntoIterator<Item = RateLimit>) -> Self {
        Self {
            buckets: Arc::new(Buckets {
                service: service.map(TokenBucket::new),
                routes: routes.into_iter().map(TokenBucket::new).collect(),
            }),
        }
    }
}

impl<S> tower::Layer<S> for LocalRateLimitLayer {
    type Service = LocalRateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LocalRateLimit {
            inner,
            buckets: self.buckets.clone(),
        }
    }
}

/// The service [`LocalRateLimitLayer`] makes.
#[derive(Clone, Debug)]
pub struct LocalRateLimit<S> {
    inner: S,
    buckets: Arc<Buckets>,
}

impl<S, B> tower::Service<http::Request<B>> for LocalRateLimit<S>
where
    S: tower::Service<http::Request<B>, Error = ProxyError>,
{
    type Response = S::Response;
    type Error = ProxyError;
    type Future = Either<Ready<Result<S::Response, ProxyError>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let bucket = match req.extensions().get::<MatchedRoute>() {
            Some(MatchedRoute(i)) => self.buckets.routes.get(*i),
            None => self.buckets.service.as_ref(),
        };
        if bucket.is_some_and(|b| !b.try_acquire()) {
            Either::Left(ready(Err(ProxyError::RateLimited)))
        } else {
            Either::Right(self.inner.call(req))
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
    use tower::{Layer, ServiceExt};

    /// The layer takes the matched route's bucket, else the service-wide one, and a refusal
    /// never reaches the service inside.
    #[tokio::test(start_paused = true)]
    async fn the_layer_refuses_by_the_matched_routes_bucket() {
        let reached = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = reached.clone();
        let inner = tower::service_fn(move |_req: http::Request<()>| {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::future::ready(Ok::<_, ProxyError>(200u16))
        });
        let limit = |burst| RateLimit { rps: 1.0, burst };
        let svc = LocalRateLimitLayer::new(Some(limit(2)), [limit(1)]).layer(inner);
        let call = |route: Option<usize>| {
            let svc = svc.clone();
            async move {
                let mut req = http::Request::new(());
                if let Some(i) = route {
                    req.extensions_mut().insert(MatchedRoute(i));
                }
                svc.oneshot(req).await
            }
        };
        assert_eq!(call(Some(0)).await, Ok(200));
        assert_eq!(call(Some(0)).await, Err(ProxyError::RateLimited));
        // The service-wide bucket is its own: two more, then refused.
        assert_eq!(call(None).await, Ok(200));
        assert_eq!(call(None).await, Ok(200));
        assert_eq!(call(None).await, Err(ProxyError::RateLimited));
        assert_eq!(reached.load(std::sync::atomic::Ordering::Relaxed), 3);
        // With no limits at all, everything passes.
        let open = LocalRateLimitLayer::new(None, []).layer(tower::service_fn(
            |_req: http::Request<()>| std::future::ready(Ok::<_, ProxyError>(200u16)),
        ));
        for _ in 0..100 {
            assert_eq!(open.clone().oneshot(http::Request::new(())).await, Ok(200));
        }
    }

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
