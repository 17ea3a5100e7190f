//! Simulated time at microsecond resolution, and the stepper that drives it.
//!
//! tokio's timers resolve to whole milliseconds (a deadline rounds up to the next one), so a
//! simulator that slept on them could hold a worker only for whole milliseconds and deliver a
//! packet only on a millisecond tick. The simulator's own waits — service time, proxy cost,
//! arrivals, think time — therefore sleep on [`sleep_us`] / [`sleep_until_us`], timers kept here
//! at microsecond resolution, and packets are due at microsecond instants in the fabric. The
//! [`Stepper`] moves tokio's paused clock with `tokio::time::advance` to exactly the next such
//! instant, or to the next millisecond boundary if that comes first, so the mesh code's own tokio
//! timers (timeouts, backoff) still fire on their millisecond, with the clock aligned.
//!
//! Before time moves, every task that can run at the current instant has run ([`settle`]): the
//! stepper yields until a round of the scheduler polled no simulated task, counting polls in
//! [`crate::substrate::HostScoped`] (the one exception is documented on [`settle`]). That is what makes an instant an instant: nothing observes a
//! later time while work of an earlier one is still runnable.
//!
//! This module is not the network: the fabric ([`crate::fabric::Fabric`]) decides when packets
//! are due; the stepper only asks it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use turmoil_net::{EnterGuard, HostId};

use crate::fabric::Fabric;

thread_local! {
    /// The timers of the simulation running on this thread (one per thread: a run is one thread).
    static TIMERS: RefCell<Option<Timers>> = const { RefCell::new(None) };
    /// Simulated tasks polled or dropped on this thread so far; [`settle`] watches it.
    static ACTIVITY: Cell<u64> = const { Cell::new(0) };
    /// The host of the task being polled or dropped.
    static CURRENT: Cell<Option<HostId>> = const { Cell::new(None) };
    /// Hosts whose sockets may have something to send since the fabric's last pass.
    static DIRTY: RefCell<Vec<HostId>> = const { RefCell::new(Vec::new()) };
}

/// Count one poll or drop of a task of `host` (called by `HostScoped`), which is the host whose
/// sockets the task reaches until the next such call.
pub(crate) fn note_activity(host: HostId) {
    ACTIVITY.with(|a| a.set(a.get().wrapping_add(1)));
    CURRENT.with(|c| c.set(Some(host)));
}

/// The current task used a TCP socket (wrote, read, connected, closed): its host needs a pass.
/// Tasks that only sleep or talk over loopback pipes need none, which is most polls.
pub(crate) fn socket_used() {
    if let Some(h) = CURRENT.with(Cell::get) {
        mark_dirty(h);
    }
}

/// `host`'s sockets may have something to send: a task of it ran, or a packet reached it (which
/// can queue an ACK without waking any task).
pub(crate) fn mark_dirty(host: HostId) {
    DIRTY.with(|d| {
        let mut d = d.borrow_mut();
        if !d.contains(&host) {
            d.push(host);
        }
    });
}

fn take_dirty(into: &mut Vec<HostId>) {
    DIRTY.with(|d| std::mem::swap(&mut *d.borrow_mut(), into));
}

fn activity() -> u64 {
    ACTIVITY.with(Cell::get)
}

struct Timers {
    epoch: tokio::time::Instant,
    queue: BTreeMap<(u64, u64), Waker>,
    seq: u64,
}

/// Microseconds of simulated time since the simulation's epoch; tokio's paused clock since it
/// started when no stepper is installed (unit tests).
pub fn now_us() -> u64 {
    TIMERS.with(|t| match &*t.borrow() {
        Some(t) => t.epoch.elapsed().as_micros() as u64,
        None => 0,
    })
}

/// Sleep `us` microseconds of simulated time, exactly.
pub fn sleep_us(us: u64) -> Sleep {
    Sleep::new(now_us().saturating_add(us), us)
}

/// Sleep until `at_us` microseconds after the simulation's epoch, exactly.
pub fn sleep_until_us(at_us: u64) -> Sleep {
    Sleep::new(at_us, at_us.saturating_sub(now_us()))
}

