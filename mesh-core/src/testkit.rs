//! Test support: a two-pod mesh (client sidecar → server sidecar → echo app) written once against
//! the [`Network`] boundary, so the same code is exercised on real sockets (this crate's tests) and
//! in simulation (the `sim` crate's tests). Not for production use.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::{self, Body};
use crate::client::HttpClients;
use crate::net::Network;
use crate::proxy::{Proxy, ProxyConfig, ProxyStats};
use crate::registry::{Endpoint, Protocol, Registry, ServiceEntry};
use crate::server::serve_http;

/// An app that answers with what it saw: `<method> <path> <version> host=<host> hop=<x-hop present>`.
/// `/slow` waits 5 s; `/reset` drops the connection without answering.
pub async fn echo(req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let seen = format!(
        "{} {} {:?} host={} hop={}",
        req.method(),
        path,
        req.version(),
        req.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("-"),
        req.headers().contains_key("x-hop")
    );
    let mut resp = Response::new(body::full(seen));
    resp.headers_mut()
        .insert("connection", http::HeaderValue::from_static("x-resp-hop"));
    resp.headers_mut()
        .insert("x-resp-hop", http::HeaderValue::from_static("1"));
    resp
}

/// Addresses of the two-pod mesh.
#[derive(Clone, Debug)]
pub struct TwoPods {
    /// Client sidecar's outbound listener (where a client sends requests for service `echo`).
    pub client_outbound: SocketAddr,
    /// Client sidecar's (unused) inbound listener.
    pub client_inbound: SocketAddr,
    /// Server sidecar's inbound listener.
    pub server_inbound: SocketAddr,
    /// Server sidecar's (unused) outbound listener.
    pub server_outbound: SocketAddr,
    /// The echo app.
    pub app: SocketAddr,
    /// Protocol between the sidecars.
    pub mesh_protocol: Protocol,
    /// Request timeout of the sidecars.
    pub request_timeout: Duration,
    /// Where the registry says `echo` is (normally `server_inbound`).
    pub endpoint: SocketAddr,
    /// Whether to start the app (false: the server sidecar finds nobody at `app`).
    pub start_app: bool,
}

impl TwoPods {
    /// The five listeners on 127.0.0.1 ports `base`..`base + 4` (client outbound, client
    /// inbound, server inbound, server outbound, app), the registry pointing at the server's
    /// inbound, the app started.
    pub fn loopback(base: u16, mesh_protocol: Protocol, request_timeout: Duration) -> Self {
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], base + p));
        Self {
            client_outbound: a(0),
            client_inbound: a(1),
            server_inbound: a(2),
            server_outbound: a(3),
            app: a(4),
            mesh_protocol,
            request_timeout,
            endpoint: a(2),
            start_app: true,
        }
    }
}

/// Start the echo app and the server sidecar on `server`, the client sidecar on `client`.
/// Returns the two sidecars' counters (client, server).
pub async fn start<N: Network>(
    client: N,
    server: N,
    pods: &TwoPods,
) -> (Arc<ProxyStats>, Arc<ProxyStats>) {
    start_within(client, server, pods, crate::limits::Limits::default()).await
}

/// As [`start`], both sidecars within `limits`.
pub async fn start_within<N: Network>(
    client: N,
    server: N,
    pods: &TwoPods,
    limits: crate::limits::Limits,
) -> (Arc<ProxyStats>, Arc<ProxyStats>) {
    if pods.start_app {
        let app_listener = server.bind(pods.app).await.expect("bind app");
        server.spawn(serve_http(
            server.clone(),
            app_listener,
            echo,
            Arc::new(|_| {}),
        ));
    }
    let mut registry = Registry::new();
    registry.insert(
        "echo",
        ServiceEntry {
            protocol: pods.mesh_protocol,
            endpoints: vec![Endpoint {
                addr: pods.endpoint,
                pod: "echo-0".into(),
                zone: "a".into(),
                subset: "v1".into(),
                identity: None,
            }],
        },
    );
    let registry = crate::config::fixed(registry, &crate::policy::Policies::default());
    let cfg = |outbound, inbound| ProxyConfig {
        authorization: Vec::new(),
        custom_authorizer: None,
        identity_by_address: false,
        network_policies: Vec::new(),
        admin_addr: None,
        telemetry: Default::default(),
        outbound_addr: outbound,
        inbound_addr: inbound,
        app_addr: pods.app,
        app_protocol: Protocol::Http1,
        connect_timeout: Duration::from_secs(1),
        request_timeout: Some(pods.request_timeout),
        seed: 1,
        inbound_rate_limit: None,
        inbound_route_limits: Vec::new(),
        stats_epoch: None,
        tls: None,
        limits: limits.clone(),
    };
    let server_proxy = Proxy::new(
        server.clone(),
        cfg(pods.server_outbound, pods.server_inbound),
        registry.clone(),
        None,
    );
    let client_proxy = Proxy::new(
        client.clone(),
        cfg(pods.client_outbound, pods.client_inbound),
        registry,
        None,
    );
    let stats = (client_proxy.stats(), server_proxy.stats());
    server.spawn(async move {
        let _ = server_proxy.run().await;
    });
    client.spawn(async move {
        let _ = client_proxy.run().await;
    });
    stats
}

/// What a call saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Status.
    pub status: StatusCode,
    /// `x-mesh-error`, if any.
    pub mesh_error: Option<String>,
    /// Whether the response still carried the app's hop-by-hop header.
    pub resp_hop: bool,
    /// Body.
    pub body: String,
}

/// Send `GET <path>` for `service` to `outbound` on `protocol`, with a hop-by-hop header.
pub async fn call<N: Network>(
    net: N,
    outbound: SocketAddr,
    protocol: Protocol,
    service: &str,
    path: &str,
) -> Seen {
    let clients = HttpClients::new(net, Duration::from_secs(1));
    let req = Request::builder()
        .uri(format!("http://{outbound}{path}"))
        .version(protocol.version())
        .header(http::header::HOST, service)
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .body(body::empty())
        .expect("valid request");
    let resp = clients
        .get(protocol)
        .request(req)
        .await
        .expect("the proxy answers");
    let status = resp.status();
    let mesh_error = resp
        .headers()
        .get(crate::proxy::ERROR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let resp_hop = resp.headers().contains_key("x-resp-hop");
    let bytes: Bytes = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Seen {
        status,
        mesh_error,
        resp_hop,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A fixed configuration of one service with one endpoint (pod `<name>-0`) and no policy.
pub fn one_service(name: &str, addr: SocketAddr, protocol: Protocol) -> crate::config::ConfigRx {
    one_service_as(name, addr, protocol, None)
}

/// The same, with the identity the endpoint must prove over mTLS.
pub fn one_service_as(
    name: &str,
    addr: SocketAddr,
    protocol: Protocol,
    identity: Option<crate::identity::SpiffeId>,
) -> crate::config::ConfigRx {
    let mut registry = Registry::new();
    registry.insert(
        name,
        ServiceEntry {
            protocol,
            endpoints: vec![Endpoint {
                addr,
                pod: format!("{name}-0"),
                zone: "a".into(),
                subset: String::new(),
                identity,
            }],
        },
    );
    crate::config::fixed(registry, &crate::policy::Policies::default())
}
