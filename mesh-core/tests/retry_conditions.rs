//! Retry conditions that only an HTTP/2 upstream can produce, on real loopback sockets: a stream
//! the upstream refuses (`REFUSED_STREAM`) and a trailers-only gRPC error (`grpc-status: 14`).
//! The upstream is a bare `h2` server so the test controls every frame. Also here: bodies too
//! large to buffer for a replay are streamed and never retried.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::{Request, StatusCode};
use mesh_core::body;
use mesh_core::client::HttpClients;
use mesh_core::error::ProxyError;
use mesh_core::net::TokioNet;
use mesh_core::policy::{Policies, RetryOn, RetryPolicy, ServicePolicy};
use mesh_core::proxy::AttemptOutcome;
use mesh_core::proxy::{ERROR_HEADER, Proxy, ProxyConfig, ProxyStats};
use mesh_core::registry::{Endpoint, Protocol, Registry, ServiceEntry};

/// How the upstream answers the first `bad` requests; later ones get 200 `grpc-status: 0`.
#[derive(Clone, Copy)]
enum Bad {
    Refuse,
    /// Reset the stream with `INTERNAL_ERROR` after reading it: the upstream may have acted.
    Reset,
    GrpcUnavailable,
}

async fn upstream(addr: SocketAddr, bad: Bad, first_bad: u32) -> Arc<AtomicU32> {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let seen = Arc::new(AtomicU32::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(sock).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    if n < first_bad && matches!(bad, Bad::Refuse) {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    if n < first_bad && matches!(bad, Bad::Reset) {
                        respond.send_reset(h2::Reason::INTERNAL_ERROR);
                        continue;
                    }
                    let code = if n < first_bad { "14" } else { "0" };
                    let resp = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc")
                        .header("grpc-status", code)
                        .body(())
                        .unwrap();
                    let _ = respond.send_response(resp, true);
                }
            });
        }
    });
    seen
}

