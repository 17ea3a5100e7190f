//! What a proxy counts, as typed records: per direction (requests, responses by status class,
//! failures by [`ProxyError`], connection-level errors), per destination service (requests,
//! attempts and their outcomes, retries, timeouts, breaker refusals by [`Overflow`], with a
//! per-second series of requests, attempts and failures), per route and per subset.
//!
//! Readers iterate the structs: the Prometheus exposition ([`crate::telemetry::metrics`]) and the
//! simulator's harvest. Nothing here formats a counter name on the request path; the one place
//! that renders names is [`Counters::flat`], the stable names a report lists its totals under.
//!
//! Not here: the golden-signal histograms and in-flight gauges
//! ([`crate::telemetry::metrics::Golden`]) and the breakers' live occupancy ([`crate::breaker`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::time::Instant;

use crate::breaker::Overflow;
use crate::error::ProxyError;
use crate::hop::Direction;

/// How one attempt (a first try or a retry that was sent) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttemptOutcome {
    /// The upstream answered with a status of this class (1..=5).
    Class(u8),
    /// The proxy gave up on it for this reason.
    Failed(ProxyError),
    /// Dropped in flight: an overall timeout fired or the caller went away.
    Cancelled,
}

impl AttemptOutcome {
    /// The outcome of an answer with `status`.
    pub fn of_status(status: http::StatusCode) -> Self {
        AttemptOutcome::Class((status.as_u16() / 100).min(5) as u8)
    }

    /// Its stable name in reports and metric names: `2xx`, `connect_failed`, `cancelled`.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        const CLASSES: [&str; 6] = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"];
        match self {
            AttemptOutcome::Class(c) => CLASSES[usize::from(c).min(5)].into(),
            AttemptOutcome::Failed(e) => e.reason().into(),
            AttemptOutcome::Cancelled => "cancelled".into(),
        }
    }
}

/// Requests, attempts and failures to one destination in one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Second {
    /// Requests the local app sent.
    pub requests: u64,
    /// Attempts sent (first tries and retries).
    pub attempts: u64,
    /// Requests that ended in failure (a proxy error or a 5xx).
    pub failures: u64,
}

/// Outbound counts for one destination service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    /// Requests the local app sent to this service.
    pub requests: u64,
    /// Attempts sent (first tries and retries).
    pub attempts: u64,
    /// Retries the policy made.
    pub retries: u64,
    /// Requests that ended in failure (a proxy error or a 5xx).
    pub failures: u64,
    /// Requests cut by the overall timeout.
    pub timeouts: u64,
    /// Attempts cut by the per-try timeout.
    pub per_try_timeouts: u64,
    /// Retries the budget refused.
    pub budget_exhausted: u64,
    /// Retries the breaker refused (the caller got the previous answer).
    pub retry_overflow: u64,
    /// Tries the breaker refused with a fast failure.
    pub circuit_open: u64,
    /// Tries admitted but dropped before they were sent.
    pub unsent: u64,
    /// Breaker refusals by the threshold that refused.
    pub overflow: BTreeMap<Overflow, u64>,
    /// Attempts by how they ended; they sum to `attempts`.
    pub outcomes: BTreeMap<AttemptOutcome, u64>,
    /// Requests, attempts and failures per second since the proxy's epoch.
    pub per_second: BTreeMap<u64, Second>,
}

/// Outbound attempts to one subset (version) of a service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubsetCounters {
    /// Attempts sent to the subset.
    pub attempts: u64,
    /// Of those, failed ones (a proxy error or a 5xx).
    pub failures: u64,
}

/// Counts for one direction of the proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectionCounters {
    /// Requests that arrived.
    pub requests: u64,
    /// Answers by status class (index 1..=5).
    pub responses: [u64; 6],
    /// Requests the proxy answered itself, by reason.
    pub errors: BTreeMap<ProxyError, u64>,
    /// Failed `accept` calls on the listener.
    pub accept_errors: u64,
    /// Connections that broke (malformed requests, resets mid-stream).
    pub downstream_errors: u64,
    /// TLS handshakes that failed.
    pub tls_handshake_errors: u64,
    /// The same, by reason ([`crate::tls::TlsFailure::reason`]).
    pub tls_failures: BTreeMap<String, u64>,
    /// Connections the listener closed itself at a limit, by reason.
    pub connections_closed: BTreeMap<crate::limits::CloseReason, u64>,
    /// Requests answered 431 by the listener: header block over the limit.
    pub headers_too_large: u64,
}

