//! Envoy-style circuit breaking by thresholds, per destination: connections, pending requests,
//! requests and retries in flight (or Envoy's concurrency retry budget in place of the retry cap).
//!
//! An attempt takes a [`Slot`] ([`Breakers::admit`]) before it is sent and gives it back when it
//! ends (the slot is dropped). An HTTP/1.1 attempt then also needs a connection
//! ([`Slot::connection`]): past `max_connections` it waits, and past `max_pending` waiting ones it
//! is refused. Every refusal is an [`Overflow`], recorded with its time as a [`BreakerEvent`].
//!
//! This is Envoy's breaker (overload protection, no failure counting); ejecting failing endpoints
//! is outlier detection, a separate policy ([`crate::balance`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::policy::CircuitBreaker;

/// Which threshold refused an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Overflow {
    /// `max_requests` in flight.
    MaxRequests,
    /// `max_retries` in flight.
    MaxRetries,
    /// Envoy's retry budget (`percent` of requests in flight, at least `min_concurrency`).
    RetryBudget,
    /// `max_connections` in use and `max_pending` already waiting.
    MaxPending,
}

impl Overflow {
    /// A stable snake_case name for counters and reports.
    pub fn reason(self) -> &'static str {
        match self {
            Overflow::MaxRequests => "max_requests",
            Overflow::MaxRetries => "max_retries",
            Overflow::RetryBudget => "retry_budget",
            Overflow::MaxPending => "max_pending",
        }
    }
}

/// One refusal, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerEvent {
    /// When (tokio clock: simulated time under the simulator).
    pub at: Instant,
    /// The destination service.
    pub service: String,
    /// Which threshold.
    pub overflow: Overflow,
    /// Whether the refused attempt was a retry (then the caller got the previous response).
    pub retry: bool,
}

/// What is in flight to one destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Attempts in flight (first tries and retries), pending ones included.
    pub requests: u32,
    /// Retries in flight.
    pub retries: u32,
    /// Attempts waiting for a connection.
    pub pending: u32,
}

#[derive(Debug, Default)]
struct Dest {
    now: InFlight,
    /// Connection permits, sized by the `max_connections` they were made for.
    connections: Option<(u32, Arc<Semaphore>)>,
}

#[derive(Debug, Default)]
struct Inner {
    dests: BTreeMap<String, Dest>,
    events: Vec<BreakerEvent>,
}

/// The breaker state of every destination of one proxy.
#[derive(Clone, Debug, Default)]
pub struct Breakers {
    inner: Arc<Mutex<Inner>>,
}

/// A slot held by one attempt; dropping it frees it.
#[derive(Debug)]
pub struct Slot {
    breakers: Breakers,
    service: String,
    retry: bool,
    connection: Option<OwnedSemaphorePermit>,
}

/// Largest events list kept; past it refusals are still counted but not listed.
pub const MAX_EVENTS: usize = 100_000;

impl Breakers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a slot for an attempt to `service` (a retry if `retry`) under thresholds `cb`
    /// (none: unlimited, but still counted). Refused when a request or retry threshold is reached.
    pub fn admit(
        &self,
        service: &str,
        cb: Option<&CircuitBreaker>,
        retry: bool,
    ) -> Result<Slot, Overflow> {
        let mut inner = self.lock();
        let d = inner.dests.entry(service.to_string()).or_default();
        let f = d.now;
        let refused = cb.and_then(|cb| {
            if f.requests >= cb.max_requests {
                return Some(Overflow::MaxRequests);
            }
            if !retry {
                return None;
            }
            match &cb.retry_budget {
                Some(b) => {
                    let share = (b.percent / 100.0 * f64::from(f.requests)).floor() as u32;
                    (f.retries >= share.max(b.min_concurrency)).then_some(Overflow::RetryBudget)
                }
                None => (f.retries >= cb.max_retries).then_some(Overflow::MaxRetries),
            }
        });
        if let Some(o) = refused {
            record(&mut inner, service, o, retry);
            return Err(o);
        }
        d.now.requests += 1;
        if retry {
            d.now.retries += 1;
        }
        Ok(Slot {
            breakers: self.clone(),
            service: service.to_string(),
            retry,
            connection: None,
        })
    }

    /// What is in flight to `service` now.
    pub fn in_flight(&self, service: &str) -> InFlight {
        self.lock()
            .dests
            .get(service)
            .map(|d| d.now)
            .unwrap_or_default()
    }

    /// What is in flight to every destination seen so far, by name.
    pub fn all_in_flight(&self) -> BTreeMap<String, InFlight> {
        self.lock()
            .dests
            .iter()
            .map(|(k, d)| (k.clone(), d.now))
            .collect()
    }

    /// Every refusal so far, in order (at most [`MAX_EVENTS`]).
    pub fn events(&self) -> Vec<BreakerEvent> {
        self.lock().events.clone()
    }
}

