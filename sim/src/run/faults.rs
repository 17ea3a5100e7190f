//! The fault time line: each fault's start and end as an event, and the world as a fault acts
//! on it ([`crate::fault::Effects`]: packet rules, crashes, slow and failing apps). What each
//! kind does is in its own file under [`crate::fault`].

use std::collections::BTreeMap;

use crate::fault::Effects;
use crate::substrate::{Fabric, RuleKind};

use super::*;

/// A fault event on the time line.
#[derive(Debug, Clone)]
pub(super) enum Event {
    Start(usize),
    End(usize),
}

/// Start or end fault `k` of the time line.
pub(super) fn apply(
    world: &mut World<'_>,
    fabric: &mut Fabric,
    guard: &turmoil_net::EnterGuard,
    rule_ids: &mut BTreeMap<usize, Vec<u64>>,
    ev: Event,
) {
    let (k, start) = match ev {
        Event::Start(k) => (k, true),
        Event::End(k) => (k, false),
    };
    let fault = world.loaded.scenario.faults[k].get_ref();
    let mut stage = Stage {
        world,
        fabric,
        guard,
        rule_ids,
        fault: k,
    };
    fault.apply(start, &mut stage);
}

/// The running world as one fault sees it.
struct Stage<'s, 'w> {
    world: &'s mut World<'w>,
    fabric: &'s mut Fabric,
    guard: &'s turmoil_net::EnterGuard,
    rule_ids: &'s mut BTreeMap<usize, Vec<u64>>,
    fault: usize,
}

impl Effects for Stage<'_, '_> {
    fn add_rules(&mut self, kind: RuleKind, from: &str, to: &str, one_way: bool) -> Vec<u64> {
        self.fabric.add_rule(kind, from, to, one_way)
    }

    fn keep_rules(&mut self, ids: Vec<u64>) {
        self.rule_ids.insert(self.fault, ids);
    }

    fn remove_rules(&mut self) {
        for id in self.rule_ids.remove(&self.fault).unwrap_or_default() {
            self.fabric.remove_rule(id, self.guard);
        }
    }

    fn set_crashed(&mut self, pod: &str, down: bool) {
        if pod == crate::fault::CONTROL_PLANE {
            if let Some(index) = self.world.host_names.iter().position(|h| h == pod) {
                self.fabric.set_crashed(index, down);
            }
            self.world.set_control_plane(down);
            return;
        }
        let Some(p) = self.world.pods.iter().position(|x| x.name == pod) else {
            return;
        };
        let index = self.world.pods[p].index;
        if self.world.scaled_out.contains(&index) || (!down && !self.world.down.contains(&index)) {
            // Stopped by a scale: a crash's end does not bring it back (only a scale up does).
            // Or running again already (a scale up replaced it): nothing to restart.
            return;
        }
        self.fabric.set_crashed(index, down);
        if down {
            self.world.crash_pod(index);
        } else {
            self.world.start_pod(p);
        }
    }

    fn set_slow(&mut self, key: &str, extra_us: Option<u64>) {
        let mut m = self.world.modes.lock().unwrap_or_else(|p| p.into_inner());
        match extra_us {
            Some(us) => m.slow_us.insert(key.to_string(), us),
            None => m.slow_us.remove(key),
        };
    }

    fn set_policy(&mut self, service: &str, policy: &crate::scenario::PolicySpec) {
        self.world.set_policy(service, policy);
    }

    fn set_mtls_mode(&mut self, service: &str, mode: mesh_core::tls::Mode) {
        self.world.set_mtls_mode(service, mode);
    }

    fn scale(&mut self, service: &str, replicas: u32, start: bool) {
        // Without a mesh there is no service discovery to tell callers (see the fault's docs).
        if !self.world.mesh {
            return;
        }
        if start {
            for p in self.world.scale(service, replicas, self.fault) {
                let index = self.world.pods[p].index;
                self.world.scaled_out.remove(&index);
                self.fabric.set_crashed(index, false);
                self.world.start_pod(p);
            }
        } else {
            for index in self.world.drained(self.fault) {
                self.fabric.set_crashed(index, true);
            }
        }
    }

    fn rotate_root(&mut self, step: crate::fault::RootStep) {
        self.world.rotate_root(step);
    }

    fn set_errors(&mut self, key: &str, rate: Option<f64>) {
        let mut m = self.world.modes.lock().unwrap_or_else(|p| p.into_inner());
        match rate {
            Some(r) => m.errors.insert(key.to_string(), r),
            None => m.errors.remove(key),
        };
    }
}
