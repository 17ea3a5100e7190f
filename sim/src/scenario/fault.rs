//! The `[[faults]]` time line: each fault kind's fields, and what it targets.

use serde::{Deserialize, Serialize};

use super::*;

/// One entry of the fault time line. `at` is when it starts; `until`, where allowed, when it is undone.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum FaultSpec {
    /// Extra latency (and jitter) on packets between two groups.
    Latency {
        /// Start.
        at: Dur,
        /// End (never, if absent).
        until: Option<Dur>,
        /// The two groups (service name, pod name, or `clients`).
        between: [String; 2],
        /// Extra one-way delay.
        delay: Dur,
        /// Each packet's delay varies uniformly by up to this much either way.
        #[serde(default)]
        jitter: Dur,
        /// Only packets from the first group to the second.
        #[serde(default)]
        one_way: bool,
    },
    /// Packets between two groups are dropped.
    Partition {
        /// Start.
        at: Dur,
        /// Heal (never, if absent).
        until: Option<Dur>,
        /// The two groups.
        between: [String; 2],
        /// Only packets from the first group to the second.
        #[serde(default)]
        one_way: bool,
    },
    /// Packets between two groups are held, then all delivered at `until`.
    Hold {
        /// Start.
        at: Dur,
        /// Release.
        until: Dur,
        /// The two groups.
        between: [String; 2],
        /// Only packets from the first group to the second.
        #[serde(default)]
        one_way: bool,
    },
    /// A pod stops: its processes die and its packets vanish. It restarts at `until`, if given.
    Crash {
        /// Start.
        at: Dur,
        /// Restart (never, if absent).
        until: Option<Dur>,
        /// The pod, e.g. `db-0`.
        pod: String,
    },
    /// A service (or one pod of it) gets slower by `extra` per request.
    Slow {
        /// Start.
        at: Dur,
        /// End (never, if absent).
        until: Option<Dur>,
        /// The service.
        service: String,
        /// Only this pod, if given.
        pod: Option<String>,
        /// Added latency per request.
        extra: Dur,
    },
    /// A service (or one pod of it) fails a share of requests with 500.
    Errors {
        /// Start.
        at: Dur,
        /// End (never, if absent).
        until: Option<Dur>,
        /// The service.
        service: String,
        /// Only this pod, if given.
        pod: Option<String>,
        /// Probability of a 500.
        rate: f64,
    },
}

impl FaultSpec {
    /// When the fault starts.
    pub fn at(&self) -> Dur {
        match self {
            FaultSpec::Latency { at, .. }
            | FaultSpec::Partition { at, .. }
            | FaultSpec::Hold { at, .. }
            | FaultSpec::Crash { at, .. }
            | FaultSpec::Slow { at, .. }
            | FaultSpec::Errors { at, .. } => *at,
        }
    }

    /// When the fault is undone, if ever.
    pub fn until(&self) -> Option<Dur> {
        match self {
            FaultSpec::Hold { until, .. } => Some(*until),
            FaultSpec::Latency { until, .. }
            | FaultSpec::Partition { until, .. }
            | FaultSpec::Crash { until, .. }
            | FaultSpec::Slow { until, .. }
            | FaultSpec::Errors { until, .. } => *until,
        }
    }

    /// The fault's kind, as written.
    pub fn kind(&self) -> &'static str {
        match self {
            FaultSpec::Latency { .. } => "latency",
            FaultSpec::Partition { .. } => "partition",
            FaultSpec::Hold { .. } => "hold",
            FaultSpec::Crash { .. } => "crash",
            FaultSpec::Slow { .. } => "slow",
            FaultSpec::Errors { .. } => "errors",
        }
    }
}
