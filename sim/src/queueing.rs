//! What a service's apps did as queues: arrivals, refusals, waits for a worker, busy time, work
//! nobody waited for, and time-averaged occupancy, measured as it happens.
//!
//! These are the quantities a queueing check needs (mean wait apart from service time, the
//! probability of waiting, time-averaged number in the system and in the queue, throughput), so
//! the report can be compared with Erlang C, Pollaczek–Khinchine and Little's law. Occupancy is
//! integrated over simulated time at every change, not derived from the other figures, so Little's
//! law (L = λW) is a real check on them. This module only counts; the app model in
//! [`crate::model`] calls it.

use std::sync::{Arc, Mutex};

/// A service's queueing tally, shared by its pods (and their restarts).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    /// Requests that reached an app.
    pub arrived: u64,
    /// Refused at once because workers and queue were full (503 `app_overloaded`).
    pub refused: u64,
    /// Got a worker.
    pub started: u64,
    /// Of those, had to wait for it.
    pub waited: u64,
    /// Left the app (worked to the end, or stopped when the caller gave up under `abort`).
    pub finished: u64,
    /// Left the app after the warm-up, whenever they arrived (throughput counts these).
    pub departed: u64,
    /// Whose caller had gone before the app finished with them.
    pub abandoned: u64,
    /// Time between arrival and getting a worker, summed over `started`, µs.
    pub wait_us: u64,
    /// Time holding a worker (own work and downstream calls), µs.
    pub busy_us: u64,
    /// Of `busy_us`, spent on requests whose caller had gone by the time the app finished, µs.
    pub wasted_us: u64,
    /// Requests in the app (waiting or working) integrated over time, request·µs.
    pub in_system_area: u128,
    /// Requests waiting for a worker integrated over time, request·µs.
    pub queue_area: u128,
    in_system: u64,
    queued: u64,
    last_us: u64,
    /// Counting starts here (the end of the warm-up); occupancy is integrated from here too.
    pub from_us: u64,
}

impl Tally {
    /// A tally that counts visits arriving from `from_us` on.
    pub fn since(from_us: u64) -> Self {
        Self {
            from_us,
            ..Self::default()
        }
    }

    fn advance(&mut self, now_us: u64) {
        let dt = now_us.saturating_sub(self.last_us.max(self.from_us));
        self.in_system_area += u128::from(self.in_system) * u128::from(dt);
        self.queue_area += u128::from(self.queued) * u128::from(dt);
        self.last_us = self.last_us.max(now_us);
    }

    /// Close the integrals at `now_us` (the end of the run).
    pub fn close(&mut self, now_us: u64) {
        self.advance(now_us);
    }
}

/// A handle to a service's tally (e.g. `Arc::new(Mutex::new(Tally::since(warmup_us)))`).
pub type Shared = Arc<Mutex<Tally>>;

fn with<T>(t: &Shared, f: impl FnOnce(&mut Tally) -> T) -> T {
    f(&mut t.lock().unwrap_or_else(|p| p.into_inner()))
}

/// One request's passage through an app, counted once whatever way it ends: created on arrival,
/// told when it gets a worker, and closed by drop (finished, or dropped because the caller left
/// under `abort`, or the pod crashed).
#[derive(Debug)]
pub struct Visit {
    tally: Shared,
    arrived_us: u64,
    started_us: Option<u64>,
    abandoned: bool,
    /// Arrived after the warm-up: its counts go into the tally (occupancy counts either way).
    counted: bool,
}

impl Visit {
    /// A request arrives at `now_us` and is admitted.
    pub fn arrive(tally: &Shared, now_us: u64) -> Self {
        let counted = with(tally, |t| {
            t.advance(now_us);
            let counted = now_us >= t.from_us;
            t.arrived += u64::from(counted);
            t.in_system += 1;
            t.queued += 1;
            counted
        });
        Self {
            tally: tally.clone(),
            arrived_us: now_us,
            started_us: None,
            // Until the answer is handed over, nobody has been given it.
            abandoned: true,
            counted,
        }
    }

    /// A request arrives at `now_us` and is refused.
    pub fn refuse(tally: &Shared, now_us: u64) {
        with(tally, |t| {
            t.advance(now_us);
            let counted = u64::from(now_us >= t.from_us);
            t.arrived += counted;
            t.refused += counted;
        });
    }

    /// Whether the answer reached a caller still waiting for it.
    pub fn answered(&mut self, yes: bool) {
        self.abandoned = !yes;
    }

    /// It got a worker at `now_us`.
    pub fn start(&mut self, now_us: u64) {
        self.started_us = Some(now_us);
        let wait = now_us - self.arrived_us;
        let counted = self.counted;
        with(&self.tally, |t| {
            t.advance(now_us);
            t.queued -= 1;
            if counted {
                t.started += 1;
                t.waited += u64::from(wait > 0);
                t.wait_us += wait;
            }
        });
    }

    fn end(&mut self, now_us: u64) {
        let busy = self.started_us.map_or(0, |s| now_us - s);
        let abandoned = self.abandoned;
        let queued = self.started_us.is_none();
        let counted = self.counted;
        with(&self.tally, |t| {
            t.advance(now_us);
            t.in_system -= 1;
            t.queued -= u64::from(queued);
            t.departed += u64::from(now_us >= t.from_us);
            if !counted {
                return;
            }
            t.finished += 1;
            t.busy_us += busy;
            if abandoned {
                t.abandoned += 1;
                t.wasted_us += busy;
            }
        });
    }
}

impl Drop for Visit {
    fn drop(&mut self) {
        self.end(crate::time::now_us());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two requests on one worker: the second waits 3 µs; occupancy integrates to the sum of
    /// sojourns (Little's law by construction on a closed interval), the queue to the wait.
    #[test]
    fn integrals_match_the_visits() {
        let tally = Shared::default();
        let mut a = Visit::arrive(&tally, 0);
        a.start(0);
        a.answered(true);
        let mut b = Visit::arrive(&tally, 2);
        a.end(5);
        std::mem::forget(a);
        b.start(5);
        b.end(9);
        std::mem::forget(b);
        Visit::refuse(&tally, 9);
        let mut t = *tally.lock().unwrap();
        t.close(10);
        assert_eq!((t.arrived, t.refused, t.started, t.waited), (3, 1, 2, 1));
        assert_eq!(
            (t.wait_us, t.busy_us, t.wasted_us, t.abandoned),
            (3, 9, 4, 1)
        );
        assert_eq!(t.in_system_area, 5 + 7, "sojourns 5 and 7");
        assert_eq!(t.queue_area, 3);
        assert_eq!(t.finished, 2);
    }
}
