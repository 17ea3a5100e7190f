//! The fabric: moves packets between the simulated hosts at microsecond instants, applying the
//! scenario's network: one-way latency within and between zones, and the packet faults
//! (partitions, holds, latency with jitter, crashed hosts). A packet is due at its send instant
//! plus its delay; on each directed link delivery stays in order even when jitter or a latency
//! change would reorder it, as on one TCP path.
//!
//! It is not the clock: [`crate::time::Stepper`] asks it when its next packet is due and tells it
//! when to make a pass. Nor the sockets: those are turmoil-net's, behind [`crate::substrate`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use turmoil_net::{EnterGuard, HostId, Packet};

/// What a host is, for fault matching and reports.
#[derive(Clone, Debug)]
pub struct HostInfo {
    /// Host name: a pod (`db-0`), a client (`client-0`) or `control-plane`.
    pub name: String,
    /// The service the pod belongs to; `clients` for workload hosts.
    pub group: String,
    /// Zone.
    pub zone: String,
    /// Address.
    pub ip: IpAddr,
}

/// What a packet rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// Drop matching packets.
    Partition,
    /// Keep matching packets until the rule is removed, then deliver them in order.
    Hold,
    /// Add `delay_us` ± up to `jitter_us`.
    Latency {
        /// Extra one-way delay, µs.
        delay_us: u64,
        /// Jitter amplitude, µs.
        jitter_us: u64,
    },
}

#[derive(Debug)]
struct Rule {
    id: u64,
    kind: RuleKind,
    from: BTreeSet<usize>,
    to: BTreeSet<usize>,
}

/// Counts of what the fabric did to packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FabricStats {
    /// Packets delivered.
    pub delivered: u64,
    /// Dropped by a partition.
    pub dropped_partition: u64,
    /// Dropped because an end was crashed.
    pub dropped_crashed: u64,
    /// Held by a hold rule (delivered on release).
    pub held: u64,
    /// Packets given a delivery time, and the sum of their one-way delays, µs.
    pub timed: u64,
    /// Sum of the one-way delays of `timed` packets, µs.
    pub delay_us: u64,
}

/// Moves packets between hosts: each is due at its send instant plus its one-way delay, µs.
#[derive(Debug)]
pub struct Fabric {
    now_us: u64,
    hosts: Vec<HostInfo>,
    crashed: Vec<bool>,
    by_ip: BTreeMap<IpAddr, usize>,
    pending: BTreeMap<(u64, u64), Packet>,
    seq: u64,
    last_on_link: BTreeMap<(usize, usize), u64>,
    rules: Vec<Rule>,
    next_rule: u64,
    held: Vec<(u64, Packet)>,
    rng: ChaCha8Rng,
    base_latency_us: u64,
    cross_zone_us: u64,
    egress: Vec<Packet>,
    stats: FabricStats,
    digest: Digest,
}

/// A running hash of every delivery (instant, addresses, size), closed once per simulated
/// second: two runs that deliver the same packets at the same instants have the same list, and
/// the first differing entry says in which second two runs parted (`meshsim run
/// --check-determinism`). FNV-1a over the values' bytes: fixed, unkeyed, the same in every process.
#[derive(Debug)]
struct Digest {
    second: u64,
    current: u64,
    closed: Vec<u64>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

impl Digest {
    fn new() -> Self {
        Self {
            second: 0,
            current: FNV_OFFSET,
            closed: Vec::new(),
        }
    }