impl DirectionCounters {
    /// Requests the proxy answered itself with `e`.
    pub fn error(&self, e: ProxyError) -> u64 {
        self.errors.get(&e).copied().unwrap_or(0)
    }
}

/// Everything a proxy counts, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Per direction, in [`Direction::ALL`] order.
    pub directions: [DirectionCounters; 2],
    /// Outbound, per destination service.
    pub services: BTreeMap<String, ServiceCounters>,
    /// Outbound requests per service, then route, for routes other than the default.
    pub routes: BTreeMap<String, BTreeMap<String, u64>>,
    /// Outbound attempts per service, then subset, when the service has subsets.
    pub subsets: BTreeMap<String, BTreeMap<String, SubsetCounters>>,
    /// Inbound requests a route's own rate limit refused, per route.
    pub route_rate_limited: BTreeMap<String, u64>,
    /// Inbound requests authorization denied, per (policy, rule)
    /// ([`crate::authz::eval::Denial`]).
    pub authz_denied: BTreeMap<(String, String), u64>,
    /// Inbound connections refused at connection time, per (policy, rule)
    /// ([`crate::authz::l4`]).
    pub connections_denied: BTreeMap<(String, String), u64>,
    /// Broken connections on the admin listener.
    pub admin_errors: u64,
    /// Spans not kept because the proxy held its maximum.
    pub spans_dropped: u64,
    /// Access-log records the sink dropped (its queue was full: a slow reader).
    pub access_log_dropped: u64,
}

impl Counters {
    /// One direction's counts.
    pub fn direction(&self, dir: Direction) -> &DirectionCounters {
        &self.directions[dir.index()]
    }

    /// The outbound counts for `service` (all zero if it was never called).
    pub fn service(&self, service: &str) -> ServiceCounters {
        self.services.get(service).cloned().unwrap_or_default()
    }

    /// Every counter under the stable dotted name reports list totals by
    /// (`outbound.responses.2xx`, `inbound.error.rate_limited`, `outbound.subset.db.v1.attempts`),
    /// omitting zeros. Per-destination counters are not here: reports show them per edge.
    pub fn flat(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        let mut put = |k: String, v: u64| {
            if v > 0 {
                *out.entry(k).or_insert(0) += v;
            }
        };
        for dir in Direction::ALL {
            let d = self.direction(dir);
            let n = dir.name();
            put(format!("{n}.requests"), d.requests);
            for (class, v) in d.responses.iter().enumerate() {
                put(format!("{n}.responses.{class}xx"), *v);
            }
            for (e, v) in &d.errors {
                put(format!("{n}.error.{}", e.reason()), *v);
            }
            put(format!("{n}.accept_errors"), d.accept_errors);
            put(format!("{n}.downstream_errors"), d.downstream_errors);
            put(format!("{n}.tls_handshake_errors"), d.tls_handshake_errors);
            for (r, v) in &d.tls_failures {
                put(format!("{n}.tls.{r}"), *v);
            }
            put(format!("{n}.headers_too_large"), d.headers_too_large);
            for (r, v) in &d.connections_closed {
                put(format!("{n}.connections_closed.{}", r.reason()), *v);
            }
        }
        for (s, routes) in &self.routes {
            for (r, v) in routes {
                put(format!("outbound.route.{s}.{r}.requests"), *v);
            }
        }
        for (s, subsets) in &self.subsets {
            for (sub, c) in subsets {
                put(format!("outbound.subset.{s}.{sub}.attempts"), c.attempts);
                put(format!("outbound.subset.{s}.{sub}.failures"), c.failures);
            }
        }
        for (r, v) in &self.route_rate_limited {
            put(format!("inbound.route.{r}.rate_limited"), *v);
        }
        for ((p, r), v) in &self.authz_denied {
            put(format!("inbound.authz.{p}.{r}.denied"), *v);
        }
        for ((p, r), v) in &self.connections_denied {
            put(format!("inbound.l4.{p}.{r}.denied"), *v);
        }
        put("admin.errors".into(), self.admin_errors);
        put("spans_dropped".into(), self.spans_dropped);
        put("access_log_dropped".into(), self.access_log_dropped);
        out
    }
}

