//! The simulated network under the mesh: [`SimNet`] implements `mesh_core::net::Network` on
//! turmoil-net's socket stack; the fabric ([`crate::fabric`], re-exported here) moves packets
//! between hosts at microsecond instants, applying the scenario's network latency and faults.
//!
//! turmoil-net is a socket stack, not a runtime: it leaves time and scheduling to the harness.
//! Ours is one tokio current-thread runtime with a paused clock (so time is simulated and jumps when
//! every task is idle), one `LocalSet` holding every task of every host, and a director that
//! moves the clock from one due instant to the next ([`crate::time::Stepper`]), asking the fabric
//! when its next packet is due. Each task is pinned to its host
//! ([`HostScoped`]) so its socket calls reach that host's kernel — including when the task is
//! dropped, which closes its sockets.
//!
//! Also here: [`Harness`], a small world for tests and tools, and the runtime and TCP settings
//! every simulation uses.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use turmoil_net::HostId;
use turmoil_net::shim::tokio::net::{TcpListener, TcpStream};

pub use crate::fabric::{DEFAULT_LATENCY_US, Fabric, FabricStats, HostInfo, RuleKind};

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
