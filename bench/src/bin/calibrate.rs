//! First-cut calibration of the simulator's per-hop proxy cost, on real loopback sockets.
//!
//! Sends requests one at a time (closed loop, one keep-alive connection per leg) to an echo app
//! directly, and through two meshsim sidecars (client sidecar → server sidecar → app), for each
//! mesh protocol. The per-hop cost at percentile q is (two-hop latency at q − direct latency at q) / 2.
//! Percentile differences are only an estimate of the cost distribution (they are not the
//! distribution of differences); the real-socket bench (issue #4) replaces this with an open-loop,
//! coordinated-omission-corrected measurement.
//!
//! ```sh
//! cargo run --release -p bench --bin calibrate > scenarios/calibration/default.toml
//! ```
#![allow(clippy::disallowed_methods)] // real sockets and the wall clock are what this measures

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use mesh_core::body;
use mesh_core::client::HttpClients;
use mesh_core::net::{Network, TokioNet};
use mesh_core::proxy::{Proxy, ProxyConfig};
use mesh_core::registry::{Endpoint, Protocol, Registry, ServiceEntry};
use mesh_core::server::serve_http;

const WARMUP: usize = 2_000;
const REQUESTS: usize = 20_000;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn measure(target: SocketAddr, host: &str) -> Histogram<u64> {
    let clients = HttpClients::new(TokioNet, Duration::from_secs(1));
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    for i in 0..WARMUP + REQUESTS {
        let req = http::Request::builder()
            .uri(format!("http://{target}/"))
            .header("host", host)
            .body(body::empty())
            .expect("valid");
        let t = Instant::now();
        let resp = clients
            .get(Protocol::Http1)
            .request(req)
            .await
            .expect("answered");
        assert!(resp.status().is_success(), "{}", resp.status());
        resp.into_body().collect().await.expect("body");
        if i >= WARMUP {
            let _ = h.record(t.elapsed().as_micros().max(1) as u64);
        }
    }
    h
}

async fn start_mesh(base: u16, protocol: Protocol) -> SocketAddr {
    let mut reg = Registry::new();
    reg.insert(
        "echo",
        ServiceEntry {
            protocol,
            endpoints: vec![Endpoint {
                addr: addr(base + 2),
                pod: "echo-0".into(),
                zone: "a".into(),
                subset: "v1".into(),
                identity: None,
            }],
        },
    );
    let reg = mesh_core::config::fixed(reg, &mesh_core::policy::Policies::default());
    let cfg = |out: u16, inb: u16| ProxyConfig {
        authorization: Vec::new(),
        custom_authorizer: None,
        identity_by_address: false,
        network_policies: Vec::new(),
        limits: Default::default(),
        admin_addr: None,
        telemetry: Default::default(),
        outbound_addr: addr(out),
        inbound_addr: addr(inb),
        app_addr: addr(22_009),
        app_protocol: Protocol::Http1,
        connect_timeout: Duration::from_secs(1),
        request_timeout: None,
        seed: 1,
        inbound_rate_limit: None,
        inbound_route_limits: Vec::new(),
        stats_epoch: None,
        tls: None,
    };
    for (out, inb) in [(base, base + 1), (base + 3, base + 2)] {
        let p = Proxy::new(TokioNet, cfg(out, inb), reg.clone(), None);
        tokio::spawn(async move {
            let _ = p.run().await;
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    addr(base)
}

fn q(h: &Histogram<u64>, q: f64) -> u64 {
    h.value_at_quantile(q)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let app = addr(22_009);
    let l = TokioNet.bind(app).await.expect("bind app");
    tokio::spawn(serve_http(
        TokioNet,
        l,
        mesh_core::testkit::echo,
        Arc::new(|_| {}),
    ));
    let direct = measure(app, "echo").await;
    let mut out = String::new();
    let host = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    for (i, protocol) in [Protocol::Http1, Protocol::Http2].into_iter().enumerate() {
        let entry = start_mesh(22_000 + 20 * (i as u16 + 1), protocol).await;
        // The mesh's app_addr is the shared echo app on 22_009.
        let meshed = measure(entry, "echo").await;
        let hop = |quant: f64| (q(&meshed, quant).saturating_sub(q(&direct, quant))) as f64 / 2.0;
        let name = if protocol == Protocol::Http1 {
            "http1"
        } else {
            "http2"
        };
        out.push_str(&format!(
            "\n# direct P50 {} us, P99 {} us; two sidecars P50 {} us, P99 {} us ({REQUESTS} sequential requests)\n[hop.{name}]\np50_us = {:.1}\np90_us = {:.1}\np99_us = {:.1}\np999_us = {:.1}\n",
            q(&direct, 0.5), q(&direct, 0.99), q(&meshed, 0.5), q(&meshed, 0.99),
            hop(0.5), hop(0.9).max(hop(0.5)), hop(0.99).max(hop(0.9)).max(hop(0.5)), hop(0.999).max(hop(0.99)).max(hop(0.9)).max(hop(0.5)),
        ));
    }
    println!(
        "# Per-hop processing cost of one meshsim sidecar, in microseconds of added round-trip latency."
    );
    println!(
        "# The simulator charges one draw per sidecar a request passes (client sidecar, server sidecar)."
    );
    println!(
        "# Regenerate: cargo run --release -p bench --bin calibrate > scenarios/calibration/default.toml"
    );
    println!(
        "source = \"cargo run --release -p bench --bin calibrate: closed-loop loopback, (two-sidecar minus direct)/2 per percentile, {REQUESTS} requests per leg, on {host}; closed loop; the open-loop bench is meshsim bench\""
    );
    print!("{out}");
}