impl ServiceCounters {
    /// Each count with its stable name (`requests`, `attempt_2xx`, `overflow_max_requests`),
    /// zeros included: the metric names and the report's edge fields.
    pub fn named(&self) -> Vec<(std::borrow::Cow<'static, str>, u64)> {
        let mut out: Vec<(std::borrow::Cow<'static, str>, u64)> = vec![
            ("requests".into(), self.requests),
            ("attempts".into(), self.attempts),
            ("retries".into(), self.retries),
            ("failures".into(), self.failures),
            ("timeouts".into(), self.timeouts),
            ("per_try_timeouts".into(), self.per_try_timeouts),
            ("budget_exhausted".into(), self.budget_exhausted),
            ("retry_overflow".into(), self.retry_overflow),
            ("circuit_open".into(), self.circuit_open),
            ("unsent".into(), self.unsent),
        ];
        out.extend(
            self.overflow
                .iter()
                .map(|(o, v)| (format!("overflow_{}", o.reason()).into(), *v)),
        );
        out.extend(
            self.outcomes
                .iter()
                .map(|(o, v)| (format!("attempt_{}", o.name()).into(), *v)),
        );
        out
    }

    /// Attempts that ended as `outcome`.
    pub fn outcome(&self, outcome: AttemptOutcome) -> u64 {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }
}

/// The entry for `key`, made empty if absent. Looks up before inserting, so a name is
/// allocated once, the first time it is counted, not on every request.
fn named<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// Which per-second series a count also goes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timed {
    /// A request to the service.
    Request,
    /// An attempt sent.
    Attempt,
    /// A request that failed.
    Failure,
}

/// A proxy's counters, behind one lock; series count seconds from its epoch.
#[derive(Debug)]
pub struct ProxyStats {
    counters: Mutex<Counters>,
    epoch: Instant,
}

impl Default for ProxyStats {
    fn default() -> Self {
        Self::new(Instant::now()) // tokio clock; allow-nondeterminism
    }
}

