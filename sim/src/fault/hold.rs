//! `kind = "hold"`: packets between two groups are held, then all delivered at `until` (a
//! stalled link that recovers, as opposed to a partition that loses them).

use serde::{Deserialize, Serialize};

use super::{Effects, Fault, Topology, between_target, packet_rules};
use crate::fabric::RuleKind;
use crate::scenario::Dur;

/// Packets between two groups are held, then all delivered at `until`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    /// Start.
    pub at: Dur,
    /// Release.
    pub until: Dur,
    /// The two groups.
    pub between: [String; 2],
    /// Only packets from the first group to the second.
    #[serde(default)]
    pub one_way: bool,
}

impl Fault for Hold {
    const KIND: &'static str = "hold";

    fn at(&self) -> Dur {
        self.at
    }

    fn until(&self) -> Option<Dur> {
        Some(self.until)
    }

    fn check(&self, topology: &Topology<'_>) -> Result<(), String> {
        self.between.iter().try_for_each(|g| topology.group(g))
    }

    fn target(&self) -> String {
        between_target(&self.between, self.one_way)
    }

    fn apply(&self, start: bool, effects: &mut dyn Effects) {
        packet_rules(effects, start, RuleKind::Hold, &self.between, self.one_way);
    }
}
