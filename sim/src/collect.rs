//! Every request's outcome, collected as it happens: the checker's side of the simulation, apart
//! from the system under test.
//!
//! Two ledgers, kept apart so that comparing them can fail. The workload counts what it sends, where
//! it sends it ([`Dispatched`], with its own warm-up test); the collector registers a ticket for
//! each request and closes it exactly once with an outcome (ok, or failed with a reason), counting
//! outcomes where they end. [`Collector::finish`] takes `sent` from the workload's ledger and
//! `ok`, `failed` and `in_flight` (tickets never closed) from its own, so a request the workload
//! sent that the collector lost, never closed, or counted twice unbalances the books; the verdict
//! also requires `in_flight == 0` (every request ended before the run did). Latencies go into
//! hdrhistograms at microsecond precision.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use reports::{Books, Bucket, Latency, RouteStats, SpectrumPoint};

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx or 3xx.
    Ok,
    /// Anything else, with its reason.
    Failed(String),
}

/// Identifies an in-flight request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    id: u64,
    route: usize,
    sent_us: u64,
    measured: bool,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour at 3 significant figures.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

#[derive(Debug)]
struct RouteAcc {
    books: Books,
    all: Histogram<u64>,
}

/// What the workload sent, per route, counted at the send site and nowhere else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dispatched {
    /// Per route: (sent at or after warm-up, sent during warm-up).
    pub per_route: Vec<(u64, u64)>,
}

impl Dispatched {
    /// A ledger for `routes` routes.
    pub fn new(routes: usize) -> Self {
        Self {
            per_route: vec![(0, 0); routes],
        }
    }

    /// Count one request of `route` sent at `now_ms`, measured when at or after `warmup_ms`.
    pub fn count(&mut self, route: usize, now_ms: u64, warmup_ms: u64) {
        let r = &mut self.per_route[route];
        if now_ms >= warmup_ms {
            r.0 += 1;
        } else {
            r.1 += 1;
        }
    }
}

/// Outcomes and latencies of one run.
#[derive(Debug)]
pub struct Collector {
    warmup_ms: u64,
    routes: Vec<(String, RouteAcc)>,
    books: Books,
    all: Histogram<u64>,
    ok: Histogram<u64>,
    buckets: BTreeMap<u64, Bucket>,
    /// The latencies of the second completions are landing in now, and which second that is.
    /// One histogram (1 µs to 1 h at 3 figures is ~190 KB) is summarized into its bucket and
    /// reused when simulated time moves to the next second: keeping one per second grew a
    /// two-hour soak to 1.6 GB.
    current: (u64, Histogram<u64>),
    open: BTreeMap<u64, Ticket>,
    next_id: u64,
}

impl Collector {
    /// A collector for routes named `routes`, measuring requests sent at or after `warmup_ms`.
    pub fn new(routes: Vec<String>, warmup_ms: u64) -> Self {
        Self {
            warmup_ms,
            routes: routes
                .into_iter()
                .map(|r| {
                    (
                        r,
                        RouteAcc {
                            books: Books::default(),
                            all: histogram(),
                        },
                    )
                })
                .collect(),
            books: Books::default(),
            all: histogram(),
            ok: histogram(),
            buckets: BTreeMap::new(),
            current: (0, histogram()),
            open: BTreeMap::new(),
            next_id: 0,
        }
    }

    fn bucket(&mut self, t_ms: u64) -> &mut Bucket {
        let t_s = t_ms / 1000;
        self.buckets.entry(t_s).or_insert_with(|| Bucket {
            t_s,
            ..Bucket::default()
        })
    }

    /// Record a completion's latency in second `t_s`. Simulated time only moves forward, so
    /// when it reaches a new second the previous one is complete: its percentiles go into its
    /// bucket and the histogram starts over.
    fn record_in_second(&mut self, t_s: u64, latency_us: u64) {
        debug_assert!(t_s >= self.current.0, "completions arrive in time order");
        if t_s != self.current.0 {
            self.close_second();
            self.current.0 = t_s;
        }
        let _ = self.current.1.record(latency_us);
    }

    /// Summarize the current second into its bucket and empty the histogram.
    fn close_second(&mut self) {
        let (t_s, h) = &mut self.current;
        if h.is_empty() {
            return;
        }
        let l = summarize(h);
        if let Some(b) = self.buckets.get_mut(t_s) {
            (b.p50_us, b.p90_us, b.p99_us) = (l.p50_us, l.p90_us, l.p99_us);
        }
        h.reset();
    }

