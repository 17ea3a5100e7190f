//! `kind = "errors"`: a service, or one pod of it, answers a share of requests with 500.

use serde::{Deserialize, Serialize};

use super::{Effects, Fault, Topology};
use crate::scenario::Dur;

/// A service (or one pod of it) fails a share of requests with 500.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Errors {
    /// Start.
    pub at: Dur,
    /// End (never, if absent).
    pub until: Option<Dur>,
    /// The service.
    pub service: String,
    /// Only this pod, if given.
    pub pod: Option<String>,
    /// Probability of a 500.
    pub rate: f64,
}

impl Fault for Errors {
    const KIND: &'static str = "errors";

    fn at(&self) -> Dur {
        self.at
    }

    fn until(&self) -> Option<Dur> {
        self.until
    }

    fn check(&self, topology: &Topology<'_>) -> Result<(), String> {
        topology.service_pod(&self.service, self.pod.as_ref())?;
        if (0.0..=1.0).contains(&self.rate) {
            Ok(())
        } else {
            Err("`rate` must be a probability between 0 and 1".into())
        }
    }

    fn target(&self) -> String {
        self.pod.clone().unwrap_or_else(|| self.service.clone())
    }

    fn apply(&self, start: bool, effects: &mut dyn Effects) {
        effects.set_errors(&self.target(), start.then_some(self.rate));
    }
}
