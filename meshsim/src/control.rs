//! The control plane on real sockets: `meshsim control-plane MESH.toml` serves the mesh a file
//! describes (services, their endpoints and policies) to every `meshsim sidecar
//! --control-plane`, re-reading the file when it changes, as `kubectl apply` would feed istiod;
//! `meshsim proxy-status` shows what each proxy runs, as `istioctl proxy-status` does; `meshsim
//! echo` is a toy service to put behind sidecars.
//!
//! The control plane and the subscriber are the simulator's (`mesh_core::control`); only the
//! source of changes differs. With `--mtls` it is also the mesh's CA, as istiod is: sidecars
//! started with `--mtls` fetch its root, then keep a workload certificate signed by it
//! (`mesh_core::control::{ca, agent}`), and every endpoint it pushes names the identity its
//! service runs as, which callers then demand of it.
#![allow(clippy::disallowed_methods)] // real sockets, wall clock: this is the binary's edge

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use mesh_core::control::server::{ControlPlane, Settings, Status};
use mesh_core::control::{ResourceType, SyncState};
use mesh_core::net::{Network, TokioNet};
use mesh_core::policy::Policies;
use mesh_core::registry::{Endpoint, Protocol, Registry, ServiceEntry};
use serde::Deserialize;

/// `meshsim control-plane`.
#[derive(clap::Args, Debug)]
pub struct ControlPlaneArgs {
    /// The mesh: `[[services]]` with `name`, `protocol` (http1, http2), `endpoints` (the pods'
    /// sidecar inbound addresses, "ip:port") and an optional `[services.policy]` as in scenario
    /// files. Re-read whenever it changes; a version that does not load is reported and skipped.
    pub mesh: PathBuf,
    /// Where sidecars connect, and where `GET /status` answers.
    #[arg(long, default_value = "127.0.0.1:15010")]
    pub listen: SocketAddr,
    /// Push once changes have been quiet this long, in ms (Istio: 100).
    #[arg(long, default_value_t = 100)]
    pub debounce_ms: u64,
    /// Also be the mesh's certificate authority: a fresh root for `--trust-domain`, signing
    /// requests at `POST /meshsim.ca.v1/Sign`, the root at `GET /meshsim.ca.v1/Root`. A sidecar
    /// named `<service>-<anything>` is issued `spiffe://<trust domain>/ns/default/sa/<service>`.
    /// The caller's name is taken on its word: run it only where every caller is trusted.
    #[arg(long)]
    pub mtls: bool,
    /// The trust domain of the CA's workloads.
    #[arg(long, default_value = "cluster.local", requires = "mtls")]
    pub trust_domain: String,
    /// Workload certificate lifetime in seconds, 60 to 315360000 (ten years); Istio's and
    /// Linkerd's default is 24 hours.
    #[arg(long, default_value_t = 86_400, requires = "mtls",
          value_parser = clap::value_parser!(u64).range(60..=315_360_000))]
    pub cert_lifetime_secs: u64,
}

/// `meshsim proxy-status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The control plane.
    #[arg(long, default_value = "127.0.0.1:15010")]
    pub control_plane: SocketAddr,
    /// Print the control plane's JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `meshsim echo`.
#[derive(clap::Args, Debug)]
pub struct EchoArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The name it answers with.
    #[arg(long, default_value = "echo")]
    pub name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeshFile {
    #[serde(default)]
    services: Vec<ServiceFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    name: String,
    #[serde(default = "http1")]
    protocol: Protocol,
    #[serde(default)]
    endpoints: Vec<SocketAddr>,
    policy: Option<sim::scenario::PolicySpec>,
}

fn http1() -> Protocol {
    Protocol::Http1
}

