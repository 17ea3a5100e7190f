//! Fault kinds, one file each, as mini-redis keeps one command per file: each kind owns its
//! fields (the `[[faults]]` entry it parses from), its checks against the topology, how the
//! report names its target, and what starting and ending it does to the running world. Adding
//! a kind means one new file here and one variant in [`FaultSpec`]; nothing else matches on
//! kinds.
//!
//! Not here: when faults fire (the run's time line, `run::faults`) and the packet rules
//! themselves ([`crate::substrate`]); a kind acts only through [`Effects`].

mod config;
mod crash;
mod errors;
mod hold;
mod latency;
mod mtls;
mod partition;
mod root;
mod scale;
mod slow;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use config::{Config, Expect};
pub use crash::Crash;
pub use errors::Errors;
pub use hold::Hold;
pub use latency::Latency;
pub use mtls::MtlsMode;
pub use partition::Partition;
pub use root::{Root, RootStep};
pub use scale::Scale;
pub use slow::Slow;

use crate::fabric::RuleKind;
use crate::scenario::Dur;

/// One entry of the fault time line. `at` is when it starts; `until`, where allowed, when it
/// is undone.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FaultSpec {
    /// Extra latency (and jitter) on packets between two groups.
    Latency(Latency),
    /// Packets between two groups are dropped.
    Partition(Partition),
    /// Packets between two groups are held, then all delivered at `until`.
    Hold(Hold),
    /// A pod stops: its processes die and its packets vanish; it restarts at `until`, if given.
    Crash(Crash),
    /// A service (or one pod of it) gets slower by `extra` per request.
    Slow(Slow),
    /// A service (or one pod of it) fails a share of requests with 500.
    Errors(Errors),
    /// The control plane is given a new policy for a service.
    Config(Config),
    /// A service's PeerAuthentication mode changes.
    Mtls(MtlsMode),
    /// One step of a root (trust anchor) rotation.
    Root(Root),
    /// A service's replica count changes.
    Scale(Scale),
}

/// What every fault kind says about itself.
pub trait Fault {
    /// The kind, as written in `kind = "..."`.
    const KIND: &'static str;
    /// When it starts.
    fn at(&self) -> Dur;
    /// When it is undone, if ever.
    fn until(&self) -> Option<Dur>;
    /// Checks against the topology; the message says what was expected.
    fn check(&self, topology: &Topology<'_>) -> Result<(), String>;
    /// What it hits, as reports name it (`api <-> db`, `db-0`).
    fn target(&self) -> String;
    /// Start (`start`) or undo it.
    fn apply(&self, start: bool, effects: &mut dyn Effects);
}

/// The names a fault may refer to.
#[derive(Debug)]
pub struct Topology<'a> {
    /// Service names.
    pub services: &'a BTreeSet<String>,
    /// Pod names (`<service>-<index>`).
    pub pods: &'a BTreeSet<String>,
    /// The first service's name, for examples in messages.
    pub example: &'a str,
    /// Whether a control plane runs (`[control_plane]`), so `control-plane` can be hit.
    pub control_plane: bool,
    /// Whether mTLS runs (`[mtls]`), so modes can change.
    pub mtls: bool,
}

impl Topology<'_> {
    /// Whether `g` names a group packets can be matched by: a service, a pod or `clients`.
    fn group(&self, g: &str) -> Result<(), String> {
        if g == "clients"
            || self.services.contains(g)
            || self.pods.contains(g)
            || (self.control_plane && g == CONTROL_PLANE)
        {
            Ok(())
        } else {
            Err(format!(
                "`between` names {g:?}; expected a service, a pod (e.g. \"{}-0\"), \"clients\" or, with a [control_plane], \"control-plane\"",
                self.example
            ))
        }
    }

    /// Whether `service`, and `pod` if given, exist and the pod belongs to the service.
    pub(crate) fn service_pod(&self, service: &str, pod: Option<&String>) -> Result<(), String> {
        if !self.services.contains(service) {
            return Err(format!("no service named {service:?}"));
        }
        match pod {
            Some(p) if !p.starts_with(&format!("{service}-")) || !self.pods.contains(p) => {
                Err(format!("no pod {p:?} in service {service:?}"))
            }
            _ => Ok(()),
        }
    }
}

