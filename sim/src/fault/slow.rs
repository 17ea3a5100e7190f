//! `kind = "slow"`: a service, or one pod of it, takes `extra` longer per request (a gray
//! failure: it answers, late).

use serde::{Deserialize, Serialize};

use super::{Effects, Fault, Topology};
use crate::scenario::Dur;

/// A service (or one pod of it) gets slower by `extra` per request.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Slow {
    /// Start.
    pub at: Dur,
    /// End (never, if absent).
    pub until: Option<Dur>,
    /// The service.
    pub service: String,
    /// Only this pod, if given.
    pub pod: Option<String>,
    /// Added latency per request.
    pub extra: Dur,
}

impl Fault for Slow {
    const KIND: &'static str = "slow";

    fn at(&self) -> Dur {
        self.at
    }

    fn until(&self) -> Option<Dur> {
        self.until
    }

    fn check(&self, topology: &Topology<'_>) -> Result<(), String> {
        topology.service_pod(&self.service, self.pod.as_ref())
    }

    fn target(&self) -> String {
        self.pod.clone().unwrap_or_else(|| self.service.clone())
    }

    fn apply(&self, start: bool, effects: &mut dyn Effects) {
        effects.set_slow(&self.target(), start.then(|| self.extra.as_us()));
    }
}
