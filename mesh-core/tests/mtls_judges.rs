//! Both sides of every mTLS handshake, on real loopback sockets, with every certificate a mesh
//! must refuse: from another CA, expired, not yet valid, of a foreign trust domain, with no
//! SPIFFE ID, with two, a CA certificate used as a leaf, none at all; and on the client side, a
//! valid SVID of the wrong identity for the destination.
//!
//! Each side is judged alone. Server side: a raw TLS client that accepts any server presents the
//! certificate under test to a sidecar's inbound listener; the sidecar must be the one that
//! refuses, with the right alert, counting the reason, and keep serving. Client side: a sidecar
//! calls a raw TLS server presenting the certificate under test and asking for no client
//! certificate; the sidecar must refuse it, answer its caller 503, count the reason, and send
//! the right alert (which the raw server records). An honest certificate gets through both ways,
//! so a refusal is the judge's verdict, not the harness's.
//!
//! Validity is judged on a fixed clock (`TokioWallClock` at T0), so the expiry cases do not
//! depend on today's date.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use mesh_core::hop::Direction;
use mesh_core::identity::SpiffeId;
use mesh_core::net::{Network, TokioNet};
use mesh_core::proxy::{Proxy, ProxyConfig, ProxyStats};
use mesh_core::registry::Protocol;
use mesh_core::server::{ServeEvent, serve_http, serve_https};
use mesh_core::testkit;
use mesh_core::tls::{CertAuthority, Issued, MeshTls, Odd, TlsFailure, TokioWallClock, Validity};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

/// The judges' "now": 2027-01-15.
const T0: u64 = 1_800_000_000;
const HOUR: u64 = 3_600;

fn a(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

fn clock() -> Arc<TokioWallClock> {
    Arc::new(TokioWallClock::starting_at(Duration::from_secs(T0)))
}

fn valid() -> Validity {
    Validity::starting(
        UnixTime::since_unix_epoch(Duration::from_secs(T0 - HOUR)),
        Duration::from_secs(24 * HOUR),
    )
}

fn id(sa: &str) -> SpiffeId {
    SpiffeId::workload("cluster.local", "default", sa).unwrap()
}

fn tls_for(ca: &CertAuthority, sa: &str) -> MeshTls {
    let i = ca.issue_svid(&id(sa), valid()).unwrap();
    MeshTls::with_clock(ca.ca_pem(), &i.cert_pem, &i.key_pem, clock()).unwrap()
}

/// Every certificate a judge must refuse, with the reason it counts and the alert it sends.
fn refusals(
    ca: &CertAuthority,
    sa: &str,
) -> Vec<(&'static str, Issued, &'static str, &'static str)> {
    let rogue = CertAuthority::new("other.example").unwrap();
    let forged = CertAuthority::new("cluster.local").unwrap();
    let window = |from: u64, to: u64| Validity {
        not_before: from,
        not_after: to,
    };
    let me = id(sa).to_string();
    vec![
        (
            "a certificate from another CA",
            rogue.issue_svid(&id(sa), valid()).unwrap(),
            "unknown_ca",
            "unknown_ca",
        ),
        (
            "a certificate from a forged CA with our CA's name",
            forged.issue_svid(&id(sa), valid()).unwrap(),
            "bad_signature",
            "decrypt_error",
        ),
        (
            "an expired certificate",
            ca.issue_svid(&id(sa), window(T0 - 48 * HOUR, T0 - 24 * HOUR))
                .unwrap(),
            "expired",
            "certificate_expired",
        ),
        (
            "a certificate not valid yet",
            ca.issue_svid(&id(sa), window(T0 + HOUR, T0 + 25 * HOUR))
                .unwrap(),
            "not_yet_valid",
            "certificate_expired",
        ),
        (
            "an SVID of a foreign trust domain, signed by our CA",
            ca.issue_svid(
                &SpiffeId::workload("evil.example", "default", sa).unwrap(),
                valid(),
            )
            .unwrap(),
            "foreign_trust_domain",
            "certificate_unknown",
        ),
        (
            "a certificate without a SPIFFE ID",
            ca.issue_odd(Odd::NoSpiffeId).unwrap(),
            "no_spiffe_id",
            "certificate_unknown",
        ),
        (
            "a certificate with two SPIFFE IDs",
            ca.issue_odd(Odd::TwoIds(me.clone(), id("other").to_string()))
                .unwrap(),
            "several_uri_sans",
            "certificate_unknown",
        ),
        (
            "a CA certificate as the leaf",
            ca.issue_odd(Odd::CaAsLeaf(me)).unwrap(),
            "ca_used_as_end_entity",
            "certificate_unknown",
        ),
    ]
}

fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap())
        .collect()
}