impl ProxyStats {
    /// Counters whose series count seconds from `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Self {
            counters: Mutex::default(),
            epoch,
        }
    }

    /// Where the per-second series (and span start times) count from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Update the counters.
    pub fn update<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        f(&mut self.counters.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Update one direction's counters.
    pub fn direction(&self, dir: Direction, f: impl FnOnce(&mut DirectionCounters)) {
        self.update(|c| f(&mut c.directions[dir.index()]));
    }

    /// Update the outbound counters of `service`.
    pub fn service(&self, service: &str, f: impl FnOnce(&mut ServiceCounters)) {
        self.update(|c| f(named(&mut c.services, service)));
    }

    /// Count one request to a non-default `route` of `service`.
    pub fn route(&self, service: &str, route: &str) {
        self.update(|c| *named(named(&mut c.routes, service), route) += 1);
    }

    /// Update the counters of one `subset` of `service`.
    pub fn subset(&self, service: &str, subset: &str, f: impl FnOnce(&mut SubsetCounters)) {
        self.update(|c| f(named(named(&mut c.subsets, service), subset)));
    }

    /// Count one inbound request authorization denied.
    pub fn authz_denied(&self, d: &crate::authz::eval::Denial) {
        let key = (d.policy().to_string(), d.rule());
        self.update(|c| *c.authz_denied.entry(key).or_insert(0) += 1);
    }

    /// Count one inbound connection refused by a connection policy.
    pub fn connection_denied(&self, d: &crate::authz::eval::Denial) {
        let key = (d.policy().to_string(), d.rule());
        self.update(|c| *c.connections_denied.entry(key).or_insert(0) += 1);
    }

    /// Count one failed TLS handshake in direction `dir`, in the total and by reason.
    pub fn tls_failure(&self, dir: Direction, f: &crate::tls::TlsFailure) {
        let reason = f.reason();
        self.direction(dir, |d| {
            d.tls_handshake_errors += 1;
            *named(&mut d.tls_failures, &reason) += 1;
        });
    }

    /// Count one inbound request refused by `route`'s own rate limit.
    pub fn route_rate_limited(&self, route: &str) {
        self.update(|c| *named(&mut c.route_rate_limited, route) += 1);
    }

    /// Count one `what` for `service`, in its total and its series at the current second.
    pub fn timed(&self, service: &str, what: Timed) {
        let sec = Instant::now() // tokio clock; allow-nondeterminism
            .saturating_duration_since(self.epoch)
            .as_secs();
        self.service(service, |s| {
            let b = s.per_second.entry(sec).or_default();
            match what {
                Timed::Request => {
                    s.requests += 1;
                    b.requests += 1;
                }
                Timed::Attempt => {
                    s.attempts += 1;
                    b.attempts += 1;
                }
                Timed::Failure => {
                    s.failures += 1;
                    b.failures += 1;
                }
            }
        });
    }

    /// Count an attempt to `service` that ended as `outcome`.
    pub fn outcome(&self, service: &str, outcome: AttemptOutcome) {
        self.service(service, |s| *s.outcomes.entry(outcome).or_insert(0) += 1);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Counters {
        self.update(|c| c.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn timed_counts_go_into_their_second_and_the_total() {
        let stats = ProxyStats::default();
        stats.timed("db", Timed::Request);
        stats.timed("db", Timed::Attempt);
        tokio::time::advance(std::time::Duration::from_millis(1500)).await;
        stats.timed("db", Timed::Attempt);
        stats.timed("db", Timed::Failure);
        stats.outcome("db", AttemptOutcome::Class(2));
        stats.outcome("db", AttemptOutcome::Failed(ProxyError::ConnectFailed));
        let db = stats.snapshot().service("db");
        assert_eq!((db.requests, db.attempts, db.failures), (1, 2, 1));
        assert_eq!(
            db.per_second,
            BTreeMap::from([
                (
                    0,
                    Second {
                        requests: 1,
                        attempts: 1,
                        failures: 0
                    }
                ),
                (
                    1,
                    Second {
                        requests: 0,
                        attempts: 1,
                        failures: 1
                    }
                ),
            ])
        );
        assert_eq!(db.outcome(AttemptOutcome::Class(2)), 1);
        assert_eq!(
            stats.snapshot().service("other"),
            ServiceCounters::default()
        );
    }

    #[test]
    fn flat_names_are_the_reports_and_omit_zeros() {
        let stats = ProxyStats::default();
        stats.direction(Direction::Outbound, |d| {
            d.responses[2] += 3;
            *d.errors.entry(ProxyError::CircuitOpen).or_insert(0) += 1;
        });
        stats.service("db", |s| {
            s.retries += 2;
            *s.overflow.entry(Overflow::MaxPending).or_insert(0) += 1;
        });
        stats.outcome("db", AttemptOutcome::Cancelled);
        stats.route("db", "reads");
        stats.subset("db", "v1", |c| c.attempts += 4);
        stats.route_rate_limited("login");
        let flat = stats.snapshot().flat();
        let want = [
            ("inbound.route.login.rate_limited", 1),
            ("outbound.error.circuit_open", 1),
            ("outbound.responses.2xx", 3),
            ("outbound.route.db.reads.requests", 1),
            ("outbound.subset.db.v1.attempts", 4),
        ];
        assert_eq!(
            flat,
            want.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        );
        // Per-destination counts (retries, overflow, outcomes above) are reported per edge.
        assert!(!flat.keys().any(|k| k.starts_with("outbound.svc.")));
    }

    #[test]
    fn outcome_names_are_stable() {
        assert_eq!(
            AttemptOutcome::of_status(http::StatusCode::OK).name(),
            "2xx"
        );
        assert_eq!(
            AttemptOutcome::of_status(http::StatusCode::SERVICE_UNAVAILABLE).name(),
            "5xx"
        );
        assert_eq!(
            AttemptOutcome::Failed(ProxyError::UpstreamTimeout).name(),
            "upstream_timeout"
        );
        assert_eq!(AttemptOutcome::Cancelled.name(), "cancelled");
    }
}
