//! `kind = "root"`: one step of a root (trust anchor) rotation, as Istio's plug-in CA rotation
//! is done by hand. Written as three faults, one per step, so a scenario can also take them in
//! the wrong order or leave one out, which is what it would rehearse:
//! - `trust-new`: a new root is made and every sidecar trusts the old and the new (two trust
//!   anchors during the overlap);
//! - `sign-new`: the CA signs with the new root from now on; workloads move to it as they renew;
//! - `drop-old`: sidecars trust only the root the CA signs with. A workload still holding a
//!   certificate from the old root now fails every handshake until it renews.
//!
//! The trust bundle reaches running sidecars at once (Istio distributes it through istiod; here
//! it does not wait for the control plane), and restarted sidecars start with the current one.

use serde::{Deserialize, Serialize};

use super::{Effects, Fault, Topology};
use crate::scenario::Dur;

/// One step of a root rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootStep {
    /// Make a new root; trust both.
    TrustNew,
    /// Sign with the new root.
    SignNew,
    /// Trust only the root the CA signs with.
    DropOld,
}

impl RootStep {
    /// As written in the scenario.
    pub fn as_str(self) -> &'static str {
        match self {
            RootStep::TrustNew => "trust-new",
            RootStep::SignNew => "sign-new",
            RootStep::DropOld => "drop-old",
        }
    }
}

/// A root rotation step at `at`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// When.
    pub at: Dur,
    /// Which step.
    pub step: RootStep,
}

impl Fault for Root {
    const KIND: &'static str = "root";

    fn at(&self) -> Dur {
        self.at
    }

    fn until(&self) -> Option<Dur> {
        None
    }

    fn check(&self, topology: &Topology<'_>) -> Result<(), String> {
        if !topology.mtls {
            return Err("a root rotation needs [mtls]".into());
        }
        if self.step == RootStep::SignNew && !topology.control_plane {
            return Err(
                "signing with a new root needs a [control_plane] (the CA that renews certificates)"
                    .into(),
            );
        }
        Ok(())
    }

    fn target(&self) -> String {
        format!("root {}", self.step.as_str())
    }

    fn apply(&self, start: bool, effects: &mut dyn Effects) {
        if start {
            effects.rotate_root(self.step);
        }
    }
}