fn key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// A sidecar with `tls` whose outbound is `base`, inbound `base + 1`, app (echo) `base + 2`,
/// routing `echo` to `upstream`, which must be `expect`.
async fn sidecar(
    base: u16,
    tls: MeshTls,
    upstream: SocketAddr,
    expect: Option<SpiffeId>,
) -> Arc<ProxyStats> {
    let app = TokioNet.bind(a(base + 2)).await.unwrap();
    tokio::spawn(serve_http(TokioNet, app, testkit::echo, Arc::new(|_| {})));
    let cfg = ProxyConfig {
        outbound_addr: a(base),
        inbound_addr: a(base + 1),
        app_addr: a(base + 2),
        tls: Some(tls),
        request_timeout: Some(Duration::from_secs(2)),
        ..ProxyConfig::conventional(a(0).ip())
    };
    let reg = testkit::one_service_as("echo", upstream, Protocol::Http1, expect);
    let p = Proxy::new(TokioNet, cfg, reg, None);
    let stats = p.stats();
    tokio::spawn(async move { p.run().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    stats
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: never held within 3 s");
}

/// One request over TLS presenting `present` (or nothing): the response, or the alert the
/// server refused with (`Err("alert:<name>")`) or another failure.
async fn raw_get(addr: SocketAddr, present: Option<&Issued>) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let builder = common::trusting_any_server();
    let mut cfg = match present {
        Some(i) => builder
            .with_client_auth_cert(chain(&i.cert_pem), key(&i.key_pem))
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(mesh_core::tls::server_name(), tcp)
            .await?;
        tls.write_all(b"GET /raw HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    match tokio::time::timeout(Duration::from_secs(3), exchange).await {
        Err(_) => Err("no answer within 3 s".into()),
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(match TlsFailure::of(&e) {
            TlsFailure::PeerRefused(alert) => format!("alert:{alert}"),
            other => format!("{other:?}: {e}"),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_every_client_certificate_it_must() {
    let ca = CertAuthority::new("cluster.local").unwrap();
    let base = 21_500;
    let stats = sidecar(base, tls_for(&ca, "echo"), a(1), None).await;
    let inbound = a(base + 1);
    let count = |r: &str| {
        stats
            .snapshot()
            .direction(Direction::Inbound)
            .tls_failures
            .get(r)
            .copied()
            .unwrap_or(0)
    };

    let honest = ca.issue_svid(&id("client"), valid()).unwrap();
    let ok = raw_get(inbound, Some(&honest))
        .await
        .expect("honest client");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");

    let mut cases = refusals(&ca, "client");
    cases.push((
        "no client certificate",
        honest.clone(),
        "no_certificate",
        "certificate_required",
    ));
    for (n, (what, cert, reason, alert)) in cases.into_iter().enumerate() {
        let present = (reason != "no_certificate").then_some(&cert);
        let err = raw_get(inbound, present).await.expect_err(what);
        assert_eq!(err, format!("alert:{alert}"), "{what}");

        eventually(what, || {
            stats
                .snapshot()
                .direction(Direction::Inbound)
                .tls_handshake_errors
                == n as u64 + 1
        })
        .await;
        assert_eq!(
            count(reason),
            1,
            "{what}: {:?}",
            stats.snapshot().direction(Direction::Inbound).tls_failures
        );
    }
    // Nothing refused reached the app, and the sidecar still serves.
    assert_eq!(stats.snapshot().direction(Direction::Inbound).requests, 1);
    let ok = raw_get(inbound, Some(&honest))
        .await
        .expect("still serving");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

/// A TLS server on `addr` presenting `cert`, asking for no client certificate, serving echo;
/// the handshake failures it sees (the sidecar's alerts) are recorded.
async fn raw_server(addr: SocketAddr, cert: &Issued) -> Arc<Mutex<Vec<TlsFailure>>> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain(&cert.cert_pem), key(&cert.key_pem))
    .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let seen: Arc<Mutex<Vec<TlsFailure>>> = Arc::default();
    let record = seen.clone();
    let listener = TokioNet.bind(addr).await.unwrap();
    tokio::spawn(serve_https(
        TokioNet,
        listener,
        Arc::new(cfg),
        testkit::echo,
        Arc::new(move |e| {
            if let ServeEvent::TlsHandshakeError(f) = e {
                record.lock().unwrap().push(f);
            }
        }),
    ));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_refuses_every_server_certificate_it_must() {
    let ca = CertAuthority::new("cluster.local").unwrap();
    let mut cases = refusals(&ca, "echo");
    cases.push((
        "a valid SVID of another workload",
        ca.issue_svid(&id("impostor"), valid()).unwrap(),
        "wrong_identity",
        "certificate_unknown",
    ));
    for (n, (what, cert, reason, alert)) in cases.into_iter().enumerate() {
        let base = 21_520 + 5 * n as u16;
        let upstream = a(base + 4);
        let seen = raw_server(upstream, &cert).await;
        let stats = sidecar(base, tls_for(&ca, "client"), upstream, Some(id("echo"))).await;
        let resp = testkit::call(TokioNet, a(base), Protocol::Http1, "echo", "/").await;
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE, "{what}");
        assert_eq!(resp.mesh_error.as_deref(), Some("connect_failed"), "{what}");
        let out = stats.snapshot().direction(Direction::Outbound).clone();
        assert!(out.tls_handshake_errors >= 1, "{what}");
        {
            assert_eq!(
                out.tls_failures.keys().collect::<Vec<_>>(),
                vec![reason],
                "{what}"
            );
        }
        {
            eventually(what, || !seen.lock().unwrap().is_empty()).await;
            assert_eq!(
                seen.lock().unwrap()[0],
                TlsFailure::PeerRefused(alert.into()),
                "{what}"
            );
        }
    }

    // Controls: the honest server gets through; the impostor gets through when the registry
    // does not say who the destination must be (trust domain checks only).
    for (n, (sa, expect)) in [("echo", Some(id("echo"))), ("impostor", None)]
        .into_iter()
        .enumerate()
    {
        let base = 21_580 + 5 * n as u16;
        let cert = ca.issue_svid(&id(sa), valid()).unwrap();
        raw_server(a(base + 4), &cert).await;
        let stats = sidecar(base, tls_for(&ca, "client"), a(base + 4), expect).await;
        let resp = testkit::call(TokioNet, a(base), Protocol::Http1, "echo", "/").await;
        assert_eq!(resp.status, StatusCode::OK, "{sa}: {resp:?}");
        assert_eq!(
            stats
                .snapshot()
                .direction(Direction::Outbound)
                .tls_handshake_errors,
            0
        );
    }
}
