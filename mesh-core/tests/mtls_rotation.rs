//! Certificate and root rotation while connections keep opening: no handshake fails.
//!
//! Four callers open fresh mTLS connections to one server back to back (every request is a new
//! handshake, the worst case for rotation) while the certificates change under them:
//! 1. both sides get new leaf certificates from the same CA;
//! 2. root rotation: both trust {old root, new root}; both get leaves from the new root; both
//!    trust the new root only.
//!
//! Every handshake must succeed, and at the end the old root's certificates are refused. The
//! same steps in the wrong order (the server drops the old root before the callers have new
//! certificates) must fail handshakes: the check can fail.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use mesh_core::identity::SpiffeId;
use mesh_core::net::{Network, TokioNet};
use mesh_core::server::serve_inbound;
use mesh_core::testkit;
use mesh_core::tls::{CertAuthority, Dialer, MeshTls, Validity};

fn id(sa: &str) -> SpiffeId {
    SpiffeId::workload("cluster.local", "default", sa).unwrap()
}

fn issue(ca: &CertAuthority, sa: &str) -> (String, String) {
    let i = ca.issue_svid(&id(sa), Validity::ALWAYS).unwrap();
    (i.cert_pem, i.key_pem)
}

fn tls(ca: &CertAuthority, sa: &str) -> MeshTls {
    let (c, k) = issue(ca, sa);
    MeshTls::from_pem(ca.ca_pem(), &c, &k).unwrap()
}

/// One handshake and request on a new connection; whether it got a 200.
async fn once(dialer: &Dialer, addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let Ok(mut s) = dialer.connect(addr, tcp).await else {
        return false;
    };
    if s.write_all(b"GET / HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    buf.starts_with(b"HTTP/1.1 200")
}

struct Run {
    ok: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
}

/// Serve with `server`, run four callers with `client`, apply `steps` (each after 50 ms and at
/// least 8 handshakes of traffic), and return (succeeded, failed).
async fn rotate_under_load(
    port: u16,
    server: MeshTls,
    client: MeshTls,
    steps: Vec<Box<dyn FnOnce() + Send>>,
) -> (u64, u64) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TokioNet.bind(addr).await.unwrap();
    // A sidecar's inbound listener: it takes the current server configuration per connection.
    tokio::spawn(serve_inbound(
        TokioNet,
        listener,
        Some(server),
        Arc::new(|_, _| true),
        Default::default(),
        None,
        testkit::echo,
        Arc::new(|_| {}),
    ));
    let run = Arc::new(Run {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let mut callers = Vec::new();
    for _ in 0..4 {
        let run = run.clone();
        let dialer = Dialer::any(client.clone());
        callers.push(tokio::spawn(async move {
            while !run.stop.load(Ordering::Relaxed) {
                let c = if once(&dialer, addr).await {
                    &run.ok
                } else {
                    &run.failed
                };
                c.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let done = || run.ok.load(Ordering::Relaxed) + run.failed.load(Ordering::Relaxed);
    // After each step (and before the first), at least 50 ms and 8 handshakes, whatever the
    // machine's load: a busy machine must not let a step pass unexercised (bounded at 10 s).
    let settle = || async {
        let from = done();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..2_000 {
            if done() >= from + 8 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    for step in steps {
        settle().await;
        step();
    }
    settle().await;
    run.stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.await.unwrap();
    }
    (
        run.ok.load(Ordering::Relaxed),
        run.failed.load(Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_and_root_rotation_under_load_fail_no_handshake() {
    let old = Arc::new(CertAuthority::new("cluster.local").unwrap());
    let new = Arc::new(CertAuthority::with_validity("cluster.local", Validity::ALWAYS).unwrap());
    let server = tls(&old, "echo");
    let client = tls(&old, "client");
    let both = format!("{}{}", old.ca_pem(), new.ca_pem());
    let (s, c) = (server.clone(), client.clone());
    let (o, n) = (old.clone(), new.clone());
    let steps: Vec<Box<dyn FnOnce() + Send>> = vec![
        {
            let (s, c, o) = (s.clone(), c.clone(), o.clone());
            Box::new(move || {
                let (cert, key) = issue(&o, "echo");
                s.rotate(&cert, &key).unwrap();
                let (cert, key) = issue(&o, "client");
                c.rotate(&cert, &key).unwrap();
            })
        },
        {
            let (s, c, both) = (s.clone(), c.clone(), both.clone());
            Box::new(move || {
                s.set_roots(&both).unwrap();
                c.set_roots(&both).unwrap();
            })
        },
        {
            let (s, c, n) = (s.clone(), c.clone(), n.clone());
            Box::new(move || {
                let (cert, key) = issue(&n, "echo");
                s.rotate(&cert, &key).unwrap();
                let (cert, key) = issue(&n, "client");
                c.rotate(&cert, &key).unwrap();
            })
        },
        {
            let (s, c, n) = (s.clone(), c.clone(), n.clone());
            Box::new(move || {
                s.set_roots(n.ca_pem()).unwrap();
                c.set_roots(n.ca_pem()).unwrap();
            })
        },
    ];
    let (ok, failed) = rotate_under_load(21_600, server.clone(), client, steps).await;
    assert_eq!(failed, 0, "{failed} of {} handshakes failed", ok + failed);
    assert!(ok >= 40, "too little traffic to mean anything: {ok}");

    // After the rotation, a workload still holding an old-root certificate is refused, and
    // one with a new-root certificate is accepted.
    let addr = SocketAddr::from(([127, 0, 0, 1], 21_600));
    let stale = tls(&old, "client");
    stale.set_roots(&both).unwrap();
    assert!(
        !once(&Dialer::any(stale), addr).await,
        "old root still trusted"
    );
    let fresh = tls(&new, "client");
    assert!(once(&Dialer::any(fresh), addr).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_old_root_too_early_fails_handshakes() {
    let old = CertAuthority::new("cluster.local").unwrap();
    let new = CertAuthority::new("cluster.local").unwrap();
    let server = tls(&old, "echo");
    let client = tls(&old, "client");
    let (s, n) = (server.clone(), Arc::new(new));
    let steps: Vec<Box<dyn FnOnce() + Send>> = vec![Box::new(move || {
        let (cert, key) = issue(&n, "echo");
        s.rotate(&cert, &key).unwrap();
        s.set_roots(n.ca_pem()).unwrap();
    })];
    let (ok, failed) = rotate_under_load(21_610, server, client, steps).await;
    assert!(ok > 0, "traffic before the mistake succeeds");
    assert!(failed > 0, "the wrong order must fail handshakes");
}
