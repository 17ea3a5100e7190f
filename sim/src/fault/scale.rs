//! `kind = "scale"`: a service's replica count changes at `at`, as a Deployment's does.
//!
//! Scaling up starts the new pods (`<service>-<n>` on); each is listed as an endpoint once its
//! sidecar holds its configuration (and certificate, with `[mtls]`), as Kubernetes lists a pod
//! once it is ready. Scaling down takes the surplus pods (the highest ordinals) off the
//! endpoint list at once and stops them `drain` later (Istio's `terminationDrainDuration`,
//! 5 s): callers stop sending new requests as the change reaches them, requests in flight
//! finish, and what is still in flight when a pod stops fails, counted.
//!
//! Endpoint changes reach the proxies only through the control plane, so a scale needs a
//! `[control_plane]`. The unmeshed baseline has no service discovery: there a scale does
//! nothing and the added pods are never called; likewise `plaintext_clients` (no sidecar)
//! keep the pod list of the start. A crash fault cannot name a pod only a scale creates, and a
//! crash that ends does not restart a pod a scale has stopped.

use serde::{Deserialize, Serialize};

use super::{Effects, Fault, Topology};
use crate::scenario::Dur;

/// A replica count change.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// When.
    pub at: Dur,
    /// Which service (its base pods, `<service>-<n>`; subsets keep theirs).
    pub service: String,
    /// The new replica count.
    pub replicas: u32,
    /// How long a pod taken off the list keeps running before it stops (default 5 s).
    #[serde(default = "five_s")]
    pub drain: Dur,
}

fn five_s() -> Dur {
    Dur::from_ms(5_000)
}

/// Most replicas a scale may ask for (the loader's limit for `replicas`).
pub const MAX_REPLICAS: u32 = 5_000;

impl Fault for Scale {
    const KIND: &'static str = "scale";

    fn at(&self) -> Dur {
        self.at
    }

    /// The end of the drain: when pods taken off the list stop.
    fn until(&self) -> Option<Dur> {
        Some(Dur::from_ms(self.at.as_ms() + self.drain.as_ms()))
    }

    fn check(&self, topology: &Topology<'_>) -> Result<(), String> {
        if !topology.control_plane {
            return Err(
                "a scale needs a [control_plane]: endpoint changes reach proxies through it".into(),
            );
        }
        if self.replicas > MAX_REPLICAS {
            return Err(format!(
                "`replicas` is {}; expected at most {MAX_REPLICAS}",
                self.replicas
            ));
        }
        if self.drain.as_ms() == 0 {
            return Err("`drain` must be above 0 (Istio's default is 5s)".into());
        }
        topology.service_pod(&self.service, None)
    }

    fn target(&self) -> String {
        format!("{} to {}", self.service, self.replicas)
    }

    fn apply(&self, start: bool, effects: &mut dyn Effects) {
        effects.scale(&self.service, self.replicas, start);
    }
}
