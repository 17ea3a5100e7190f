//! One meshsim sidecar on real sockets, as its own process: what the benches start (so its CPU
//! and memory are its own) and what `meshsim sidecar` runs for anyone who wants to try the proxy
//! by hand. Routes are static (`--route echo=127.0.0.1:9000@http2`), or come from a control
//! plane (`--control-plane 127.0.0.1:15010`, `meshsim control-plane`), which then also pushes
//! policies and every later change. Certificates for mutual TLS come from a folder
//! (`--tls-dir`), or, with `--mtls`, from the control plane's CA: the sidecar fetches its root,
//! asks for a certificate for a fresh key, serves once it has one and renews it at half its life
//! (Istio's rule), as pilot-agent does for Envoy.
#![allow(clippy::disallowed_methods)] // real sockets, real clock

use std::net::SocketAddr;
use std::time::Duration;

use mesh_core::control::Event;
use mesh_core::net::TokioNet;
use mesh_core::proxy::{Proxy, ProxyConfig};
use mesh_core::registry::{Endpoint, Protocol, Registry, ServiceEntry};

/// Where the sidecar listens and where it sends.
#[derive(Clone, Debug, clap::Args)]
pub struct SidecarArgs {
    /// Where the local app sends outbound calls.
    #[arg(long, default_value = "127.0.0.1:15001")]
    pub outbound: SocketAddr,
    /// Where other sidecars reach this pod.
    #[arg(long, default_value = "127.0.0.1:15006")]
    pub inbound: SocketAddr,
    /// The local app, for inbound requests.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub app: SocketAddr,
    /// The local app's protocol: http1 or http2.
    #[arg(long, default_value = "http1", value_parser = parse_protocol)]
    pub app_protocol: Protocol,
    /// A destination service: `name=ip:port[,ip:port...]@http1|http2` (repeatable).
    #[arg(long = "route", value_parser = parse_route)]
    pub routes: Vec<(String, Vec<SocketAddr>, Protocol)>,
    /// Take services, endpoints and policies from the control plane at this address (`meshsim
    /// control-plane`) instead of `--route`; keep the last good ones while it is unreachable.
    #[arg(long, conflicts_with = "routes")]
    pub control_plane: Option<SocketAddr>,
    /// This proxy's name at the control plane (default: `<service>-<process id>`).
    #[arg(long)]
    pub node: Option<String>,
    /// Tokio worker threads (Envoy's and Linkerd's sidecars commonly run 1 or 2).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Mutual TLS with other sidecars: a folder with `ca.pem`, `cert.pem` and `key.pem`.
    #[arg(long)]
    pub tls_dir: Option<std::path::PathBuf>,
    /// Mutual TLS with certificates from the control plane's CA (`meshsim control-plane
    /// --mtls`): this workload runs as `spiffe://<trust domain>/ns/default/sa/<--service>`, and
    /// `--node` must start with `<--service>-`, which is how the CA knows whom it signs for.
    #[arg(long, requires = "control_plane", conflicts_with = "tls_dir")]
    pub mtls: bool,
    /// The trust domain, with `--mtls`.
    #[arg(long, default_value = "cluster.local", requires = "mtls")]
    pub trust_domain: String,
    /// Serve the admin endpoint here: Prometheus metrics at `/metrics`, `/ready`.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Write one JSON access-log line per request here (`-` for standard output).
    #[arg(long)]
    pub access_log: Option<std::path::PathBuf>,
    /// This pod's service name (labels inbound metrics and access logs).
    #[arg(long, default_value = "local")]
    pub service: String,
    /// This workload's SPIFFE ID, for access logs.
    #[arg(long)]
    pub identity: Option<String>,
    /// On SIGTERM or Ctrl-C: stop accepting, let open connections finish what they have in
    /// flight for at most this long, then exit (Istio's terminationDrainDuration: 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
}

/// `5s`, `500ms` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = match s.strip_suffix("ms") {
        Some(n) => (n, 1e-3),
        None => (s.strip_suffix('s').unwrap_or(s), 1.0),
    };
    n.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v * unit <= 3600.0)
        .map(|v| Duration::from_secs_f64(v * unit))
        .ok_or_else(|| format!("{s:?}: expected a duration up to 1h such as 5s or 500ms"))
}

