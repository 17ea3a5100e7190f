//! Mutual TLS between two sidecars on real loopback sockets: the request crosses with both sides
//! authenticated; a peer without a certificate from the mesh CA is refused at the handshake,
//! counted, and the proxy keeps serving.
//!
//! Both sides of the handshake are judged separately. A client that distrusts the server aborts
//! before the server ever looks at the client's certificate, so the server's checks are tested
//! with a raw TLS client that accepts any server and presents exactly the certificate under test:
//! one from another CA, none, an empty chain, one without a SPIFFE ID. The same client with an
//! honest certificate gets through, so a refusal is the server's judgement, not the harness's.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use mesh_core::authz::l4::{L4Rule, NetworkPolicy};
use mesh_core::authz::{Action, Source};
use mesh_core::error::ProxyError;
use mesh_core::hop::Direction;
use mesh_core::net::{Network, TokioNet};
use mesh_core::proxy::{Proxy, ProxyConfig, ProxyStats};
use mesh_core::registry::Protocol;
use mesh_core::server::serve_http;
use mesh_core::testkit;
use mesh_core::tls::{CertAuthority, MeshTls};

fn a(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

/// Access-log lines of both sidecars.
type Lines = Arc<std::sync::Mutex<Vec<String>>>;

/// Client sidecar on base, server sidecar's inbound on base+2, app on base+4.
async fn mesh(
    base: u16,
    client_tls: MeshTls,
    server_tls: MeshTls,
    protocol: Protocol,
) -> (Arc<ProxyStats>, Arc<ProxyStats>, Lines) {
    mesh_with(base, client_tls, server_tls, protocol, Vec::new()).await
}

/// As [`mesh`], the server enforcing connection policies `l4`.
async fn mesh_with(
    base: u16,
    client_tls: MeshTls,
    server_tls: MeshTls,
    protocol: Protocol,
    l4: Vec<NetworkPolicy>,
) -> (Arc<ProxyStats>, Arc<ProxyStats>, Lines) {
    let lines: Lines = Arc::default();
    let sink = {
        let lines = lines.clone();
        mesh_core::telemetry::access::AccessLog(Arc::new(move |r| {
            lines.lock().unwrap().push(r.to_json());
            true
        }))
    };
    let app = TokioNet.bind(a(base + 4)).await.unwrap();
    tokio::spawn(serve_http(TokioNet, app, testkit::echo, Arc::new(|_| {})));
    let reg = testkit::one_service("echo", a(base + 2), protocol);
    let cfg = |out: u16, inb: u16, tls: MeshTls, l4: Vec<NetworkPolicy>| ProxyConfig {
        authorization: Vec::new(),
        custom_authorizer: None,
        identity_by_address: false,
        network_policies: l4,
        limits: Default::default(),
        admin_addr: None,
        telemetry: mesh_core::telemetry::TelemetryConfig {
            access_log: Some(sink.clone()),
            ..Default::default()
        },
        outbound_addr: a(out),
        inbound_addr: a(inb),
        app_addr: a(base + 4),
        app_protocol: Protocol::Http1,
        connect_timeout: Duration::from_secs(1),
        request_timeout: Some(Duration::from_secs(2)),
        seed: 1,
        inbound_rate_limit: None,
        inbound_route_limits: Vec::new(),
        stats_epoch: None,
        tls: Some(tls),
    };
    let client = Proxy::new(
        TokioNet,
        cfg(base, base + 1, client_tls, Vec::new()),
        reg.clone(),
        None,
    );
    let server = Proxy::new(TokioNet, cfg(base + 3, base + 2, server_tls, l4), reg, None);
    let stats = (client.stats(), server.stats(), lines);
    tokio::spawn(async move { client.run().await });
    tokio::spawn(async move { server.run().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cross_mtls_on_both_protocols() {
    let ca = CertAuthority::new("cluster.local").unwrap();
    for (i, protocol) in [Protocol::Http1, Protocol::Http2].into_iter().enumerate() {
        let base = 21_400 + 10 * i as u16;
        let (client, server, lines) = mesh(
            base,
            ca.mesh_tls("client").unwrap(),
            ca.mesh_tls("echo").unwrap(),
            protocol,
        )
        .await;
        for _ in 0..3 {
            let seen = testkit::call(TokioNet, a(base), Protocol::Http1, "echo", "/tls").await;
            assert_eq!(seen.status, StatusCode::OK, "{seen:?}");
            assert!(
                seen.body.starts_with("GET /tls HTTP/1.1 host=echo"),
                "{}",
                seen.body
            );
        }
        assert_eq!(
            client.snapshot().direction(Direction::Outbound).responses[2],
            3
        );
        assert_eq!(
            server.snapshot().direction(Direction::Inbound).responses[2],
            3
        );
        assert_eq!(
            server
                .snapshot()
                .direction(Direction::Inbound)
                .tls_handshake_errors,
            0
        );
        // The server's access log names the caller by the SPIFFE ID in its client certificate.
        let inbound: Vec<serde_json::Value> = lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|r: &serde_json::Value| r["direction"] == "inbound")
            .collect();
        assert_eq!(inbound.len(), 3);
        for r in inbound {
            assert_eq!(
                r["source_identity"], "spiffe://cluster.local/ns/default/sa/client",
                "{r}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_the_trust_domain_is_refused_and_counted() {
    let ca = CertAuthority::new("cluster.local").unwrap();
    let rogue = CertAuthority::new("cluster.local").unwrap();
    let base = 21_440;
    let (client, server, _) = mesh(
        base,
        rogue.mesh_tls("client").unwrap(),
        ca.mesh_tls("echo").unwrap(),
        Protocol::Http1,
    )
    .await;
    let seen = testkit::call(TokioNet, a(base), Protocol::Http1, "echo", "/").await;
    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.mesh_error.as_deref(), Some("connect_failed"));
    assert!(
        client
            .snapshot()
            .direction(Direction::Outbound)
            .error(ProxyError::ConnectFailed)
            >= 1
    );
    // The caller gives up first (it distrusts the server's CA); the server counts its side of
    // the failed handshake when the alert reaches it.
    eventually(|| {
        server
            .snapshot()
            .direction(Direction::Inbound)
            .tls_handshake_errors
            >= 1
    })
    .await;

    // Plain HTTP to the mTLS port: refused at the handshake too, and the server keeps going.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(a(base + 2)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: echo\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    assert!(
        !buf.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    eventually(|| {
        server
            .snapshot()
            .direction(Direction::Inbound)
            .tls_handshake_errors
            >= 2
    })
    .await;
    assert_eq!(server.snapshot().direction(Direction::Inbound).requests, 0);
}

/// A connection policy (Cilium's kind) admits only `web`, on the app's port, by the identity its
/// certificate proves: web's calls pass; another workload of the same CA is refused when it
/// connects, before any request is read, and counted by policy; the proxy keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_policy_admits_by_identity_and_port() {
    let ca = CertAuthority::new("cluster.local").unwrap();
    let only_web = |port: u16| {
        vec![NetworkPolicy {
            name: "web-only".into(),
            action: Action::Allow,
            rules: vec![L4Rule {
                from: vec![Source {
                    principals: vec!["cluster.local/ns/default/sa/web".into()],
                    ..Source::default()
                }],
                ports: vec![port],
                not_ports: vec![],
            }],
        }]
    };
    // (caller, port the policy names: the app's, base + 4, or another), admitted?
    let cases = [("web", 4, true), ("reports", 4, false), ("web", 5, false)];
    for (i, (caller, port, admitted)) in cases.into_iter().enumerate() {
        let base = 21_500 + 10 * i as u16;
        let (_, server, _) = mesh_with(
            base,
            ca.mesh_tls(caller).unwrap(),
            ca.mesh_tls("echo").unwrap(),
            Protocol::Http2,
            only_web(base + port),
        )
        .await;
        for _ in 0..2 {
            let seen = testkit::call(TokioNet, a(base), Protocol::Http1, "echo", "/").await;
            assert_eq!(
                seen.status == StatusCode::OK,
                admitted,
                "{caller}: {seen:?}"
            );
        }
        let c = server.snapshot();
        let denied: u64 = c.connections_denied.values().sum();
        let inbound = c.direction(Direction::Inbound);
        if admitted {
            assert_eq!((denied, inbound.requests), (0, 2), "{caller}");
        } else {
            // Refused at connection time: no request was ever read.
            assert!(denied >= 2, "{caller}: {:?}", c.connections_denied);
            assert_eq!(inbound.requests, 0, "{caller}");
            assert_eq!(
                c.connections_denied.keys().collect::<Vec<_>>(),
                [&("no_allow_match".to_string(), "-".to_string())]
            );
            let text = mesh_core::telemetry::metrics::exposition(
                &Default::default(),
                &c,
                &Default::default(),
            );
            assert!(
                text.contains(
                    "meshsim_inbound_connections_denied_total{policy=\"no_allow_match\",rule=\"-\"}"
                ),
                "{text}"
            );
        }
    }
}

/// Wait up to 2 s for `cond`, failing the test if it never holds.
async fn eventually(cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never held within 2 s");
}

/// Raw TLS clients for the server-side tests: they accept any server certificate, so the
/// handshake's outcome depends only on what the server makes of the client.
mod raw {
    use std::sync::Arc;

    use rustls::ClientConfig;
    use rustls::SignatureScheme;
    use rustls::client::ResolvesClientCert;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::sign::CertifiedKey;

    /// Presents a key with an empty certificate chain.
    #[derive(Debug)]
    struct EmptyChain(Arc<CertifiedKey>);

    impl ResolvesClientCert for EmptyChain {
        fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
        fn has_certs(&self) -> bool {
            true
        }
    }

    /// What the client presents.
    pub enum Present<'a> {
        /// This certificate and key (PEM).
        Cert(&'a str, &'a str),
        /// No certificate at all.
        Nothing,
        /// A key with a zero-length chain.
        EmptyChain(&'a str),
    }

    pub fn config(present: Present<'_>) -> Arc<ClientConfig> {
        let builder = super::common::trusting_any_server();
        let mut cfg = match present {
            Present::Cert(cert, key) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .map(|c| c.unwrap())
                        .collect(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            Present::Nothing => builder.with_no_client_auth(),
            Present::EmptyChain(key) => {
                let key = rustls::crypto::ring::sign::any_supported_type(
                    &PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap();
                builder.with_client_cert_resolver(Arc::new(EmptyChain(Arc::new(
                    CertifiedKey::new(Vec::new(), key),
                ))))
            }
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

/// One HTTP/1.1 request over TLS to `addr` with `cfg`: the response's first bytes, or the error
/// that ended the exchange (handshake or first read).
async fn raw_tls_get(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let mut tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(mesh_core::tls::server_name(), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tls.write_all(b"GET /raw HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| "no answer within 3 s".to_string())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_client_certificates_it_must_not_accept() {
    use raw::Present;
    let ca = CertAuthority::new("cluster.local").unwrap();
    let rogue = CertAuthority::new("cluster.local").unwrap();
    let base = 21_460;
    let (_, server, _) = mesh(
        base,
        ca.mesh_tls("client").unwrap(),
        ca.mesh_tls("echo").unwrap(),
        Protocol::Http1,
    )
    .await;
    let inbound = a(base + 2);

    // Control: the same raw client with an honest certificate gets the app's answer.
    let honest = ca.issue("client").unwrap();
    let ok = raw_tls_get(
        inbound,
        raw::config(Present::Cert(&honest.cert_pem, &honest.key_pem)),
    )
    .await
    .expect("an honest client certificate is accepted");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert_eq!(server.snapshot().direction(Direction::Inbound).requests, 1);
    assert_eq!(
        server
            .snapshot()
            .direction(Direction::Inbound)
            .tls_handshake_errors,
        0
    );

    let from_rogue = rogue.issue("client").unwrap();
    let no_spiffe = ca.issue_odd(mesh_core::tls::Odd::NoSpiffeId).unwrap();
    let cases: [(&str, Present<'_>); 4] = [
        (
            "a certificate from another CA",
            Present::Cert(&from_rogue.cert_pem, &from_rogue.key_pem),
        ),
        ("no client certificate", Present::Nothing),
        (
            "an empty certificate chain",
            Present::EmptyChain(&honest.key_pem),
        ),
        (
            "a CA-signed certificate without a SPIFFE ID",
            Present::Cert(&no_spiffe.cert_pem, &no_spiffe.key_pem),
        ),
    ];
    for (n, (what, present)) in cases.into_iter().enumerate() {
        let got = raw_tls_get(inbound, raw::config(present)).await;
        // TLS 1.3: the client finishes its flight before the server judges it, so the refusal
        // arrives as the server's alert on the client's first read.
        let err = got.expect_err(what);
        assert!(
            err.contains("alert") || err.contains("reset") || err.contains("eof"),
            "{what}: {err}"
        );
        eventually(|| {
            server
                .snapshot()
                .direction(Direction::Inbound)
                .tls_handshake_errors
                == n as u64 + 1
        })
        .await;
        assert_eq!(
            server.snapshot().direction(Direction::Inbound).requests,
            1,
            "{what} reached the app"
        );
    }
}

/// PeerAuthentication modes, changed while the sidecar serves, as a migration does: strict
/// refuses a plaintext caller (counted as `plaintext`) and serves the mTLS one; permissive
/// serves both, the plaintext one without an identity; disabled serves only plaintext, and
/// connections accepted before a change drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_decide_what_the_inbound_listener_accepts() {
    let ca = CertAuthority::new("cluster.local").unwrap();
    let base = 21_480;
    let server_tls = ca.mesh_tls("echo").unwrap();
    let (client, server, lines) = mesh(
        base,
        ca.mesh_tls("client").unwrap(),
        server_tls.clone(),
        Protocol::Http1,
    )
    .await;
    // A caller without a sidecar, straight to the inbound port (iptables would send it there):
    // the status line it gets, if any.
    let plaintext = || async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(a(base + 2)).await.unwrap();
        s.write_all(b"GET /plain HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let meshed = || testkit::call(TokioNet, a(base), Protocol::Http1, "echo", "/mtls");
    let refused = |s: &ProxyStats| {
        s.snapshot()
            .direction(Direction::Inbound)
            .tls_failures
            .get("plaintext")
            .copied()
            .unwrap_or(0)
    };

    assert_eq!(server_tls.mode(), mesh_core::tls::Mode::Strict);
    assert_eq!(
        plaintext().await,
        "",
        "strict answers a plaintext caller nothing"
    );
    assert_eq!(refused(&server), 1);
    assert_eq!(meshed().await.status, StatusCode::OK);

    server_tls.set_mode(mesh_core::tls::Mode::Permissive);
    assert_eq!(plaintext().await, "HTTP/1.1 200 OK");
    assert_eq!(meshed().await.status, StatusCode::OK);
    assert_eq!(refused(&server), 1, "nothing more refused");
    // The inbound access log: the mTLS caller has its identity, the plaintext one none.
    let ids: Vec<(String, Option<String>)> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["direction"] == "inbound")
        .map(|v| {
            (
                v["path"].as_str().unwrap_or_default().to_string(),
                v["source_identity"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert!(ids.contains(&("/plain".into(), None)), "{ids:?}");
    assert!(
        ids.contains(&(
            "/mtls".into(),
            Some("spiffe://cluster.local/ns/default/sa/client".into())
        )),
        "{ids:?}"
    );

    server_tls.set_mode(mesh_core::tls::Mode::Disabled);
    assert_eq!(plaintext().await, "HTTP/1.1 200 OK");
    // Connections accepted under the old mode drain: the client sidecar's pooled mTLS
    // connection closes, and its next one is refused.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = meshed().await;
    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE, "{seen:?}");
    assert_eq!(
        client
            .snapshot()
            .direction(Direction::Outbound)
            .error(ProxyError::ConnectFailed),
        1
    );
    // A new TLS connection is not answered as TLS.
    let honest = ca.issue("client").unwrap();
    use rustls::pki_types::pem::PemObject;
    let cfg = common::trusting_any_server()
        .with_client_auth_cert(
            rustls::pki_types::CertificateDer::pem_slice_iter(honest.cert_pem.as_bytes())
                .map(|c| c.unwrap())
                .collect(),
            rustls::pki_types::PrivateKeyDer::from_pem_slice(honest.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(a(base + 2)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("echo").unwrap();
    let handshake = tokio::time::timeout(
        Duration::from_secs(2),
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await
    .expect("answered, not hung");
    assert!(
        handshake.is_err(),
        "a TLS handshake completed in disabled mode"
    );
}