/// The mesh `text` (from `path`) describes, or what is wrong with it. With a `trust_domain`
/// (mTLS), each endpoint names the identity its service's workloads run as.
pub fn parse_mesh(
    path: &Path,
    text: &str,
    trust_domain: Option<&str>,
) -> anyhow::Result<(Registry, Policies)> {
    let file: MeshFile =
        toml::from_str(text).with_context(|| format!("{}: not a mesh file", path.display()))?;
    let mut registry = Registry::new();
    let mut policies = Policies::default();
    for svc in file.services {
        let identity = match trust_domain {
            Some(td) => Some(
                mesh_core::identity::SpiffeId::workload(td, "default", &svc.name).with_context(
                    || format!("{}: service {:?} as an identity", path.display(), svc.name),
                )?,
            ),
            None => None,
        };
        let endpoints = svc
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, addr)| Endpoint {
                addr: *addr,
                pod: format!("{}-{i}", svc.name),
                zone: "local".into(),
                subset: String::new(),
                identity: identity.clone(),
            })
            .collect();
        if let Some(spec) = &svc.policy {
            let policy = spec.to_policy();
            // The control plane refuses what its proxies would (a validating webhook's job).
            policy
                .validate(&svc.name)
                .with_context(|| format!("{}: services.policy", path.display()))?;
            policies.services.insert(svc.name.clone(), policy);
        }
        registry.insert(
            svc.name,
            ServiceEntry {
                protocol: svc.protocol,
                endpoints,
            },
        );
    }
    Ok((registry, policies))
}

fn read_mesh(
    path: &Path,
    trust_domain: Option<&str>,
) -> anyhow::Result<(String, Registry, Policies)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (registry, policies) = parse_mesh(path, &text, trust_domain)?;
    Ok((text, registry, policies))
}

/// The service a sidecar named `node` belongs to: the longest service name that, with a dash,
/// starts the node's name (`web-7` and `web-frontend-0` name different services when both
/// exist).
fn service_of_node<'a>(node: &str, services: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    services
        .filter(|s| {
            node.strip_prefix(*s)
                .is_some_and(|rest| rest.starts_with('-'))
        })
        .max_by_key(|s| s.len())
}

/// The CA the control plane runs with `--mtls`: it signs for the services `names` holds now.
fn start_ca(
    args: &ControlPlaneArgs,
    names: Arc<std::sync::Mutex<Vec<String>>>,
) -> anyhow::Result<Arc<mesh_core::control::ca::CaService>> {
    let root = mesh_core::tls::CertAuthority::new(&args.trust_domain)
        .with_context(|| format!("making a root for trust domain {:?}", args.trust_domain))?;
    let td = args.trust_domain.clone();
    let who: mesh_core::control::ca::Authenticate = Arc::new(move |node: &str| {
        let names = names.lock().unwrap_or_else(|p| p.into_inner());
        let service = service_of_node(node, names.iter().map(String::as_str))?;
        mesh_core::identity::SpiffeId::workload(&td, "default", service).ok()
    });
    Ok(Arc::new(mesh_core::control::ca::CaService::new(
        Arc::new(root),
        Duration::from_secs(args.cert_lifetime_secs),
        mesh_core::tls::system_clock(),
        who,
    )))
}

/// Run the control plane until the process is killed.
pub fn run(args: &ControlPlaneArgs) -> anyhow::Result<()> {
    let trust_domain = args.mtls.then_some(args.trust_domain.as_str());
    let (mut text, registry, policies) = read_mesh(&args.mesh, trust_domain)?;
    let names = Arc::new(std::sync::Mutex::new(
        registry.names().map(str::to_string).collect::<Vec<_>>(),
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let settings = Settings {
            debounce: mesh_core::control::Debounce {
                quiet: Duration::from_millis(args.debounce_ms),
                ..mesh_core::control::Debounce::ISTIO
            },
            // Real pushes spend real CPU: nothing is modelled here.
            push_cpu: Duration::ZERO,
            instance: u64::from(std::process::id()),
            ..Settings::default()
        };
        let services = registry.names().count();
        // What the control plane serves now, to tell a real edit from a cosmetic one.
        let (mut serving_registry, mut serving_policies) = (registry.clone(), policies.clone());
        let cp = ControlPlane::new(settings, registry, policies, 1);
        if args.mtls {
            cp.set_ca(start_ca(args, names.clone())?);
        }
        let listener = TokioNet
            .bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        eprintln!(
            "control plane on {} serving {} ({services} services){}; GET /status, or meshsim proxy-status",
            args.listen,
            args.mesh.display(),
            if args.mtls {
                format!(", CA for {}", args.trust_domain)
            } else {
                String::new()
            }
        );
        tokio::spawn(cp.clone().debounce());
        tokio::spawn(cp.clone().serve(TokioNet, listener));
        // Re-read the file twice a second; apply what changed.
        let mut revision = 1;
        let mut last_error = String::new();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match read_mesh(&args.mesh, trust_domain) {
                Ok((new, _, _)) if new == text => {}
                Ok((new, registry, policies)) => {
                    text = new;
                    last_error.clear();
                    if registry == serving_registry && policies == serving_policies {
                        // Comments or layout: nothing to push.
                        continue;
                    }
                    revision += 1;
                    eprintln!("{}: changed, revision {revision}", args.mesh.display());
                    (serving_registry, serving_policies) = (registry.clone(), policies.clone());
                    *names.lock().unwrap_or_else(|p| p.into_inner()) =
                        registry.names().map(str::to_string).collect();
                    cp.update(revision, move |r, p| {
                        *r = registry;
                        *p = policies;
                    });
                }
                Err(e) => {
                    // Report each new problem once (a broken edit, a missing file); keep
                    // serving the last good version.
                    let message = format!("{e:#}");
                    if message != last_error {
                        eprintln!("error: {message}; still serving the last good version");
                        last_error = message;
                    }
                }
            }
        }
    })
}