/// An access-log sink writing JSON lines to `path` (`-`: standard output), and its writer:
/// join it once every copy of the sink is dropped, and every queued line has been written.
pub fn access_log_to(
    path: &std::path::Path,
) -> std::io::Result<(
    mesh_core::telemetry::access::AccessLog,
    std::thread::JoinHandle<()>,
)> {
    let out: Box<dyn std::io::Write + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::fs::File::create(path)?)
    };
    Ok(access_log_into(out, ACCESS_LOG_QUEUE))
}

/// Access-log lines queued for the writer at most; past it, lines are dropped and counted.
/// About 300 bytes a line: at most ~3 MB held for a stalled reader.
pub const ACCESS_LOG_QUEUE: usize = 10_000;

/// A sink that never blocks the proxy: records are queued (at most `queue`) for a writer thread
/// that owns `out`, and dropped when the queue is full: a reader that stops reading (a stalled
/// pipe, a full disk) costs log lines, counted as `access_log_dropped`, never the data plane.
/// Envoy's access loggers buffer and flush from a thread of their own for the same reason.
pub fn access_log_into(
    out: Box<dyn std::io::Write + Send>,
    queue: usize,
) -> (
    mesh_core::telemetry::access::AccessLog,
    std::thread::JoinHandle<()>,
) {
    use std::io::Write;
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(queue);
    // Real sockets only: this thread is the sink's, never the simulator's.
    let writer = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || {
            let mut w = std::io::BufWriter::new(out);
            // A failed write loses the line, never the proxy. Flush whenever the queue is
            // empty, so lines appear promptly when traffic is light.
            while let Ok(line) = rx.recv() {
                let _ = writeln!(w, "{line}");
                while let Ok(next) = rx.try_recv() {
                    let _ = writeln!(w, "{next}");
                }
                let _ = w.flush();
            }
        })
        .expect("spawn the access-log writer");
    let sink = mesh_core::telemetry::access::AccessLog(std::sync::Arc::new(move |r| {
        tx.try_send(r.to_json()).is_ok()
    }));
    (sink, writer)
}

/// Read `ca.pem`, `cert.pem` and `key.pem` from `dir`.
pub fn load_tls(dir: &std::path::Path) -> std::io::Result<mesh_core::tls::MeshTls> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.join(f).display())))
    };
    mesh_core::tls::MeshTls::from_pem(&read("ca.pem")?, &read("cert.pem")?, &read("key.pem")?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// Write a fresh workload identity for `sa` from `ca` into `dir` (for [`load_tls`]).
pub fn write_tls(
    ca: &mesh_core::tls::CertAuthority,
    sa: &str,
    dir: &std::path::Path,
) -> std::io::Result<()> {
    let issued = ca
        .issue(sa)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ca.pem"), ca.ca_pem())?;
    std::fs::write(dir.join("cert.pem"), issued.cert_pem)?;
    std::fs::write(dir.join("key.pem"), issued.key_pem)
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "http1" | "h1" => Ok(Protocol::Http1),
        "http2" | "h2" | "h2c" => Ok(Protocol::Http2),
        _ => Err(format!("expected http1 or http2, found {s:?}")),
    }
}

fn parse_route(s: &str) -> Result<(String, Vec<SocketAddr>, Protocol), String> {
    let (name, rest) = s
        .split_once('=')
        .ok_or("expected name=ip:port[,ip:port]@protocol")?;
    let (addrs, proto) = rest.rsplit_once('@').unwrap_or((rest, "http1"));
    let addrs = addrs
        .split(',')
        .map(|a| a.parse().map_err(|_| format!("{a:?} is not ip:port")))
        .collect::<Result<Vec<SocketAddr>, String>>()?;
    Ok((name.to_string(), addrs, parse_protocol(proto)?))
}

/// A seed from the operating system: on real sockets each process must draw its own trace IDs
/// and jitter (a fixed seed repeats them across sidecars). `RandomState` keys come from the OS.
fn os_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

