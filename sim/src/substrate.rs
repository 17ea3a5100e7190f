//! The simulated network under the mesh: [`SimNet`] implements `mesh_core::net::Network` on
//! turmoil-net's socket stack, and [`Fabric`] moves packets between hosts at microsecond instants,
//! applying the scenario's network latency and faults.
//!
//! turmoil-net is a socket stack, not a runtime: it leaves time and scheduling to the harness.
//! Ours is one tokio current-thread runtime with a paused clock (so time is simulated and jumps when
//! every task is idle), one `LocalSet` holding every task of every host, and a director that
//! moves the clock from one due instant to the next ([`crate::time::Stepper`]), asking the fabric
//! when its next packet is due. Each task is pinned to its host
//! ([`HostScoped`]) so its socket calls reach that host's kernel — including when the task is
//! dropped, which closes its sockets.
//!
//! The fabric drops, holds or delays packets by rule (partitions, hold/release, link latency with
//! jitter, crashed hosts). A packet is due at its send instant plus its one-way delay, to the
//! microsecond; delivery on each directed link stays in order even when jitter or a latency change
//! would reorder it, as on one TCP path.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use turmoil_net::shim::tokio::net::{TcpListener, TcpStream};
use turmoil_net::{EnterGuard, HostId, Packet};

/// The tasks of one host incarnation; a crash aborts them all.
#[derive(Debug, Default)]
pub struct TaskGroup {
    handles: Vec<tokio::task::AbortHandle>,
    prune_at: usize,
    dead: bool,
}

impl TaskGroup {
    /// Abort every task and refuse new ones.
    pub fn kill(&mut self) {
        self.dead = true;
        for h in self.handles.drain(..) {
            h.abort();
        }
    }
}

type PipeListeners = BTreeMap<u16, tokio::sync::mpsc::UnboundedSender<(DuplexStream, SocketAddr)>>;

/// Per-host-incarnation state shared by every clone of a [`SimNet`].
#[derive(Debug, Default)]
struct HostState {
    group: TaskGroup,
    pipes: PipeListeners,
    next_pipe_port: u16,
}

/// A host's view of the simulated network.
///
/// Connections between hosts are turmoil-net TCP. Connections to `127.0.0.1` (app ↔ sidecar) are
/// in-memory pipes: turmoil-net delivers loopback segments only when the fabric ticks, which would
/// add a millisecond per loopback packet where a real host adds microseconds. The sidecar's real
/// loopback cost is part of the per-hop cost the bench measures and [`crate::cost`] charges.
#[derive(Clone, Debug)]
pub struct SimNet {
    host: HostId,
    state: Arc<Mutex<HostState>>,
}

/// Buffer of an in-memory loopback pipe (as a socket buffer would hold).
const PIPE_BUF: usize = 256 * 1024;

