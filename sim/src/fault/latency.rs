//! `kind = "latency"`: extra one-way delay, with jitter, on packets between two groups.

use serde::{Deserialize, Serialize};

use super::{Effects, Fault, Topology, between_target, packet_rules};
use crate::fabric::RuleKind;
use crate::scenario::Dur;

/// Extra latency (and jitter) on packets between two groups.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Start.
    pub at: Dur,
    /// End (never, if absent).
    pub until: Option<Dur>,
    /// The two groups (service name, pod name, or `clients`).
    pub between: [String; 2],
    /// Extra one-way delay.
    pub delay: Dur,
    /// Each packet's delay varies uniformly by up to this much either way.
    #[serde(default)]
    pub jitter: Dur,
    /// Only packets from the first group to the second.
    #[serde(default)]
    pub one_way: bool,
}

impl Fault for Latency {
    const KIND: &'static str = "latency";

    fn at(&self) -> Dur {
        self.at
    }

    fn until(&self) -> Option<Dur> {
        self.until
    }

    fn check(&self, topology: &Topology<'_>) -> Result<(), String> {
        self.between.iter().try_for_each(|g| topology.group(g))
    }

    fn target(&self) -> String {
        between_target(&self.between, self.one_way)
    }

    fn apply(&self, start: bool, effects: &mut dyn Effects) {
        let kind = RuleKind::Latency {
            delay_us: self.delay.as_us(),
            jitter_us: self.jitter.as_us(),
        };
        packet_rules(effects, start, kind, &self.between, self.one_way);
    }
}