/// A simulated sleep. Outside a [`Stepper`] (a unit test on a bare paused runtime) it falls back
/// to a tokio sleep, which rounds up to the millisecond.
pub struct Sleep {
    at_us: u64,
    key: Option<(u64, u64)>,
    fallback: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Sleep {
    fn new(at_us: u64, rel_us: u64) -> Self {
        let installed = TIMERS.with(|t| t.borrow().is_some());
        Self {
            at_us,
            key: None,
            fallback: (!installed)
                .then(|| Box::pin(tokio::time::sleep(Duration::from_micros(rel_us)))),
        }
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(f) = self.fallback.as_mut() {
            return f.as_mut().poll(cx);
        }
        let at = self.at_us;
        let key = self.key;
        let (ready, key) = TIMERS.with(|t| {
            let mut t = t.borrow_mut();
            let Some(t) = t.as_mut() else {
                return (true, None);
            };
            if t.epoch.elapsed().as_micros() as u64 >= at {
                if let Some(k) = key {
                    t.queue.remove(&k);
                }
                return (true, None);
            }
            let k = key.unwrap_or_else(|| {
                t.seq += 1;
                (at, t.seq)
            });
            t.queue.insert(k, cx.waker().clone());
            (false, Some(k))
        });
        self.key = key;
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            // `try_with`: a task dropped while the thread shuts down has nothing left to tell.
            let _ = TIMERS.try_with(|t| {
                if let Ok(mut t) = t.try_borrow_mut()
                    && let Some(t) = t.as_mut()
                {
                    t.queue.remove(&k);
                }
            });
        }
    }
}

/// Run every simulated task that can run at the current instant.
///
/// A yield lets the scheduler run up to a batch of queued tasks; when none is left it polls
/// tokio's timer driver and wakes deferred yields before resuming us. So a round in which no task
/// was polled means the queue was empty, and the driver poll that ended it could only have woken
/// tasks for tokio timers due at this instant. Those fire in the first round after the clock
/// moves (`tokio::time::advance` yields once), before [`Stepper::step`] settles; the one case a
/// single quiet round misses is a tokio timer armed at this instant with a deadline already past
/// (a zero-length tokio sleep), whose task then runs at the next instant. meshsim's own waits are
/// simulated sleeps ([`sleep_us`]), which never take that path. Requiring a second quiet round
/// would close it at the cost of 15% of the simulator's speed on the 200-pod scenario.
pub async fn settle() {
    loop {
        let before = activity();
        tokio::task::yield_now().await;
        if activity() == before {
            break;
        }
    }
}

/// Drives simulated time: installs the timers on this thread for as long as it lives, and moves
/// tokio's paused clock from one instant where something is due to the next.
pub struct Stepper {
    epoch: tokio::time::Instant,
    counted_ms: Option<u64>,
    dirty: Vec<HostId>,
}

impl Stepper {
    /// Install the simulation's timers on this thread with the epoch now. Must be created inside
    /// the paused runtime before its clock has moved, so millisecond boundaries of the epoch are
    /// tokio's timer ticks.
    pub fn install() -> Self {
        let epoch = tokio::time::Instant::now(); // the paused simulated clock; allow-nondeterminism
        TIMERS.with(|t| {
            *t.borrow_mut() = Some(Timers {
                epoch,
                queue: BTreeMap::new(),
                seq: 0,
            })
        });
        Self {
            epoch,
            counted_ms: None,
            dirty: Vec::new(),
        }
    }

    /// The epoch every simulated time is measured from.
    pub fn epoch(&self) -> tokio::time::Instant {
        self.epoch
    }