    /// Register a request of route `route` sent at `now_us`.
    pub fn sent(&mut self, route: usize, now_us: u64) -> Ticket {
        let now_ms = now_us / 1000;
        let measured = now_ms >= self.warmup_ms;
        let t = Ticket {
            id: self.next_id,
            route,
            sent_us: now_us,
            measured,
        };
        self.next_id += 1;
        if measured {
            // The time line's own count; the books take `sent` from the workload's ledger.
            self.bucket(now_ms).sent += 1;
        }
        self.open.insert(t.id, t);
        t
    }

    /// Close `ticket` at `now_us` with `outcome`. Closing a ticket twice is a broken invariant.
    pub fn done(&mut self, ticket: Ticket, now_us: u64, outcome: Outcome) {
        let t = self
            .open
            .remove(&ticket.id)
            .expect("every request ends in exactly one outcome");
        if !t.measured {
            return;
        }
        let latency_us = (now_us - t.sent_us).max(1);
        let now_ms = now_us / 1000;
        let ok = outcome == Outcome::Ok;
        for books in [&mut self.books, &mut self.routes[t.route].1.books] {
            match &outcome {
                Outcome::Ok => books.ok += 1,
                Outcome::Failed(reason) => {
                    books.failed += 1;
                    *books.failed_by_reason.entry(reason.clone()).or_insert(0) += 1;
                }
            }
        }
        let _ = self.all.record(latency_us);
        let _ = self.routes[t.route].1.all.record(latency_us);
        if ok {
            let _ = self.ok.record(latency_us);
        }
        let bucket = self.bucket(now_ms);
        if ok {
            bucket.ok += 1;
        } else {
            bucket.failed += 1;
        }
        self.record_in_second(now_ms / 1000, latency_us);
    }

    /// Requests not yet closed (measured or not).
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// The books (sent from the workload's ledger `dispatched`, outcomes from this collector),
    /// overall latency, latency of successes, per-route stats and the time line.
    pub fn finish(mut self, dispatched: &Dispatched) -> Finished {
        self.close_second();
        let in_flight = self.open.values().filter(|t| t.measured).count() as u64;
        self.books.in_flight = in_flight;
        self.books.sent = dispatched.per_route.iter().map(|r| r.0).sum();
        self.books.warmup_excluded = dispatched.per_route.iter().map(|r| r.1).sum();
        self.books.check();
        let mut routes = BTreeMap::new();
        for (idx, (name, mut acc)) in self.routes.into_iter().enumerate() {
            let (sent, warmup) = dispatched.per_route.get(idx).copied().unwrap_or_default();
            acc.books.sent = sent;
            acc.books.warmup_excluded = warmup;
            acc.books.in_flight = self
                .open
                .values()
                .filter(|t| t.measured && t.route == idx)
                .count() as u64;
            acc.books.check();
            routes.insert(
                name,
                RouteStats {
                    books: acc.books,
                    latency: summarize(&acc.all),
                },
            );
        }
        let timeline = self.buckets.into_values().collect();
        Finished {
            books: self.books,
            spectrum: spectrum(&self.all),
            latency: summarize(&self.all),
            latency_ok: summarize(&self.ok),
            routes,
            timeline,
        }
    }
}

/// What a finished collector yields.
#[derive(Debug)]
pub struct Finished {
    /// All measured requests.
    pub books: Books,
    /// Latency of completed requests.
    pub latency: Latency,
    /// Latency of successful requests.
    pub latency_ok: Latency,
    /// Per route.
    pub routes: BTreeMap<String, RouteStats>,
    /// Per second.
    pub timeline: Vec<Bucket>,
    /// The latency distribution at [`SPECTRUM_PERCENTILES`].
    pub spectrum: Vec<SpectrumPoint>,
}

/// The percentiles a report's latency distribution is given at: dense in the tail, where a
/// mesh's cost and a fault's damage show.
pub const SPECTRUM_PERCENTILES: [f64; 17] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.75, 99.9, 99.95, 99.99, 99.995,
    99.999, 100.0,
];

