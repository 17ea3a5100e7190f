//! `kind = "config"`: the control plane is given a new policy for a service at `at`, as a user
//! applying a DestinationRule or VirtualService would; it reaches sidecars only through the
//! control plane's push. `expect = "nack"` rehearses a bad push: the policy must be one the
//! proxies refuse (checked at load, with the proxies' own check), and they keep the previous one.

use serde::{Deserialize, Serialize};

use super::{Effects, Fault, Topology};
use crate::scenario::{Dur, PolicySpec};

/// A policy change pushed by the control plane.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// When the change is made.
    pub at: Dur,
    /// The service whose policy (for calls to it) changes.
    pub service: String,
    /// The new policy, as in `[services.policy]` (laid over the mesh's preset, if any); boxed,
    /// as it dwarfs every other fault.
    pub policy: Box<PolicySpec>,
    /// What the proxies should do with it: `ack` (default) or `nack`.
    #[serde(default)]
    pub expect: Expect,
}

/// The answer a config change is written to get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Applied.
    #[default]
    Ack,
    /// Refused.
    Nack,
}

impl Fault for Config {
    const KIND: &'static str = "config";

    fn at(&self) -> Dur {
        self.at
    }

    fn until(&self) -> Option<Dur> {
        None
    }

    fn check(&self, topology: &Topology<'_>) -> Result<(), String> {
        if !topology.control_plane {
            return Err("a config change needs a [control_plane] to push it".into());
        }
        topology.service_pod(&self.service, None)?;
        let verdict = self.policy.to_policy().validate(&self.service);
        match (self.expect, verdict) {
            (Expect::Ack, Err(e)) => Err(format!(
                "the proxies would refuse this policy ({e}); write `expect = \"nack\"` to rehearse a bad push"
            )),
            (Expect::Nack, Ok(())) => {
                Err("`expect = \"nack\"`, but the proxies would accept this policy".into())
            }
            _ => Ok(()),
        }
    }

    fn target(&self) -> String {
        self.service.clone()
    }

    fn apply(&self, start: bool, effects: &mut dyn Effects) {
        if start {
            effects.set_policy(&self.service, &self.policy);
        }
    }
}