    fn fold(&mut self, now_us: u64, pkt: &Packet) {
        while self.second < now_us / 1_000_000 {
            self.closed.push(self.current);
            self.current = FNV_OFFSET;
            self.second += 1;
        }
        let ip = |a: IpAddr| match a {
            IpAddr::V4(v) => u128::from(v.to_bits()),
            IpAddr::V6(v) => v.to_bits(),
        };
        for b in now_us
            .to_le_bytes()
            .into_iter()
            .chain(ip(pkt.src).to_le_bytes())
            .chain(ip(pkt.dst).to_le_bytes())
            .chain(pkt.size().to_le_bytes())
        {
            self.current = (self.current ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

impl Fabric {
    /// A fabric over `hosts` (indexed as given), with baseline latencies and its own RNG stream.
    pub fn new(hosts: Vec<HostInfo>, base_latency_us: u64, cross_zone_us: u64, seed: u64) -> Self {
        let by_ip = hosts.iter().enumerate().map(|(i, h)| (h.ip, i)).collect();
        Self {
            now_us: 0,
            crashed: vec![false; hosts.len()],
            hosts,
            by_ip,
            pending: BTreeMap::new(),
            seq: 0,
            last_on_link: BTreeMap::new(),
            rules: Vec::new(),
            next_rule: 1,
            held: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            base_latency_us,
            cross_zone_us,
            egress: Vec::with_capacity(256),
            stats: FabricStats::default(),
            digest: Digest::new(),
        }
    }

    /// Hosts, in index order.
    pub fn hosts(&self) -> &[HostInfo] {
        &self.hosts
    }

    /// Indices of the hosts a fault's group names: a service, a pod, or `clients`.
    pub fn select(&self, group: &str) -> BTreeSet<usize> {
        self.hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.group == group || h.name == group)
            .map(|(i, _)| i)
            .collect()
    }

    /// Install a rule from `from` to `to` (and back, unless `one_way`); returns its id.
    pub fn add_rule(&mut self, kind: RuleKind, a: &str, b: &str, one_way: bool) -> Vec<u64> {
        let (sa, sb) = (self.select(a), self.select(b));
        let mut ids = vec![self.push_rule(kind, sa.clone(), sb.clone())];
        if !one_way {
            ids.push(self.push_rule(kind, sb, sa));
        }
        ids
    }

    fn push_rule(&mut self, kind: RuleKind, from: BTreeSet<usize>, to: BTreeSet<usize>) -> u64 {
        let id = self.next_rule;
        self.next_rule += 1;
        self.rules.push(Rule { id, kind, from, to });
        id
    }

    /// Remove a rule; packets it held are delivered now, in the order they were sent.
    pub fn remove_rule(&mut self, id: u64, guard: &EnterGuard) {
        self.rules.retain(|r| r.id != id);
        let (release, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(rid, _)| *rid == id);
        self.held = keep;
        for (_, pkt) in release {
            self.deliver(pkt, guard);
        }
    }

    /// Mark a host crashed (its packets vanish both ways) or back up.
    pub fn set_crashed(&mut self, host: usize, crashed: bool) {
        self.crashed[host] = crashed;
    }

    /// What the fabric has done so far.
    pub fn stats(&self) -> FabricStats {
        self.stats
    }

    /// The delivery digest of each simulated second so far (the last one still open).
    pub fn digests(&self) -> Vec<u64> {
        let mut d = self.digest.closed.clone();
        d.push(self.digest.current);
        d
    }

    /// Hand `pkt` to its host now, counted and folded into the digest.
    fn deliver(&mut self, pkt: Packet, guard: &EnterGuard) {
        self.stats.delivered += 1;
        self.digest.fold(self.now_us, &pkt);
        mark_delivered(guard, &pkt);
        guard.deliver(pkt);
    }

    /// Deliver every packet due by `now_us`; returns how many.
    pub fn deliver_due(&mut self, guard: &EnterGuard, now_us: u64) -> usize {
        self.now_us = now_us;
        let mut n = 0;
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > now_us {
                break;
            }
            let pkt = entry.remove();
            self.deliver(pkt, guard);
            n += 1;
        }
        n
    }

    /// Collect what `hosts` sent since the last pass and route it as sent at `now_us`; a
    /// `counted` pass is over every host and is also TCP's retransmit pass (make one per simulated
    /// millisecond). Returns how many packets were delivered at once (no delay).
    pub fn pass(
        &mut self,
        guard: &EnterGuard,
        hosts: &[HostId],
        counted: bool,
        now_us: u64,
    ) -> usize {
        self.now_us = now_us;
        let mut out = std::mem::take(&mut self.egress);
        if counted {
            guard.egress_all(&mut out);
        } else {
            guard.segment_hosts(hosts, &mut out);
        }
        let mut now = 0;
        for pkt in out.drain(..) {
            now += usize::from(self.route(pkt, guard));
        }
        self.egress = out;
        now
    }

    /// When the next packet in flight is due, µs.
    pub fn next_due(&self) -> Option<u64> {
        self.pending.first_key_value().map(|(k, _)| k.0)
    }

    /// Route one packet; true when it was delivered at once.
    fn route(&mut self, pkt: Packet, guard: &EnterGuard) -> bool {
        let (Some(&s), Some(&d)) = (self.by_ip.get(&pkt.src), self.by_ip.get(&pkt.dst)) else {
            return false;
        };
        match self.fate(s, d) {
            Fate::Dropped => false,
            Fate::Held(rule) => {
                self.held.push((rule, pkt));
                false
            }
            Fate::At(at) if at <= self.now_us => {
                self.deliver(pkt, guard);
                true
            }
            Fate::At(at) => {
                self.seq += 1;
                self.pending.insert((at, self.seq), pkt);
                false
            }
        }
    }

    /// What happens to a packet sent now from host `s` to host `d`, by the rules in force; counts
    /// drops and holds. Separate from delivery so the ordering rule can be tested on its own.
    fn fate(&mut self, s: usize, d: usize) -> Fate {
        if self.crashed[s] || self.crashed[d] {
            self.stats.dropped_crashed += 1;
            return Fate::Dropped;
        }
        let mut delay_us = self.base_latency_us;
        if self.hosts[s].zone != self.hosts[d].zone {
            delay_us += self.cross_zone_us;
        }
        for rule in &self.rules {
            if !(rule.from.contains(&s) && rule.to.contains(&d)) {
                continue;
            }
            match rule.kind {
                RuleKind::Partition => {
                    self.stats.dropped_partition += 1;
                    return Fate::Dropped;
                }
                RuleKind::Hold => {
                    self.stats.held += 1;
                    return Fate::Held(rule.id);
                }
                RuleKind::Latency {
                    delay_us: d_us,
                    jitter_us,
                } => {
                    let j = if jitter_us > 0 {
                        self.rng.random_range(0..=2 * jitter_us) as i64 - jitter_us as i64
                    } else {
                        0
                    };
                    delay_us = (delay_us as i64 + d_us as i64 + j).max(0) as u64;
                }
            }
        }
        // A packet never overtakes the one sent before it on the same directed link.
        let at = self.now_us + delay_us;
        let last = self.last_on_link.entry((s, d)).or_insert(0);
        *last = at.max(*last);
        self.stats.timed += 1;
        self.stats.delay_us += *last - self.now_us;
        Fate::At(*last)
    }
}

/// A packet reaching a host can make its kernel answer (an ACK) without waking a task.
fn mark_delivered(guard: &EnterGuard, pkt: &Packet) {
    if let Some(h) = guard.host_for_ip(pkt.dst) {
        crate::time::mark_dirty(h);
    }
}

/// Where a routed packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Lost: a partition or a crashed end.
    Dropped,
    /// Kept by the hold rule with this id until it is removed.
    Held(u64),
    /// Delivered at this instant, µs (now or later).
    At(u64),
}

/// One-way latency between two hosts in one zone when the scenario does not say: 100 µs, an RTT of
/// 200 µs, the low end of same-availability-zone pings measured on EC2 (0.20–0.41 ms average RTT
/// across three zones, orensol.com, "Network Latency Inside And Across Amazon EC2 Availability
/// Zones", 2009; under 1 ms in eu-west-1, Liesis, 2022).
pub const DEFAULT_LATENCY_US: u64 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, group: &str, zone: &str, last: u8) -> HostInfo {
        HostInfo {
            name: name.into(),
            group: group.into(),
            zone: zone.into(),
            ip: [10, 0, 0, last].into(),
        }
    }

