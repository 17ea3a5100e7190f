//! An access log whose reader stops reading (a stalled pipe, a full disk) costs log lines, never
//! the data plane: the sidecar keeps serving at full speed, and the lines it could not queue are
//! counted (`access_log_dropped`, `meshsim_access_log_dropped_total`).
//!
//! The old sink wrote under a lock from the request path, so the second request waited forever
//! behind the first's blocked write.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use mesh_core::net::{Network, TokioNet};
use mesh_core::proxy::{Proxy, ProxyConfig};
use mesh_core::registry::Protocol;
use mesh_core::testkit;

/// A reader that never reads: every write blocks (for an hour).
struct Stalled;

impl Write for Stalled {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_secs(3600));
        Ok(0)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_access_log_reader_never_blocks_the_proxy() {
    let queue = 100;
    let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], 21_840 + p));
    let app = TokioNet.bind(a(4)).await.unwrap();
    tokio::spawn(mesh_core::server::serve_http(
        TokioNet,
        app,
        testkit::echo,
        Arc::new(|_| {}),
    ));
    let mut cfg = ProxyConfig::conventional(a(1).ip());
    cfg.outbound_addr = a(0);
    cfg.inbound_addr = a(1);
    cfg.app_addr = a(4);
    cfg.telemetry.access_log = Some(bench::sidecar::access_log_into(Box::new(Stalled), queue).0);
    let proxy = Proxy::new(
        TokioNet,
        cfg,
        testkit::one_service("echo", a(1), Protocol::Http1),
        None,
    );
    let stats = proxy.stats();
    tokio::spawn(proxy.run());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let requests = 300;
    let served = tokio::time::timeout(Duration::from_secs(30), async {
        for _ in 0..requests {
            let seen = testkit::call(TokioNet, a(0), Protocol::Http1, "echo", "/").await;
            assert_eq!(seen.status, StatusCode::OK, "{seen:?}");
        }
    })
    .await;
    assert!(served.is_ok(), "the proxy stalled behind its access log");
    // Each request is two records (this sidecar's outbound and inbound hops). The queue holds
    // `queue`; the writer holds what it took before its first write blocked: it takes lines
    // into its 8 KiB buffer until the queue is momentarily empty or the buffer is full, so at
    // most 8 KiB / 200 bytes (a record is longer) + 1 = 41 lines, and at least none. The rest
    // were dropped, each counted.
    let records = 2 * requests as u64;
    let dropped = stats.snapshot().access_log_dropped;
    let held_by_writer = (records - queue as u64).checked_sub(dropped);
    assert!(
        held_by_writer.is_some_and(|h| h <= 41),
        "{dropped} of {records} dropped"
    );
    let text = mesh_core::telemetry::metrics::exposition(
        &Default::default(),
        &stats.snapshot(),
        &Default::default(),
    );
    assert!(
        text.contains(&format!("meshsim_access_log_dropped_total {dropped}")),
        "{text}"
    );
}

#[test]
fn lines_reach_a_reader_that_reads() {
    let path = std::env::temp_dir().join(format!("meshsim-access-{}.log", std::process::id()));
    let (log, _writer) = bench::sidecar::access_log_to(&path).unwrap();
    let record = mesh_core::telemetry::access::AccessRecord {
        start_us: 1,
        direction: "outbound",
        source_identity: None,
        source_address: "127.0.0.1:1".into(),
        destination_service: "echo".into(),
        destination_identity: None,
        route: "default".into(),
        method: "GET".into(),
        path: "/".into(),
        status: 200,
        duration_us: 5,
        attempts: 1,
        reason: None,
        trace_id: "0".repeat(32),
    };
    for _ in 0..3 {
        assert!((log.0)(&record));
    }
    // The writer flushes once its queue is empty.
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&path).unwrap();
        if text.lines().count() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&path);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains("\"destination_service\":\"echo\""))
    );
}