/// What a fault can do to a running world; the run implements it.
pub trait Effects {
    /// Add packet rules of `kind` between two groups; returns their ids.
    fn add_rules(&mut self, kind: RuleKind, from: &str, to: &str, one_way: bool) -> Vec<u64>;
    /// Remember the rules this fault added, to remove them when it ends.
    fn keep_rules(&mut self, ids: Vec<u64>);
    /// Remove the rules this fault added (a held packet is released).
    fn remove_rules(&mut self);
    /// Crash (`down`) or restart a pod.
    fn set_crashed(&mut self, pod: &str, down: bool);
    /// Add (or with `None` remove) extra service time for a service or pod.
    fn set_slow(&mut self, key: &str, extra_us: Option<u64>);
    /// Set (or with `None` clear) an error probability for a service or pod.
    fn set_errors(&mut self, key: &str, rate: Option<f64>);
    /// Give the control plane a new policy for calls to `service`.
    fn set_policy(&mut self, service: &str, policy: &crate::scenario::PolicySpec);
    /// Change what `service`'s sidecars accept inbound.
    fn set_mtls_mode(&mut self, service: &str, mode: mesh_core::tls::Mode);
    /// Take one step of a root rotation.
    fn rotate_root(&mut self, step: RootStep);
    /// Scale `service` to `replicas` (`start`), or stop the pods it took off the list (the end
    /// of the drain).
    fn scale(&mut self, service: &str, replicas: u32, start: bool);
}

/// The control plane's host, which a crash or partition may name when a `[control_plane]` runs.
pub const CONTROL_PLANE: &str = "control-plane";

/// Start or end a fault that is a set of packet rules between two groups.
fn packet_rules(
    effects: &mut dyn Effects,
    start: bool,
    kind: RuleKind,
    between: &[String; 2],
    one_way: bool,
) {
    if start {
        let ids = effects.add_rules(kind, &between[0], &between[1], one_way);
        effects.keep_rules(ids);
    } else {
        effects.remove_rules();
    }
}

/// `a <-> b`, or `a -> b` one way.
fn between_target(between: &[String; 2], one_way: bool) -> String {
    let arrow = if one_way { "->" } else { "<->" };
    format!("{} {arrow} {}", between[0], between[1])
}

/// Runs `$body` with `$f` bound to the variant's fault, whatever the variant.
macro_rules! each {
    ($spec:expr, $f:ident => $body:expr) => {
        match $spec {
            FaultSpec::Latency($f) => $body,
            FaultSpec::Partition($f) => $body,
            FaultSpec::Hold($f) => $body,
            FaultSpec::Crash($f) => $body,
            FaultSpec::Slow($f) => $body,
            FaultSpec::Errors($f) => $body,
            FaultSpec::Config($f) => $body,
            FaultSpec::Mtls($f) => $body,
            FaultSpec::Root($f) => $body,
            FaultSpec::Scale($f) => $body,
        }
    };
}

fn kind_of<F: Fault>(_: &F) -> &'static str {
    F::KIND
}

impl FaultSpec {
    /// The replica count a scale fault asks of `service`, if this is one.
    pub fn scales_to(&self, service: &str) -> Option<u32> {
        match self {
            FaultSpec::Scale(s) if s.service == service => Some(s.replicas),
            _ => None,
        }
    }

    /// When the fault starts.
    pub fn at(&self) -> Dur {
        each!(self, f => f.at())
    }

    /// When the fault is undone, if ever.
    pub fn until(&self) -> Option<Dur> {
        each!(self, f => f.until())
    }

    /// The fault's kind, as written.
    pub fn kind(&self) -> &'static str {
        each!(self, f => kind_of(f))
    }

    /// Its checks against the topology, after the common one on its window.
    pub fn check(&self, topology: &Topology<'_>) -> Result<(), String> {
        if let Some(until) = self.until()
            && until <= self.at()
        {
            return Err(format!(
                "`until` ({until}) must come after `at` ({})",
                self.at()
            ));
        }
        each!(self, f => f.check(topology))
    }

    /// The fault as the report's time line shows it.
    pub fn window(&self) -> reports::FaultWindow {
        reports::FaultWindow {
            kind: self.kind().to_string(),
            target: each!(self, f => f.target()),
            start_ms: self.at().as_ms(),
            // A config change is an instant, not a window that lasts to the end.
            end_ms: match self {
                FaultSpec::Config(c) => Some(c.at.as_ms()),
                FaultSpec::Mtls(m) => Some(m.at.as_ms()),
                FaultSpec::Root(r) => Some(r.at.as_ms()),
                _ => self.until().map(|u| u.as_ms()),
            },
        }
    }

    /// Start (`start`) or undo the fault.
    pub fn apply(&self, start: bool, effects: &mut dyn Effects) {
        each!(self, f => f.apply(start, effects))
    }
}
