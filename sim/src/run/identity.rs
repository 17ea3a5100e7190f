//! Workload identity in a run with `[mtls]`: the mesh's CA (Ed25519, so handshakes have one
//! length in every run), each sidecar's TLS settings on a clock anchored at the run's start,
//! its certificate agent when a control plane can sign, and the tally of what they did.
//!
//! A sidecar of the run's first instant starts with a certificate issued then; a restarted one
//! starts with an expired placeholder and is ready only once its agent has a real one (Istio's
//! sidecar waits for its certificate too).
//!
//! Not here: the CA service and the agent (`mesh_core::control::{ca, agent}`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_core::control::agent::{CertAgent, CertEvent};
use mesh_core::control::ca::{Authenticate, CaService};
use mesh_core::identity::SpiffeId;
use mesh_core::net::Network;
use mesh_core::tls::{CertAuthority, KeyKind, MeshTls, TokioWallClock, Validity};
use reports::MtlsStats;

use crate::derive_seed;
use crate::fault::RootStep;
use crate::scenario::MtlsSpec;
use crate::scenario::mtls::CLOCK_BASE_S;
use crate::substrate::SimNet;

/// The trust domain every run's workloads belong to.
pub(super) const TRUST_DOMAIN: &str = "cluster.local";

#[derive(Default)]
struct Log {
    rotations: u64,
    failures: u64,
    /// Each node's certificate now.
    current: BTreeMap<String, Validity>,
}

/// The run's identities.
pub(super) struct Identities {
    spec: MtlsSpec,
    /// The CA that signs now.
    ca: Arc<CertAuthority>,
    /// The roots sidecars trust (the signer's among them unless a rotation went wrong).
    trusted: Vec<Arc<CertAuthority>>,
    /// A root made by a rotation's first step, not yet signing.
    next: Option<Arc<CertAuthority>>,
    clock: Arc<TokioWallClock>,
    seed: u64,
    service: Option<Arc<CaService>>,
    log: Arc<Mutex<Log>>,
}

/// A root for the run's trust domain: Ed25519, so every handshake has one length.
fn new_root() -> CertAuthority {
    CertAuthority::with_key(TRUST_DOMAIN, Validity::ALWAYS, KeyKind::Ed25519)
        .expect("an Ed25519 root can always be made")
}

/// The identity a sidecar of `owner` (a service, or `clients`) runs as.
pub(super) fn identity_of(owner: &str) -> Option<SpiffeId> {
    SpiffeId::workload(TRUST_DOMAIN, "default", owner).ok()
}

impl Identities {
    /// A CA and clocks for a run starting at `epoch`.
    pub(super) fn new(spec: MtlsSpec, seed: u64, epoch: tokio::time::Instant) -> Self {
        let ca = Arc::new(new_root());
        Self {
            spec,
            trusted: vec![ca.clone()],
            next: None,
            ca,
            clock: Arc::new(TokioWallClock::anchored(
                Duration::from_secs(CLOCK_BASE_S),
                epoch,
            )),
            seed,
            service: None,
            log: Arc::default(),
        }
    }

    /// The CA service a control plane serves, for the callers `who` knows.
    pub(super) fn ca_service(&mut self, who: Authenticate) -> Arc<CaService> {
        self.service
            .get_or_insert_with(|| {
                Arc::new(CaService::new(
                    self.ca.clone(),
                    self.spec.lifetime.0,
                    self.clock.clone(),
                    who,
                ))
            })
            .clone()
    }

    /// TLS settings for a sidecar of `owner` on `node`: with a certificate issued now when
    /// `bootstrap`, else with an expired placeholder; and the validity of what it holds.
    pub(super) fn settings(&self, node: &str, owner: &str, bootstrap: bool) -> (MeshTls, Validity) {
        let id = identity_of(owner).expect("service names are valid SPIFFE path segments");
        let validity = if bootstrap {
            Validity {
                not_before: CLOCK_BASE_S,
                not_after: CLOCK_BASE_S + self.spec.lifetime.0.as_secs(),
            }
        } else {
            Validity {
                not_before: CLOCK_BASE_S - 2,
                not_after: CLOCK_BASE_S - 1,
            }
        };
        let issued = self
            .ca
            .issue_svid(&id, validity)
            .expect("the run's CA signs its own workloads");
        let tls = MeshTls::with_clock(
            &self.bundle(),
            &issued.cert_pem,
            &issued.key_pem,
            self.clock.clone(),
        )
        .expect("a certificate the CA just issued loads");
        if bootstrap {
            self.lock().current.insert(node.to_string(), validity);
        }
        (tls, validity)
    }

    /// The roots sidecars trust, as PEM.
    fn bundle(&self) -> String {
        let pems: Vec<&str> = self.trusted.iter().map(|c| c.ca_pem()).collect();
        pems.join("\n")
    }

    /// One step of a root rotation ([`RootStep`]); the trust bundle after it.
    pub(super) fn rotate_root(&mut self, step: RootStep) -> String {
        match step {
            RootStep::TrustNew => {
                let next = Arc::new(new_root());
                self.trusted.push(next.clone());
                self.next = Some(next);
            }
            RootStep::SignNew => {
                // Without a `trust-new` first, a new root nobody trusts: the mistake rehearsed.
                let next = self.next.take().unwrap_or_else(|| Arc::new(new_root()));
                if let Some(s) = &self.service {
                    s.set_signer(next.clone());
                }
                self.ca = next;
            }
            RootStep::DropOld => self.trusted = vec![self.ca.clone()],
        }
        self.bundle()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `node`'s certificate fresh from the CA at `ca` (the control plane); `ready` hears
    /// when it first has one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn agent(
        &self,
        net: &SimNet,
        ca: SocketAddr,
        node: &str,
        owner: &str,
        tls: MeshTls,
        current: Option<Validity>,
        ready: Box<dyn Fn() + Send + Sync>,
        incarnation: u64,
    ) {
        let log = self.log.clone();
        let name = node.to_string();
        let agent = CertAgent {
            net: net.clone(),
            ca,
            node: node.to_string(),
            identity: identity_of(owner).expect("valid"),
            tls,
            renewal: self.spec.renewal.rule(),
            kind: KeyKind::Ed25519,
            seed: derive_seed(self.seed, &format!("cert-agent:{node}:{incarnation}")),
            on_event: Arc::new(move |e: &CertEvent| {
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                match e {
                    CertEvent::Rotated { validity } => {
                        log.rotations += 1;
                        log.current.insert(name.clone(), *validity);
                        drop(log);
                        ready();
                    }
                    CertEvent::Failed { .. } => log.failures += 1,
                }
            }),
        };
        net.spawn(agent.run(current));
    }

    /// The report's section, with the sidecars' handshake failures and which nodes are up.
    pub(super) fn stats(
        &self,
        handshake_failures: BTreeMap<String, u64>,
        up: &dyn Fn(&str) -> bool,
        now_ms: u64,
    ) -> MtlsStats {
        let log = self.lock();
        let now_s = CLOCK_BASE_S + now_ms / 1000;
        MtlsStats {
            lifetime_s: self.spec.lifetime.0.as_secs(),
            issued: self.service.as_ref().map_or(0, |s| s.signed()),
            rotations: log.rotations,
            renewal_failures: log.failures,
            handshake_failures,
            expired_at_end: log
                .current
                .iter()
                .filter(|(n, v)| up(n) && v.not_after < now_s)
                .count() as u64,
        }
    }
}