async fn sidecar(base: u16, retry_on: RetryOn) -> (SocketAddr, Arc<ProxyStats>) {
    let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], base + p));
    let mut registry = Registry::new();
    registry.insert(
        "grpc",
        ServiceEntry {
            protocol: Protocol::Http2,
            endpoints: vec![Endpoint {
                addr: a(9),
                pod: "grpc-0".into(),
                zone: "a".into(),
                subset: String::new(),
                identity: None,
            }],
        },
    );
    let mut policies = Policies::default();
    policies.services.insert(
        "grpc".into(),
        ServicePolicy {
            retry: Some(RetryPolicy {
                max_retries: 2,
                per_try_timeout: None,
                retry_on,
                backoff_base: Duration::from_millis(1),
                backoff_max: Duration::from_millis(2),
                budget: None,
                retry_non_idempotent: false,
                avoid_previous_hosts: false,
                same_endpoint: false,
            }),
            ..ServicePolicy::default()
        },
    );
    let cfg = ProxyConfig {
        authorization: Vec::new(),
        custom_authorizer: None,
        identity_by_address: false,
        network_policies: Vec::new(),
        limits: Default::default(),
        admin_addr: None,
        telemetry: Default::default(),
        outbound_addr: a(0),
        inbound_addr: a(1),
        app_addr: a(2),
        app_protocol: Protocol::Http1,
        connect_timeout: Duration::from_secs(1),
        request_timeout: Some(Duration::from_secs(2)),
        seed: 7,
        inbound_rate_limit: None,
        inbound_route_limits: Vec::new(),
        stats_epoch: None,
        tls: None,
    };
    let proxy = Proxy::new(
        TokioNet,
        cfg,
        mesh_core::config::fixed(registry, &policies),
        None,
    );
    let stats = proxy.stats();
    tokio::spawn(async move {
        let _ = proxy.run().await;
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    (a(0), stats)
}

async fn post(outbound: SocketAddr) -> http::Response<hyper::body::Incoming> {
    post_body(outbound, body::full("\0\0\0\0\0")).await
}

async fn post_body(
    outbound: SocketAddr,
    body: body::Body,
) -> http::Response<hyper::body::Incoming> {
    call(outbound, http::Method::POST, body).await
}

async fn call(
    outbound: SocketAddr,
    method: http::Method,
    body: body::Body,
) -> http::Response<hyper::body::Incoming> {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{outbound}/pkg.Svc/Call"))
        .header(http::header::HOST, "grpc")
        .header("content-type", "application/grpc")
        .body(body)
        .unwrap();
    HttpClients::new(TokioNet, Duration::from_secs(1))
        .get(Protocol::Http1)
        .request(req)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_stream_is_its_own_reason_and_retried_even_for_post() {
    let retry_on = RetryOn {
        refused_stream: true,
        ..RetryOn::default()
    };
    let (outbound, stats) = sidecar(21_300, retry_on).await;
    let seen = upstream(SocketAddr::from(([127, 0, 0, 1], 21_309)), Bad::Refuse, 1).await;
    let resp = post(outbound).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(seen.load(Ordering::SeqCst), 2, "one refusal, one retry");
    assert_eq!(
        stats
            .snapshot()
            .service("grpc")
            .outcome(AttemptOutcome::Failed(ProxyError::RefusedStream)),
        1
    );
    assert_eq!(stats.snapshot().service("grpc").retries, 1);

    // Without the condition the refusal reaches the caller as 503 refused_stream.
    let (outbound, _) = sidecar(21_320, RetryOn::default()).await;
    upstream(SocketAddr::from(([127, 0, 0, 1], 21_329)), Bad::Refuse, 1).await;
    let resp = post(outbound).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[ERROR_HEADER], "refused_stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unavailable_is_retried_for_a_grpc_call() {
    // gRPC calls are POSTs; a listed gRPC status retries them anyway, as gRPC's own retry policy
    // (gRFC A6) and Envoy's `retry-grpc-on` do.
    let retry_on = RetryOn {
        grpc: vec![14],
        ..RetryOn::default()
    };
    let (outbound, stats) = sidecar(21_340, retry_on).await;
    let seen = upstream(
        SocketAddr::from(([127, 0, 0, 1], 21_349)),
        Bad::GrpcUnavailable,
        2,
    )
    .await;
    let resp = post(outbound).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["grpc-status"], "0");
    assert_eq!(seen.load(Ordering::SeqCst), 3, "two UNAVAILABLE, then OK");
    assert_eq!(
        stats
            .snapshot()
            .service("grpc")
            .outcome(AttemptOutcome::Class(2)),
        3
    );
    assert_eq!(stats.snapshot().service("grpc").retries, 2);

    // Without the condition the first UNAVAILABLE is the answer.
    let (outbound, stats) = sidecar(21_360, RetryOn::default()).await;
    upstream(
        SocketAddr::from(([127, 0, 0, 1], 21_369)),
        Bad::GrpcUnavailable,
        2,
    )
    .await;
    let resp = post(outbound).await;
    assert_eq!(resp.headers()["grpc-status"], "14");
    assert_eq!(stats.snapshot().service("grpc").retries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_64_kib_is_streamed_and_never_retried() {
    // Retrying needs the request again, so the sidecar buffers it; like Linkerd it buffers at
    // most 64 KiB. At the limit the call is retried as usual...
    let retry_on = || RetryOn {
        grpc: vec![14],
        ..RetryOn::default()
    };
    let (outbound, stats) = sidecar(21_380, retry_on()).await;
    let seen = upstream(
        SocketAddr::from(([127, 0, 0, 1], 21_389)),
        Bad::GrpcUnavailable,
        1,
    )
    .await;
    let resp = post_body(outbound, body::full(vec![0u8; 64 * 1024])).await;
    assert_eq!(resp.headers()["grpc-status"], "0");
    assert_eq!(seen.load(Ordering::SeqCst), 2, "one UNAVAILABLE, one retry");
    assert_eq!(stats.snapshot().service("grpc").retries, 1);

    // ...one byte over, it is streamed to the upstream and its first answer is final.
    let (outbound, stats) = sidecar(21_390, retry_on()).await;
    let seen = upstream(
        SocketAddr::from(([127, 0, 0, 1], 21_399)),
        Bad::GrpcUnavailable,
        1,
    )
    .await;
    let resp = post_body(outbound, body::full(vec![0u8; 64 * 1024 + 1])).await;
    assert_eq!(resp.headers()["grpc-status"], "14");
    assert_eq!(seen.load(Ordering::SeqCst), 1, "no retry");
    assert_eq!(stats.snapshot().service("grpc").retries, 0);
    assert_eq!(stats.snapshot().service("grpc").attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_is_retried_for_a_get_and_not_for_a_post() {
    let retry_on = || RetryOn {
        reset: true,
        ..RetryOn::default()
    };
    // A GET may be sent again after the upstream reset it.
    let (outbound, stats) = sidecar(21_410, retry_on()).await;
    let seen = upstream(SocketAddr::from(([127, 0, 0, 1], 21_419)), Bad::Reset, 1).await;
    let resp = call(outbound, http::Method::GET, body::empty()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(seen.load(Ordering::SeqCst), 2, "one reset, one retry");
    assert_eq!(
        stats
            .snapshot()
            .service("grpc")
            .outcome(AttemptOutcome::Failed(ProxyError::UpstreamReset)),
        1
    );
    assert_eq!(stats.snapshot().service("grpc").retries, 1);

    // A POST the upstream may have acted on is not: the reset reaches the caller as 502.
    let (outbound, stats) = sidecar(21_420, retry_on()).await;
    let seen = upstream(SocketAddr::from(([127, 0, 0, 1], 21_429)), Bad::Reset, 1).await;
    let resp = call(outbound, http::Method::POST, body::empty()).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(resp.headers()[ERROR_HEADER], "upstream_reset");
    assert_eq!(seen.load(Ordering::SeqCst), 1, "no retry");
    assert_eq!(stats.snapshot().service("grpc").retries, 0);
}
