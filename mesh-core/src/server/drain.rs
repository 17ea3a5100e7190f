//! Graceful shutdown of a listener, as Envoy drains one and Kubernetes asks with SIGTERM:
//! once started, the listener accepts nothing more (new connections are refused by the
//! kernel), every open connection finishes what is in flight and closes (HTTP/1.1 with
//! `connection: close` on its last response, HTTP/2 with GOAWAY), and the listener's serve
//! future returns once every connection has closed or the grace period is over.
//!
//! Not here: deciding when to drain (the binary's signal handling) or what readiness says
//! meanwhile (the proxy's admin listener).

use std::time::Duration;

use tokio::sync::watch;

/// Istio's `terminationDrainDuration`: how long open connections get to finish.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The listeners' side of a drain: whether it has started, and how long connections get.
#[derive(Clone, Debug)]
pub struct Drain {
    started: watch::Receiver<bool>,
    grace: Duration,
}

/// The side that starts a drain.
#[derive(Debug)]
pub struct DrainTrigger(watch::Sender<bool>);

/// A drain not yet started, whose connections get `grace` to finish once it is.
pub fn drain(grace: Duration) -> (DrainTrigger, Drain) {
    let (tx, rx) = watch::channel(false);
    (DrainTrigger(tx), Drain { started: rx, grace })
}

impl DrainTrigger {
    /// Start draining; idempotent.
    pub fn start(&self) {
        self.0.send_replace(true);
    }
}

impl Drain {
    /// Whether the drain has started.
    pub fn started(&self) -> bool {
        *self.started.borrow()
    }

    /// How long open connections get to finish once it has.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Resolves once the drain has started (at once if it already has); never, if its trigger
    /// is dropped unstarted.
    pub async fn wait(&mut self) {
        if self.started.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// What ends a connection early and gracefully: its listener's mTLS mode changing (it was
/// accepted under the old terms) or the listener draining.
#[derive(Debug)]
pub(crate) struct Stop {
    pub(crate) mode: Option<watch::Receiver<crate::tls::Mode>>,
    pub(crate) drain: Option<Drain>,
}

impl Stop {
    /// `None` when nothing can stop the connection early, so the serving race keeps the shape
    /// it has without either (see `until_done!`).
    pub(crate) fn of(
        mode: Option<watch::Receiver<crate::tls::Mode>>,
        drain: Option<Drain>,
    ) -> Option<Stop> {
        (mode.is_some() || drain.is_some()).then_some(Stop { mode, drain })
    }

    /// Resolves when the connection should finish what it has in flight and close.
    pub(crate) async fn changed(&mut self) {
        match (&mut self.mode, &mut self.drain) {
            // A dropped mode sender also ends the connection, as it always has.
            (Some(m), None) => {
                let _ = m.changed().await;
            }
            (None, Some(d)) => d.wait().await,
            (Some(m), Some(d)) => tokio::select! {
                biased;
                _ = m.changed() => {}
                _ = d.wait() => {}
            },
            (None, None) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_drain_is_seen_by_every_listener_once_started_and_never_before() {
        let (trigger, drain) = drain(DEFAULT_GRACE);
        let mut a = drain.clone();
        let mut b = drain.clone();
        assert!(!drain.started());
        let early = tokio::time::timeout(Duration::from_millis(20), a.wait()).await;
        assert!(early.is_err(), "resolved before the drain started");
        trigger.start();
        a.wait().await;
        b.wait().await;
        assert!(drain.started());
        // A clone taken after the start sees it at once.
        let mut late = drain.clone();
        late.wait().await;
    }

    #[tokio::test]
    async fn a_dropped_trigger_never_drains() {
        let (trigger, mut drain) = drain(DEFAULT_GRACE);
        drop(trigger);
        let r = tokio::time::timeout(Duration::from_millis(20), drain.wait()).await;
        assert!(r.is_err());
    }
}