    /// Microseconds since the epoch.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Run everything due at the current instant — tasks, simulated timers, packets — until
    /// nothing more is, then move the clock to the next instant something is due, or to the next
    /// millisecond boundary if that is sooner. Returns the new time, µs.
    ///
    /// On each millisecond boundary the fabric makes TCP's retransmit pass over every host
    /// (turmoil-net counts passes, so one per millisecond keeps its retransmit timer in simulated
    /// time); between boundaries it only collects what the hosts that ran or received sent.
    pub async fn step(&mut self, fabric: &mut Fabric, guard: &EnterGuard) -> u64 {
        let now = self.now_us();
        let ms = now / 1000;
        // What fell due at this instant wakes its tasks first, so one settling runs them all.
        fabric.deliver_due(guard, now);
        fire_due(now);
        loop {
            settle().await;
            let counted = now.is_multiple_of(1000) && self.counted_ms != Some(ms);
            self.dirty.clear();
            take_dirty(&mut self.dirty);
            // In host order, as the counted pass goes, not in the order hosts became dirty: that
            // order can come from a library's hash map (hyper's pool closing idle connections),
            // and the order packets are routed in decides which of two due at one instant arrives
            // first.
            self.dirty.sort_unstable();
            let mut again = 0;
            if counted || !self.dirty.is_empty() {
                if counted {
                    self.counted_ms = Some(ms);
                }
                // Packets with no delay (a free network) arrive at once.
                again += fabric.pass(guard, &self.dirty, counted, now);
            }
            again += fabric.deliver_due(guard, now);
            if again == 0 && !fire_due(now) {
                break;
            }
        }
        let boundary = (ms + 1) * 1000;
        let next = [fabric.next_due(), next_timer()]
            .into_iter()
            .flatten()
            .fold(boundary, u64::min)
            .max(now + 1);
        tokio::time::advance(Duration::from_micros(next - now)).await;
        next
    }
}

impl Drop for Stepper {
    fn drop(&mut self) {
        let _ = TIMERS.try_with(|t| t.borrow_mut().take());
    }
}

fn next_timer() -> Option<u64> {
    TIMERS.with(|t| {
        t.borrow()
            .as_ref()
            .and_then(|t| t.queue.first_key_value().map(|(k, _)| k.0))
    })
}

/// Wake every simulated sleep due by `now`; returns whether any was.
fn fire_due(now: u64) -> bool {
    let due: Vec<Waker> = TIMERS.with(|t| {
        let mut t = t.borrow_mut();
        let Some(t) = t.as_mut() else {
            return Vec::new();
        };
        let mut due = Vec::new();
        while let Some(e) = t.queue.first_entry() {
            if e.key().0 > now {
                break;
            }
            due.push(e.remove());
        }
        due
    });
    let any = !due.is_empty();
    // Woken outside the borrow: a waker may run code that arms another sleep.
    for w in due {
        w.wake();
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sleeps of a few hundred microseconds end exactly when due, in order, and the clock only
    /// stops where something is due or on a millisecond boundary.
    #[test]
    fn sleeps_end_at_their_microsecond() {
        let rt = crate::substrate::runtime(1);
        let set = tokio::task::LocalSet::new();
        let mut fabric = Fabric::new(Vec::new(), 0, 0, 1);
        let mut net = turmoil_net::Net::new();
        let host = net.add_host(std::net::IpAddr::from([10, 0, 0, 1]));
        let guard = net.enter();
        let woke = std::rc::Rc::new(RefCell::new(Vec::new()));
        rt.block_on(set.run_until(async {
            let mut stepper = Stepper::install();
            for d in [1_700u64, 300, 301, 2_000_000] {
                let woke = woke.clone();
                tokio::task::spawn_local(crate::substrate::HostScoped::new(host, async move {
                    sleep_us(d).await;
                    woke.borrow_mut().push((d, now_us()));
                }));
            }
            let mut stops = Vec::new();
            while stepper.now_us() < 2_000_100 {
                stops.push(stepper.step(&mut fabric, &guard).await);
            }
            assert_eq!(&stops[..4], &[300, 301, 1000, 1700]);
            assert_eq!(
                stops.len(),
                3 + 2_001,
                "300, 301, 1700 and every boundary from 1 ms to 2.001 s"
            );
        }));
        assert_eq!(
            *woke.borrow(),
            vec![
                (300, 300),
                (301, 301),
                (1_700, 1_700),
                (2_000_000, 2_000_000)
            ]
        );
    }
}
