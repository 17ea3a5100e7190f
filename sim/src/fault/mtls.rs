//! `kind = "mtls"`: one service's PeerAuthentication mode changes at `at` (a migration from
//! permissive to strict, say). Its sidecars apply it at once; connections accepted under the
//! old mode drain and their callers reconnect under the new one. Istio would push the change
//! through the control plane; here it takes effect directly, so an outage does not delay it.

use serde::{Deserialize, Serialize};

use super::{Effects, Fault, Topology};
use crate::scenario::Dur;

/// A PeerAuthentication change.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsMode {
    /// When.
    pub at: Dur,
    /// Whose sidecars.
    pub service: String,
    /// The new mode: `strict`, `permissive` or `disabled`.
    pub mode: mesh_core::tls::Mode,
}

impl Fault for MtlsMode {
    const KIND: &'static str = "mtls";

    fn at(&self) -> Dur {
        self.at
    }

    fn until(&self) -> Option<Dur> {
        None
    }

    fn check(&self, topology: &Topology<'_>) -> Result<(), String> {
        if !topology.mtls {
            return Err("an mTLS mode change needs [mtls]".into());
        }
        topology.service_pod(&self.service, None)
    }

    fn target(&self) -> String {
        format!("{} {}", self.service, self.mode.as_str())
    }

    fn apply(&self, start: bool, effects: &mut dyn Effects) {
        if start {
            effects.set_mtls_mode(&self.service, self.mode);
        }
    }
}
