//! `[mtls]`: run mutual TLS between sidecars, for real (rustls handshakes over the simulated
//! network), with workload certificates from the control plane's CA.
//!
//! ```toml
//! [mtls]
//! lifetime = "24h"        # workload certificate lifetime (Istio's and Linkerd's default)
//! renewal = "istio"       # when to renew: "istio" (50% of the lifetime + up to 1% jitter) or "linkerd" (70%)
//! mode = "strict"         # what inbound listeners accept: "strict", "permissive" or "disabled"
//! ```
//!
//! `kind = "mtls"` faults change one service's mode during the run (a migration), and
//! `[workload] plaintext_clients` runs some load generators without a sidecar.
//!
//! Every sidecar starts with a certificate issued at the run's start. With a `[control_plane]`
//! each renews it from the control plane's CA on its mesh's schedule (a control-plane outage is
//! a CA outage, as istiod is both); without one, certificates are never renewed. Clocks start
//! at 2026-01-01T00:00:00Z. Keys are Ed25519, so handshakes are the same length in every run
//! and runs stay byte-for-byte reproducible. Without this section mTLS is not run: peers are
//! identified by address, and its cost is not modelled.

use serde::{Deserialize, Serialize};

use super::Dur;

/// Mutual TLS settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtlsSpec {
    /// Workload certificate lifetime.
    pub lifetime: Dur,
    /// When certificates are renewed.
    pub renewal: RenewalSpec,
    /// What every sidecar's inbound listener accepts (Istio's mesh-wide PeerAuthentication).
    pub mode: mesh_core::tls::Mode,
}

impl Default for MtlsSpec {
    fn default() -> Self {
        Self {
            lifetime: Dur(std::time::Duration::from_secs(24 * 3600)),
            renewal: RenewalSpec::Istio,
            mode: mesh_core::tls::Mode::Strict,
        }
    }
}

/// A mesh's renewal rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RenewalSpec {
    /// Istio 1.24+: 50% of the lifetime plus up to 1% jitter.
    #[default]
    Istio,
    /// Linkerd: 70% of the remaining lifetime.
    Linkerd,
}

impl RenewalSpec {
    /// The rule.
    pub fn rule(self) -> mesh_core::tls::Renewal {
        match self {
            RenewalSpec::Istio => mesh_core::tls::Renewal::ISTIO,
            RenewalSpec::Linkerd => mesh_core::tls::Renewal::LINKERD,
        }
    }
}

/// The Unix time every simulated clock reads at a run's start: 2026-01-01T00:00:00Z.
pub const CLOCK_BASE_S: u64 = 1_767_225_600;