/// GET `path` from `addr` (a control plane, or a sidecar's admin port) over HTTP/1.1: the body
/// of a 200 answer, at most 1 MiB.
pub async fn get_from(addr: SocketAddr, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let host = addr.ip();
    let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let mut raw = Vec::new();
    // A root certificate is a few KiB; refuse to hold more than 1 MiB of answer.
    (&mut s)
        .take(1 << 20)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("reading: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("answered {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_string())
}

/// TLS settings whose certificate comes from the control plane's CA at `cp`: its root first
/// (retried until it answers), then a certificate for a fresh key, kept fresh by an agent for
/// as long as the process runs. Returns once the first certificate is in place.
async fn tls_from_control_plane(
    cp: SocketAddr,
    node: &str,
    service: &str,
    trust_domain: &str,
    seed: u64,
) -> std::io::Result<mesh_core::tls::MeshTls> {
    use mesh_core::control::agent::{CertAgent, CertEvent};
    use mesh_core::tls::{CertAuthority, KeyKind, MeshTls, Renewal, Validity};
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    if !node.starts_with(&format!("{service}-")) {
        return Err(invalid(format!(
            "--node {node:?} must start with \"{service}-\" (the CA issues identities by node name; --service is {service:?})"
        )));
    }
    let identity = mesh_core::identity::SpiffeId::workload(trust_domain, "default", service)
        .map_err(|e| invalid(format!("--service {service:?} as an identity: {e}")))?;
    let path = mesh_core::control::ca::ROOT_PATH;
    let mut complained = false;
    let root = loop {
        match get_from(cp, path).await {
            Ok(pem) => break pem,
            Err(e) => {
                if !complained {
                    eprintln!("{node}: no CA root from {cp}{path} yet ({e}); retrying");
                    complained = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    // Until the CA answers, an expired certificate of a throwaway issuer: no peer accepts it,
    // so nothing is served as anyone.
    let placeholder = CertAuthority::new(trust_domain)
        .and_then(|ca| {
            ca.issue_svid(
                &identity,
                Validity {
                    not_before: 0,
                    not_after: 1,
                },
            )
        })
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tls = MeshTls::from_pem(&root, &placeholder.cert_pem, &placeholder.key_pem)
        .map_err(|e| invalid(format!("the CA's root from {cp}: {e}")))?;
    let (first, mut got) = tokio::sync::watch::channel(false);
    let said = node.to_string();
    let agent = CertAgent {
        net: TokioNet,
        ca: cp,
        node: node.to_string(),
        identity,
        tls: tls.clone(),
        renewal: Renewal::ISTIO,
        kind: KeyKind::EcdsaP256,
        seed,
        on_event: std::sync::Arc::new(move |e: &CertEvent| match e {
            CertEvent::Rotated { validity } => {
                eprintln!(
                    "{said}: certificate from the CA, valid until {} (unix seconds)",
                    validity.not_after
                );
                first.send_replace(true);
            }
            CertEvent::Failed { reason } => {
                eprintln!("{said}: certificate request failed ({reason}); retrying")
            }
        }),
    };
    tokio::spawn(agent.run(None));
    let _ = got.wait_for(|has| *has).await;
    Ok(tls)
}

/// Run the sidecar until the process is killed.
pub fn run(args: &SidecarArgs) -> std::io::Result<()> {
    let seed = os_seed();
    let tls = args.tls_dir.as_deref().map(load_tls).transpose()?;
    let mut registry = Registry::new();
    for (name, addrs, protocol) in &args.routes {
        registry.insert(
            name.clone(),
            ServiceEntry {
                protocol: *protocol,
                endpoints: addrs
                    .iter()
                    .enumerate()
                    .map(|(i, a)| Endpoint {
                        addr: *a,
                        pod: format!("{name}-{i}"),
                        zone: "local".into(),
                        subset: String::new(),
                        identity: None,
                    })
                    .collect(),
            },
        );
    }
    let log = args.access_log.as_deref().map(access_log_to).transpose()?;
    let cfg = ProxyConfig {
        authorization: Vec::new(),
        custom_authorizer: None,
        identity_by_address: false,
        network_policies: Vec::new(),
        limits: Default::default(),
        outbound_addr: args.outbound,
        inbound_addr: args.inbound,
        app_addr: args.app,
        app_protocol: args.app_protocol,
        connect_timeout: Duration::from_secs(1),
        request_timeout: Some(Duration::from_secs(15)),
        seed,
        inbound_rate_limit: None,
        inbound_route_limits: Vec::new(),
        stats_epoch: None,
        tls,
        admin_addr: args.admin,
        telemetry: mesh_core::telemetry::TelemetryConfig {
            service: args.service.clone(),
            identity: args.identity.clone(),
            record_spans: false,
            span_sink: None,
            access_log: log.as_ref().map(|(sink, _)| sink.clone()),
        },
    };
    // One thread: tokio's current-thread runtime, which polls IO and tasks on the same thread
    // without the multi-thread scheduler's handoffs; more: the work-stealing runtime.
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let policies = mesh_core::policy::Policies::default();
    let control_plane = args.control_plane;
    let node = args
        .node
        .clone()
        .unwrap_or_else(|| format!("{}-{}", args.service, std::process::id()));
    let (mtls, service, trust_domain) =
        (args.mtls, args.service.clone(), args.trust_domain.clone());
    let mut cfg = cfg;
    let grace = args.drain;
    rt.block_on(async move {
        if let (true, Some(cp)) = (mtls, control_plane) {
            cfg.tls =
                Some(tls_from_control_plane(cp, &node, &service, &trust_domain, seed ^ 0xce27).await?);
        }
        let config = match control_plane {
            None => mesh_core::config::fixed(registry, &policies),
            Some(addr) => {
                // Nothing to route until the first push; what it pushes is kept through outages.
                let (tx, rx) = mesh_core::config::channel(Registry::new(), &policies);
                let said = node.clone();
                let on_event = std::sync::Arc::new(move |e: &Event| match e {
                    Event::Connected => eprintln!("{said}: connected to the control plane at {addr}"),
                    Event::Disconnected { reason } => {
                        eprintln!("{said}: no stream to the control plane ({reason}); keeping the last good configuration, retrying")
                    }
                    Event::Applied { kind, version, .. } => eprintln!("{said}: applied {kind} v{version}"),
                    Event::Refused { kind, version, error, .. } => {
                        eprintln!("{said}: refused {kind} v{version}: {error}")
                    }
                });
                let subscriber = mesh_core::control::Subscriber::new(
                    TokioNet,
                    addr,
                    node,
                    mesh_core::control::client::Settings::default(),
                    seed ^ 0x5eed,
                    tx,
                    std::collections::BTreeMap::new(),
                    on_event,
                );
                tokio::spawn(subscriber.run());
                rx
            }
        };
        let proxy = Proxy::new(TokioNet, cfg, config, None);
        let stats = proxy.stats();
        let (trigger, drain) = mesh_core::server::drain(grace);
        tokio::spawn(async move {
            terminated().await;
            eprintln!("meshsim sidecar: draining (at most {grace:?}): no new connections, open ones finish");
            trigger.start();
        });
        proxy.run_until_drained(drain).await?;
        let counters = stats.snapshot();
        let cut: u64 = [
            mesh_core::hop::Direction::Inbound,
            mesh_core::hop::Direction::Outbound,
        ]
        .into_iter()
        .filter_map(|d| {
            counters
                .direction(d)
                .connections_closed
                .get(&mesh_core::limits::CloseReason::DrainTimeout)
                .copied()
        })
        .sum();
        if cut > 0 {
            eprintln!("meshsim sidecar: {cut} connections still open after {grace:?} were closed");
        }
        std::io::Result::Ok(())
    })?;
    // Every task, and with them every copy of the access-log sink, ends with the runtime; the
    // writer then writes what is queued and stops, so no line of a finished request is lost.
    drop(rt);
    if let Some((sink, writer)) = log {
        drop(sink);
        let _ = writer.join();
    }
    eprintln!("meshsim sidecar: drained, exiting");
    Ok(())
}

/// Resolves on SIGTERM (what Kubernetes sends a pod it stops) or SIGINT (Ctrl-C).
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_durations_parse() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn routes_parse() {
        let (n, a, p) = parse_route("echo=127.0.0.1:1,127.0.0.1:2@http2").unwrap();
        assert_eq!((n.as_str(), a.len(), p), ("echo", 2, Protocol::Http2));
        assert!(parse_route("echo").is_err());
        assert!(parse_route("echo=nope@http1").is_err());
        assert!(parse_route("echo=127.0.0.1:1@h3").is_err());
    }
}