fn record(inner: &mut Inner, service: &str, overflow: Overflow, retry: bool) {
    if inner.events.len() < MAX_EVENTS {
        inner.events.push(BreakerEvent {
            at: Instant::now(), // tokio clock (simulated under sim); allow-nondeterminism
            service: service.to_string(),
            overflow,
            retry,
        });
    }
}

impl Slot {
    /// Wait for one of the destination's `max_connections`, queueing as a pending request while
    /// fewer than `max_pending` wait; refused beyond that. Without thresholds, returns at once.
    pub async fn connection(&mut self, cb: Option<&CircuitBreaker>) -> Result<(), Overflow> {
        let Some(cb) = cb.filter(|cb| cb.max_connections < u32::MAX) else {
            return Ok(());
        };
        let sem = {
            let mut inner = self.breakers.lock();
            let d = inner.dests.entry(self.service.clone()).or_default();
            let sem = match &d.connections {
                Some((n, s)) if *n == cb.max_connections => s.clone(),
                _ => {
                    let s = Arc::new(Semaphore::new(cb.max_connections as usize));
                    d.connections = Some((cb.max_connections, s.clone()));
                    s
                }
            };
            if let Ok(p) = sem.clone().try_acquire_owned() {
                self.connection = Some(p);
                return Ok(());
            }
            if d.now.pending >= cb.max_pending {
                record(&mut inner, &self.service, Overflow::MaxPending, self.retry);
                return Err(Overflow::MaxPending);
            }
            d.now.pending += 1;
            sem
        };
        // The pending count goes back down however the wait ends, timeouts included.
        let _waiting = Pending(self);
        let permit = sem.acquire_owned().await.ok();
        drop(_waiting);
        self.connection = permit;
        Ok(())
    }
}

struct Pending<'a>(&'a Slot);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(d) = self.0.breakers.lock().dests.get_mut(&self.0.service) {
            d.now.pending = d.now.pending.saturating_sub(1);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(d) = self.breakers.lock().dests.get_mut(&self.service) {
            d.now.requests = d.now.requests.saturating_sub(1);
            if self.retry {
                d.now.retries = d.now.retries.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ConcurrencyBudget;
    use proptest::prelude::*;

    fn limits(max_requests: u32, max_retries: u32) -> CircuitBreaker {
        CircuitBreaker {
            max_requests,
            max_retries,
            max_connections: u32::MAX,
            max_pending: u32::MAX,
            retry_budget: None,
        }
    }

    proptest! {
        /// Whatever the order of admissions and completions, a breaker never has more requests or
        /// retries in flight than its thresholds (or its budget allows), and a refused attempt
        /// changes nothing but the events list.
        #[test]
        fn never_admits_beyond_limits(
            max_requests in 1u32..10,
            max_retries in 0u32..5,
            budget in proptest::option::of((0u32..100, 0u32..4)),
            ops in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<usize>()), 0..200),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            let _enter = rt.enter();
            let mut cb = limits(max_requests, max_retries);
            cb.retry_budget = budget.map(|(percent, min_concurrency)| ConcurrencyBudget { percent: f64::from(percent), min_concurrency });
            let b = Breakers::default();
            let mut held: Vec<Slot> = Vec::new();
            let mut refused = 0;
            for (admit, retry, pick) in ops {
                if admit {
                    let before = b.in_flight("db");
                    match b.admit("db", Some(&cb), retry) {
                        Ok(s) => {
                            // The retry budget is judged on what was in flight before this retry.
                            if let (true, Some(bud)) = (retry, &cb.retry_budget) {
                                let share = (bud.percent / 100.0 * f64::from(before.requests)).floor() as u32;
                                prop_assert!(before.retries < share.max(bud.min_concurrency));
                            }
                            held.push(s)
                        }
                        Err(_) => {
                            refused += 1;
                            prop_assert_eq!(b.in_flight("db"), before);
                            // ...and every refusal is owed to a threshold: a breaker that refused
                            // with room to spare fails here.
                            let full = before.requests >= max_requests;
                            let retries_full = retry && match &cb.retry_budget {
                                Some(bud) => {
                                    let share = (bud.percent / 100.0 * f64::from(before.requests)).floor() as u32;
                                    before.retries >= share.max(bud.min_concurrency)
                                }
                                None => before.retries >= max_retries,
                            };
                            prop_assert!(full || retries_full, "refused with room: {:?}, retry {}", before, retry);
                        }
                    }
                } else if !held.is_empty() {
                    held.swap_remove(pick % held.len());
                }
                let f = b.in_flight("db");
                prop_assert!(f.requests <= max_requests, "{:?}", f);
                if cb.retry_budget.is_none() {
                    prop_assert!(f.retries <= max_retries, "{:?}", f);
                }
                prop_assert_eq!(f.requests as usize, held.len());
            }
            prop_assert_eq!(b.events().len(), refused);
            held.clear();
            prop_assert_eq!(b.in_flight("db"), InFlight::default());
        }
    }