/// Ask the control plane at `addr` for its status.
pub fn fetch_status(addr: SocketAddr) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to the control plane at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /status HTTP/1.1\r\nhost: control-plane\r\nconnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("the control plane at {addr} sent no HTTP answer");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "the control plane at {addr} answered {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_string())
}

/// The status as `istioctl proxy-status` prints it: one line per proxy, each type's state and
/// the version it runs, against the newest version.
pub fn render_status(status: &Status) -> String {
    let mut out = format!(
        "{:<24} {:<10} {:<22} {:<22}\n",
        "NAME", "STREAM", "ENDPOINTS", "POLICIES"
    );
    for (node, p) in &status.proxies {
        let cell = |k: ResourceType| {
            let state = p.state(k);
            let running = p
                .types
                .get(&k)
                .and_then(|t| t.running)
                .map_or("-".to_string(), |v| format!("v{v}"));
            let newest = status.versions.get(&k).copied().unwrap_or(0);
            let mark = if state == SyncState::Synced && p.types[&k].running != Some(newest) {
                " (behind)"
            } else {
                ""
            };
            format!("{} {running}{mark}", state.as_str())
        };
        out.push_str(&format!(
            "{:<24} {:<10} {:<22} {:<22}\n",
            node,
            if p.connected { "connected" } else { "gone" },
            cell(ResourceType::Endpoints),
            cell(ResourceType::Policies)
        ));
    }
    out.push_str(&format!(
        "newest: endpoints v{}, policies v{}; {} pushes\n",
        status.versions.get(&ResourceType::Endpoints).unwrap_or(&0),
        status.versions.get(&ResourceType::Policies).unwrap_or(&0),
        status.pushes
    ));
    out
}

/// `meshsim proxy-status`.
pub fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let body = fetch_status(args.control_plane)?;
    if args.json {
        print!("{body}");
        return Ok(());
    }
    let status: Status = serde_json::from_str(&body).context("the control plane's /status")?;
    print!("{}", render_status(&status));
    Ok(())
}

/// `meshsim echo`: answer every request with `<name> <method> <path>`.
pub fn echo(args: &EchoArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = TokioNet
            .bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        eprintln!("{} answering on {}", args.name, args.listen);
        let name: Arc<str> = Arc::from(args.name.as_str());
        let handler = move |req: http::Request<hyper::body::Incoming>| {
            let line = format!("{} {} {}\n", name, req.method(), req.uri().path());
            async move { http::Response::new(mesh_core::body::full(line)) }
        };
        mesh_core::server::serve_http(TokioNet, listener, handler, Arc::new(|_| {})).await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_belongs_to_the_longest_service_its_name_starts_with() {
        let services = ["web", "web-frontend", "db"];
        let of = |n| service_of_node(n, services.iter().copied());
        assert_eq!(of("web-0"), Some("web"));
        assert_eq!(of("web-frontend-3"), Some("web-frontend"));
        assert_eq!(of("db-1"), Some("db"));
        assert_eq!(of("webx-1"), None);
        assert_eq!(of("cache-0"), None);
        assert_eq!(of("web"), None);
    }
}