    fn fabric(cross_zone_us: u64) -> Fabric {
        let hosts = vec![
            host("client-0", "clients", "a", 1),
            host("web-0", "web", "a", 2),
            host("web-1", "web", "b", 3),
        ];
        Fabric::new(hosts, 0, cross_zone_us, 9)
    }

    fn at(f: Fate) -> u64 {
        match f {
            Fate::At(t) => t,
            other => panic!("expected a delivery time, got {other:?}"),
        }
    }

    /// Jitter of ±15 ms around 20 ms would reorder packets sent a millisecond apart; on one
    /// directed link they still arrive in the order sent, while the delays do spread (the jitter
    /// is applied) and the reverse link, which has no rule, is not held back by them.
    #[test]
    fn jitter_never_reorders_a_link() {
        let mut f = fabric(0);
        f.add_rule(
            RuleKind::Latency {
                delay_us: 20_000,
                jitter_us: 15_000,
            },
            "clients",
            "web-0",
            true,
        );
        let mut times = Vec::new();
        for _ in 0..500 {
            f.now_us += 1000;
            times.push(at(f.fate(0, 1)));
            assert_eq!(at(f.fate(1, 0)), f.now_us, "reverse link has no latency");
        }
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        let delays: BTreeSet<u64> = times
            .iter()
            .zip(1..)
            .map(|(t, sent)| t - sent * 1000)
            .collect();
        let (min, max) = (*delays.first().unwrap(), *delays.last().unwrap());
        assert!(
            min >= 5_000 && max <= 35_000,
            "within 20 ± 15 ms: {delays:?}"
        );
        assert!(delays.len() >= 100, "the jitter spreads delays: {delays:?}");
    }

