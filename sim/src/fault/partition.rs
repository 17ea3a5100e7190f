//! `kind = "partition"`: packets between two groups are dropped until it heals.

use serde::{Deserialize, Serialize};

use super::{Effects, Fault, Topology, between_target, packet_rules};
use crate::fabric::RuleKind;
use crate::scenario::Dur;

/// Packets between two groups are dropped.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Start.
    pub at: Dur,
    /// Heal (never, if absent).
    pub until: Option<Dur>,
    /// The two groups.
    pub between: [String; 2],
    /// Only packets from the first group to the second.
    #[serde(default)]
    pub one_way: bool,
}

impl Fault for Partition {
    const KIND: &'static str = "partition";

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
        packet_rules(
            effects,
            start,
            RuleKind::Partition,
            &self.between,
            self.one_way,
        );
    }
}
