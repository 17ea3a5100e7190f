//! `kind = "crash"`: a pod stops (its app and sidecar die, its packets vanish) and, if `until`
//! is given, restarts then with fresh processes. With a `[control_plane]`, `pod = "control-plane"`
//! takes the control plane down (a restarted one rebuilds its state from the pods as they are).

use serde::{Deserialize, Serialize};

use super::{Effects, Fault, Topology};
use crate::scenario::Dur;

/// A pod stops; it restarts at `until`, if given.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Crash {
    /// Start.
    pub at: Dur,
    /// Restart (never, if absent).
    pub until: Option<Dur>,
    /// The pod, e.g. `db-0`.
    pub pod: String,
}

impl Fault for Crash {
    const KIND: &'static str = "crash";

    fn at(&self) -> Dur {
        self.at
    }

    fn until(&self) -> Option<Dur> {
        self.until
    }

    fn check(&self, topology: &Topology<'_>) -> Result<(), String> {
        if topology.pods.contains(&self.pod)
            || (topology.control_plane && self.pod == super::CONTROL_PLANE)
        {
            Ok(())
        } else if self.pod == super::CONTROL_PLANE {
            Err("the control plane can crash only when a [control_plane] runs".into())
        } else {
            Err(format!(
                "no pod named {:?}; pods are named <service>-<index>, e.g. \"{}-0\"",
                self.pod, topology.example
            ))
        }
    }

    fn target(&self) -> String {
        self.pod.clone()
    }

    fn apply(&self, start: bool, effects: &mut dyn Effects) {
        effects.set_crashed(&self.pod, start);
    }
}