    /// Thresholds of one connection and one pending attempt, with the connection held by a
    /// first attempt.
    async fn one_connection_held() -> (CircuitBreaker, Breakers, Slot) {
        let cb = CircuitBreaker {
            max_connections: 1,
            max_pending: 1,
            ..limits(100, 3)
        };
        let b = Breakers::default();
        let mut first = b.admit("db", Some(&cb), false).unwrap();
        first.connection(Some(&cb)).await.unwrap();
        (cb, b, first)
    }

    #[tokio::test(start_paused = true)]
    async fn pending_waits_for_a_connection_and_overflows_past_max_pending() {
        let (cb, b, first) = one_connection_held().await;
        let mut second = b.admit("db", Some(&cb), false).unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            second
                .connection(Some(&limits_with_conn()))
                .await
                .map(|_| second)
        });
        tokio::task::yield_now().await;
        assert_eq!(b.in_flight("db").pending, 1);
        let mut third = b2.admit("db", Some(&cb), false).unwrap();
        assert_eq!(third.connection(Some(&cb)).await, Err(Overflow::MaxPending));
        drop(third);
        drop(first);
        let second = waiter.await.unwrap().unwrap();
        assert_eq!(b.in_flight("db").pending, 0);
        assert_eq!(b.in_flight("db").requests, 1);
        drop(second);
        let events = b.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].overflow, Overflow::MaxPending);
    }

    /// A pending attempt whose caller gives up (its future dropped mid-wait, as a timeout
    /// does) leaves the queue: the count returns to zero and the place is free for the next.
    #[tokio::test(start_paused = true)]
    async fn a_pending_attempt_dropped_while_waiting_leaves_the_queue() {
        let (cb, b, first) = one_connection_held().await;
        let mut second = b.admit("db", Some(&cb), false).unwrap();
        let cb2 = cb.clone();
        let waiter = tokio::spawn(async move {
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(10),
                second.connection(Some(&cb2)),
            )
            .await;
        });
        tokio::task::yield_now().await;
        assert_eq!(b.in_flight("db").pending, 1);
        waiter.await.unwrap();
        assert_eq!(
            b.in_flight("db").pending,
            0,
            "the timed-out wait is still queued"
        );
        assert_eq!(b.in_flight("db").requests, 1, "only the first holds a slot");
        // The freed place takes the next waiter instead of refusing it.
        let mut third = b.admit("db", Some(&cb), false).unwrap();
        let b3 = b.clone();
        let next = tokio::spawn(async move { third.connection(Some(&cb)).await.map(|_| third) });
        tokio::task::yield_now().await;
        assert_eq!(b3.in_flight("db").pending, 1);
        drop(first);
        assert!(next.await.unwrap().is_ok());
        assert!(
            b.events().is_empty(),
            "nothing overflowed: {:?}",
            b.events()
        );
    }

    fn limits_with_conn() -> CircuitBreaker {
        CircuitBreaker {
            max_connections: 1,
            max_pending: 1,
            ..limits(100, 3)
        }
    }
}