    /// Cross-zone latency applies between zones only; a one-way partition drops one direction;
    /// a hold keeps packets (one way) without dropping; a crashed host loses both directions.
    #[test]
    fn zones_partitions_holds_and_crashes_per_direction() {
        let mut f = fabric(3_000);
        assert_eq!(at(f.fate(0, 1)), 0, "same zone: no extra latency");
        assert_eq!(at(f.fate(0, 2)), 3_000, "zone a to b: 3 ms");
        assert_eq!(at(f.fate(2, 0)), 3_000, "and back");

        let ids = f.add_rule(RuleKind::Partition, "clients", "web-1", true);
        assert_eq!(ids.len(), 1, "one way: one rule");
        assert_eq!(f.fate(0, 2), Fate::Dropped);
        assert_eq!(at(f.fate(2, 0)), 3_000, "the other direction still flows");
        assert_eq!(at(f.fate(0, 1)), 0, "other pods are not partitioned");
        f.rules.clear();

        let ids = f.add_rule(RuleKind::Hold, "clients", "web", false);
        assert_eq!(ids.len(), 2);
        assert_eq!(f.fate(0, 1), Fate::Held(ids[0]));
        assert_eq!(f.fate(2, 0), Fate::Held(ids[1]));
        f.rules.clear();

        f.set_crashed(1, true);
        assert_eq!(f.fate(0, 1), Fate::Dropped);
        assert_eq!(f.fate(1, 0), Fate::Dropped);
        assert_eq!(at(f.fate(0, 2)), 3_000);
        f.set_crashed(1, false);
        assert_eq!(at(f.fate(0, 1)), 0);
        let st = f.stats();
        assert_eq!(
            (st.dropped_partition, st.held, st.dropped_crashed),
            (1, 2, 2)
        );
    }
}