/// Latency at each of [`SPECTRUM_PERCENTILES`] (empty for an empty histogram).
pub fn spectrum(h: &Histogram<u64>) -> Vec<SpectrumPoint> {
    if h.is_empty() {
        return Vec::new();
    }
    SPECTRUM_PERCENTILES
        .iter()
        .map(|&p| SpectrumPoint {
            percentile: p,
            latency_us: if p >= 100.0 {
                h.max()
            } else {
                h.value_at_percentile(p)
            },
        })
        .collect()
}

/// Percentiles of a histogram.
pub fn summarize(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5),
        p90_us: h.value_at_quantile(0.9),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        mean_us: h.mean().round() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Send {
            route: usize,
            dt_ms: u64,
        },
        Finish {
            pick: usize,
            dt_ms: u64,
            ok: bool,
            reason: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..3, 0u64..50).prop_map(|(route, dt_ms)| Op::Send { route, dt_ms }),
            (any::<usize>(), 0u64..50, any::<bool>(), 0u8..3).prop_map(
                |(pick, dt_ms, ok, reason)| Op::Finish {
                    pick,
                    dt_ms,
                    ok,
                    reason
                }
            ),
        ]
    }

    proptest! {
        /// Whatever happens, the books balance overall and per route: every request sent after
        /// warm-up is ok, failed with a reason, or still in flight — exactly one of them.
        #[test]
        fn books_always_balance(ops in proptest::collection::vec(op(), 0..300), warmup_ms in 0u64..500) {
            let mut c = Collector::new(vec!["a".into(), "b".into(), "c".into()], warmup_ms);
            let mut d = Dispatched::new(3);
            let mut now = 0;
            let mut open: Vec<Ticket> = Vec::new();
            let (mut measured_sent, mut measured_done) = (0u64, 0u64);
            for op in ops {
                match op {
                    Op::Send { route, dt_ms } => {
                        now += dt_ms;
                        let t = c.sent(route, now * 1000);
                        d.count(route, now, warmup_ms);
                        measured_sent += u64::from(now >= warmup_ms);
                        open.push(t);
                    }
                    Op::Finish { pick, dt_ms, ok, reason } if !open.is_empty() => {
                        now += dt_ms;
                        let t = open.swap_remove(pick % open.len());
                        measured_done += u64::from(t.measured);
                        let outcome = if ok { Outcome::Ok } else { Outcome::Failed(format!("r{reason}")) };
                        c.done(t, now * 1000, outcome);
                    }
                    Op::Finish { .. } => {}
                }
            }
            let f = c.finish(&d);
            prop_assert!(f.books.balanced, "{:?}", f.books);
            prop_assert_eq!(f.books.in_flight, measured_sent - measured_done);
            prop_assert_eq!(f.books.sent, measured_sent);
            prop_assert_eq!(f.books.ok + f.books.failed, measured_done);
            prop_assert_eq!(f.latency.count, measured_done);
            let per_route: u64 = f.routes.values().map(|r| r.books.sent).sum();
            prop_assert_eq!(per_route, f.books.sent);
            prop_assert!(f.routes.values().all(|r| r.books.balanced));
        }
    }

    /// The two ledgers disagree in each way a harness bug would make them: the books say so.
    #[test]
    fn books_fail_when_the_ledgers_disagree() {
        let finish = |sends: usize, registered: usize, closed: usize| {
            let mut c = Collector::new(vec!["a".into()], 0);
            let mut d = Dispatched::new(1);
            let tickets: Vec<Ticket> = (0..registered).map(|_| c.sent(0, 1000)).collect();
            for _ in 0..sends {
                d.count(0, 1, 0);
            }
            for t in tickets.into_iter().take(closed) {
                c.done(t, 2000, Outcome::Failed("x".into()));
            }
            c.finish(&d).books
        };
        let ok = finish(3, 3, 3);
        assert!(ok.balanced && ok.in_flight == 0, "{ok:?}");
        // Sent but never registered: the collector lost it.
        assert!(!finish(3, 2, 2).balanced);
        // Registered twice for one send.
        assert!(!finish(2, 3, 3).balanced);
        // Registered, never closed: balanced, but in flight, which fails the verdict.
        let open = finish(3, 3, 2);
        assert!(open.balanced && open.in_flight == 1, "{open:?}");
    }

    #[test]
    #[should_panic(expected = "exactly one outcome")]
    fn closing_twice_is_a_broken_invariant() {
        let mut c = Collector::new(vec!["a".into()], 0);
        let t = c.sent(0, 0);
        c.done(t, 1000, Outcome::Ok);
        c.done(t, 2000, Outcome::Ok);
    }
}
