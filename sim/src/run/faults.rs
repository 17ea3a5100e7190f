//! The fault time line: each fault's start and end as an event, and what applying one does
//! to the fabric and the pods.

use std::collections::BTreeMap;

use crate::scenario::FaultSpec;
use crate::substrate::{Fabric, RuleKind};

use super::*;

/// A fault event on the time line.
#[derive(Debug, Clone)]
pub(super) enum Event {
    Start(usize),
    End(usize),
}

pub(super) fn apply(
    world: &mut World<'_>,
    fabric: &mut Fabric,
    guard: &turmoil_net::EnterGuard,
    rule_ids: &mut BTreeMap<usize, Vec<u64>>,
    ev: Event,
) {
    let faults = &world.loaded.scenario.faults;
    let (k, start) = match ev {
        Event::Start(k) => (k, true),
        Event::End(k) => (k, false),
    };
    match faults[k].get_ref() {
        FaultSpec::Latency {
            between,
            delay,
            jitter,
            one_way,
            ..
        } => {
            if start {
                let kind = RuleKind::Latency {
                    delay_us: delay.as_us(),
                    jitter_us: jitter.as_us(),
                };
                rule_ids.insert(k, fabric.add_rule(kind, &between[0], &between[1], *one_way));
            } else {
                for id in rule_ids.remove(&k).unwrap_or_default() {
                    fabric.remove_rule(id, guard);
                }
            }
        }
        FaultSpec::Partition {
            between, one_way, ..
        }
        | FaultSpec::Hold {
            between, one_way, ..
        } => {
            let kind = if matches!(faults[k].get_ref(), FaultSpec::Hold { .. }) {
                RuleKind::Hold
            } else {
                RuleKind::Partition
            };
            if start {
                rule_ids.insert(k, fabric.add_rule(kind, &between[0], &between[1], *one_way));
            } else {
                for id in rule_ids.remove(&k).unwrap_or_default() {
                    fabric.remove_rule(id, guard);
                }
            }
        }
        FaultSpec::Crash { pod, .. } => {
            let Some(p) = world.pods.iter().position(|x| &x.name == pod) else {
                return;
            };
            let index = world.pods[p].index;
            if start {
                fabric.set_crashed(index, true);
                world.crash_pod(index);
            } else {
                fabric.set_crashed(index, false);
                world.start_pod(p);
            }
        }
        FaultSpec::Slow {
            service,
            pod,
            extra,
            ..
        } => {
            let key = pod.clone().unwrap_or_else(|| service.clone());
            let mut m = world.modes.lock().unwrap_or_else(|p| p.into_inner());
            if start {
                m.slow_us.insert(key, extra.as_us());
            } else {
                m.slow_us.remove(&key);
            }
        }
        FaultSpec::Errors {
            service, pod, rate, ..
        } => {
            let key = pod.clone().unwrap_or_else(|| service.clone());
            let mut m = world.modes.lock().unwrap_or_else(|p| p.into_inner());
            if start {
                m.errors.insert(key, *rate);
            } else {
                m.errors.remove(&key);
            }
        }
    }
}