impl SimNet {
    /// The network as seen from `host`, as a fresh incarnation (new task group, no listeners).
    pub fn new(host: HostId) -> Self {
        Self {
            host,
            state: Arc::new(Mutex::new(HostState {
                next_pipe_port: 40_000,
                ..HostState::default()
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Abort every task of this incarnation (a crash).
    pub fn kill(&self) {
        let mut st = self.state();
        st.group.kill();
        st.pipes.clear();
    }
}

/// A listener: TCP (unless bound to loopback only) plus the host's loopback pipes on the same port.
#[derive(Debug)]
pub struct SimListener {
    tcp: Option<TcpListener>,
    pipes: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<(DuplexStream, SocketAddr)>>,
}

/// A stream: TCP between hosts, a pipe on loopback.
#[derive(Debug)]
pub enum SimStream {
    /// Between hosts.
    Tcp(TcpStream),
    /// On loopback.
    Pipe(DuplexStream),
}

impl Drop for SimListener {
    fn drop(&mut self) {
        if self.tcp.is_some() {
            crate::time::socket_used();
        }
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        if let SimStream::Tcp(_) = self {
            // Closing sends a FIN in the next pass.
            crate::time::socket_used();
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SimStream::Tcp(s) => {
                // Reading can open the receive window, which the next pass announces.
                crate::time::socket_used();
                Pin::new(s).poll_read(cx, buf)
            }
            SimStream::Pipe(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SimStream::Tcp(s) => {
                crate::time::socket_used();
                Pin::new(s).poll_write(cx, buf)
            }
            SimStream::Pipe(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SimStream::Tcp(s) => {
                crate::time::socket_used();
                Pin::new(s).poll_flush(cx)
            }
            SimStream::Pipe(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SimStream::Tcp(s) => {
                crate::time::socket_used();
                Pin::new(s).poll_shutdown(cx)
            }
            SimStream::Pipe(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl mesh_core::net::Network for SimNet {
    type Stream = SimStream;
    type Listener = SimListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<SimListener> {
        let tcp = if addr.ip().is_loopback() {
            None
        } else {
            // A restarted pod's old sockets linger until their FIN exchange times out, and
            // turmoil-net has no SO_REUSEADDR (which tokio sets on Unix): wait them out, as a
            // restarting process's bind loop would.
            let mut tries = 0;
            loop {
                match TcpListener::bind(addr).await {
                    Ok(l) => break Some(l),
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < 100 => {
                        tries += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut st = self.state();
        if st.pipes.contains_key(&addr.port()) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        st.pipes.insert(addr.port(), tx);
        Ok(SimListener {
            tcp,
            pipes: tokio::sync::Mutex::new(rx),
        })
    }

    async fn accept(&self, listener: &SimListener) -> io::Result<(SimStream, SocketAddr)> {
        let mut pipes = listener.pipes.lock().await;
        match &listener.tcp {
            Some(tcp) => tokio::select! {
                biased;
                p = pipes.recv() => p.map(|(s, a)| (SimStream::Pipe(s), a)).ok_or_else(|| io::ErrorKind::NotConnected.into()),
                t = tcp.accept() => {
                    crate::time::socket_used();
                    t.map(|(s, a)| (SimStream::Tcp(s), a))
                }
            },
            None => pipes
                .recv()
                .await
                .map(|(s, a)| (SimStream::Pipe(s), a))
                .ok_or_else(|| io::ErrorKind::NotConnected.into()),
        }
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<SimStream> {
        if addr.ip().is_loopback() {
            let mut st = self.state();
            let port = st.next_pipe_port;
            st.next_pipe_port = st.next_pipe_port.checked_add(1).unwrap_or(40_000);
            let tx = st
                .pipes
                .get(&addr.port())
                .ok_or(io::ErrorKind::ConnectionRefused)?;
            let (ours, theirs) = tokio::io::duplex(PIPE_BUF);
            tx.send((theirs, SocketAddr::new(addr.ip(), port)))
                .map_err(|_| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            return Ok(SimStream::Pipe(ours));
        }
        crate::time::socket_used();
        let stream = TcpStream::connect(addr).await;
        crate::time::socket_used();
        stream.map(SimStream::Tcp)
    }

    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut st = self.state();
        if st.group.dead {
            return;
        }
        let handle = tokio::task::spawn_local(HostScoped::new(self.host, fut));
        let group = &mut st.group;
        // Prune finished handles only when the list doubles, so spawning stays O(1) amortised.
        if group.handles.len() >= group.prune_at {
            group.handles.retain(|h| !h.is_finished());
            group.prune_at = (group.handles.len() * 2).max(256);
        }
        group.handles.push(handle.abort_handle());
    }
}

/// A future pinned to a host: every poll, and its drop, see that host as the current one.
pub struct HostScoped<F> {
    host: HostId,
    inner: Option<Pin<Box<F>>>,
}

impl<F> HostScoped<F> {
    /// Wrap `fut` so it runs as part of `host`.
    pub fn new(host: HostId, fut: F) -> Self {
        Self {
            host,
            inner: Some(Box::pin(fut)),
        }
    }
}

impl<F: Future> Future for HostScoped<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        crate::time::note_activity(self.host);
        turmoil_net::set_current(self.host);
        match self.inner.as_mut() {
            Some(f) => f.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

impl<F> Drop for HostScoped<F> {
    fn drop(&mut self) {
        // Dropping the future closes its sockets; that must happen in this host's kernel.
        if let Some(inner) = self.inner.take() {
            crate::time::note_activity(self.host);
            turmoil_net::set_current(self.host);
            drop(inner);
        }
    }
}

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
            self.stats.delivered += 1;
            mark_delivered(guard, &pkt);
            guard.deliver(pkt);
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

    /// Deliver every packet due by `now_us`; returns how many.
    pub fn deliver_due(&mut self, guard: &EnterGuard, now_us: u64) -> usize {
        self.now_us = now_us;
        let mut n = 0;
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > now_us {
                break;
            }
            let pkt = entry.remove();
            self.stats.delivered += 1;
            mark_delivered(guard, &pkt);
            guard.deliver(pkt);
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
                self.stats.delivered += 1;
                mark_delivered(guard, &pkt);
                guard.deliver(pkt);
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

/// A small simulated world for tests and tools: add hosts, then run one future on the first host
/// while the fabric moves packets (one way [`DEFAULT_LATENCY_US`]), until it finishes (or `limit` of
/// simulated time passes: `None`).
pub struct Harness {
    net: turmoil_net::Net,
    hosts: Vec<(HostId, HostInfo)>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// An empty world with the simulator's TCP settings (200 ms RTO, 15 retransmissions).
    pub fn new() -> Self {
        Self {
            net: turmoil_net::Net::with_config(kernel_config()),
            hosts: Vec::new(),
        }
    }

    /// Add a host named `name` at `ip`.
    pub fn host(&mut self, name: &str, ip: IpAddr) -> &mut Self {
        let id = self.net.add_host(ip);
        self.hosts.push((
            id,
            HostInfo {
                name: name.to_string(),
                group: name.to_string(),
                zone: "a".into(),
                ip,
            },
        ));
        self
    }

    /// Run `main` (given every host's network, in order) as a task of the first host.
    pub fn run<T, Fut>(
        self,
        seed: u64,
        limit: std::time::Duration,
        main: impl FnOnce(Vec<SimNet>) -> Fut,
    ) -> Option<T>
    where
        T: 'static,
        Fut: Future<Output = T> + 'static,
    {
        let rt = runtime(seed);
        let (ids, infos): (Vec<_>, Vec<_>) = self.hosts.into_iter().unzip();
        let guard = self.net.enter();
        let mut fabric = Fabric::new(infos, DEFAULT_LATENCY_US, 0, seed);
        let nets: Vec<SimNet> = ids.iter().map(|id| SimNet::new(*id)).collect();
        let first = ids[0];
        let set = tokio::task::LocalSet::new();
        let out = rt.block_on(set.run_until(async {
            let mut stepper = crate::time::Stepper::install();
            let handle = tokio::task::spawn_local(HostScoped::new(first, main(nets)));
            let limit_us = limit.as_micros() as u64;
            while stepper.now_us() < limit_us {
                stepper.step(&mut fabric, &guard).await;
                if handle.is_finished() {
                    return handle.await.ok();
                }
            }
            None
        }));
        drop(set);
        drop(guard);
        out
    }
}

/// The runtime every simulation runs on: one thread, tokio's clock paused (the simulation drives
/// it), tokio's own random choices seeded with `seed` (needs `--cfg tokio_unstable`).
pub fn runtime(seed: u64) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()))
        .build()
        .expect("a current-thread runtime builds")
}

/// TCP settings of every simulated host: retransmit after 200 ms without progress (Linux's
/// minimum RTO), give up after 15 retransmissions (3 s without progress).
pub fn kernel_config() -> turmoil_net::KernelConfig {
    turmoil_net::KernelConfig::default()
        .retx_threshold(200)
        .retx_max(15)
}

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
