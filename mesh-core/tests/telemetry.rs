//! The proxy's own telemetry on real loopback sockets: `/metrics` on the admin listener parses
//! as Prometheus text (checked with the independent `prometheus-parse` crate) and counts what
//! was sent; `traceparent` continues the caller's trace through both sidecars to the app; every
//! request leaves one JSON access-log line per sidecar, a caller that gives up included (499).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mesh_core::body::{self, Body};
use mesh_core::client::HttpClients;
use mesh_core::net::{Network, TokioNet};
use mesh_core::proxy::{Proxy, ProxyConfig};
use mesh_core::registry::Protocol;
use mesh_core::server::serve_http;
use mesh_core::telemetry::TelemetryConfig;
use mesh_core::telemetry::access::AccessLog;
use mesh_core::telemetry::trace;

fn a(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

/// An app that answers with the `traceparent` it received; `/fail` answers 500.
async fn app(req: Request<Incoming>) -> Response<Body> {
    let tp = req
        .headers()
        .get(trace::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let mut resp = Response::new(body::full(tp));
    if req.uri().path() == "/hang" {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if req.uri().path() == "/fail" {
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    }
    resp
}

async fn get(to: SocketAddr, path: &str, traceparent: Option<&str>) -> (StatusCode, String) {
    let clients = HttpClients::new(TokioNet, Duration::from_secs(1));
    let mut req = Request::builder()
        .uri(format!("http://{to}{path}"))
        .header(http::header::HOST, "echo");
    if let Some(tp) = traceparent {
        req = req.header(trace::TRACEPARENT, tp);
    }
    let resp = clients
        .get(Protocol::Http1)
        .request(req.body(body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_traces_and_access_logs() {
    let base = 21_700;
    let app_l = TokioNet.bind(a(base + 4)).await.unwrap();
    tokio::spawn(serve_http(TokioNet, app_l, app, Arc::new(|_| {})));
    let reg = mesh_core::testkit::one_service("echo", a(base + 2), Protocol::Http2);
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = {
        let lines = lines.clone();
        AccessLog(Arc::new(move |r| {
            lines.lock().unwrap().push(r.to_json());
            true
        }))
    };
    let cfg = |out: u16, inb: u16, admin: u16, service: &str| ProxyConfig {
        authorization: Vec::new(),
        custom_authorizer: None,
        identity_by_address: false,
        network_policies: Vec::new(),
        limits: Default::default(),
        outbound_addr: a(out),
        inbound_addr: a(inb),
        app_addr: a(base + 4),
        admin_addr: Some(a(admin)),
        telemetry: TelemetryConfig {
            service: service.into(),
            identity: Some(format!("spiffe://cluster.local/ns/default/sa/{service}")),
            record_spans: true,
            span_sink: None,
            access_log: Some(sink.clone()),
        },
        ..ProxyConfig::conventional([127, 0, 0, 1].into())
    };
    let client = Proxy::new(
        TokioNet,
        cfg(base, base + 1, base + 5, "web"),
        reg.clone(),
        None,
    );
    let server = Proxy::new(
        TokioNet,
        cfg(base + 3, base + 2, base + 6, "echo"),
        reg,
        None,
    );
    {
        let (c, s) = (client.clone(), server.clone());
        tokio::spawn(async move { c.run().await });
        tokio::spawn(async move { s.run().await });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    // A caller's trace continues: same trace id at the app, whose parent is the server
    // sidecar's inbound span.
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, seen) = get(a(base), "/traced", Some(caller)).await;
    assert_eq!(status, StatusCode::OK);
    let at_app = trace::parse(&http::HeaderValue::from_str(&seen).unwrap()).unwrap();
    assert_eq!(at_app.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
    let (cs, ss) = (client.spans(), server.spans());
    assert_eq!((cs.len(), ss.len()), (1, 1));
    assert_eq!(
        cs[0].parent_id, 0x00f067aa0ba902b7,
        "client span's parent is the caller's"
    );
    assert_eq!(
        ss[0].parent_id, cs[0].span_id,
        "server span's parent is the client's"
    );
    assert_eq!(
        at_app.parent_id, ss[0].span_id,
        "the app sees the server span as parent"
    );

    // No (or a malformed) traceparent starts a new trace.
    let (_, seen) = get(a(base), "/new", Some("00-zz-bad-01")).await;
    let fresh = trace::parse(&http::HeaderValue::from_str(&seen).unwrap()).unwrap();
    assert_ne!(fresh.trace_id, at_app.trace_id);
    assert_eq!(
        client.spans()[1].parent_id,
        0,
        "a new trace's first span is its root"
    );

    for _ in 0..3 {
        get(a(base), "/ok", None).await;
    }
    let (status, _) = get(a(base), "/fail", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    // /metrics, scraped over HTTP like Prometheus does.
    let scrape = |port: u16| async move {
        let clients = HttpClients::new(TokioNet, Duration::from_secs(1));
        let req = Request::builder()
            .uri(format!("http://{}/metrics", a(port)))
            .body(body::empty())
            .unwrap();
        let resp = clients.get(Protocol::Http1).request(req).await.unwrap();
        assert_eq!(
            resp.headers()[http::header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    };
    let text = scrape(base + 5).await;
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the exposition parses");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        parsed
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(ref h) => {
                    h.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                _ => 0.0,
            })
            .sum()
    };
    let out = [("direction", "outbound"), ("service", "echo")];
    assert_eq!(
        value(
            "meshsim_requests_total",
            &[out[0], out[1], ("status_class", "2xx")]
        ),
        5.0
    );
    assert_eq!(
        value(
            "meshsim_requests_total",
            &[out[0], out[1], ("status_class", "5xx")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "meshsim_request_errors_total",
            &[out[0], out[1], ("reason", "upstream_5xx")]
        ),
        1.0
    );
    assert_eq!(value("meshsim_request_duration_seconds_count", &out), 6.0);
    assert_eq!(
        value("meshsim_request_duration_seconds", &out),
        6.0,
        "+Inf bucket"
    );
    assert_eq!(
        value("meshsim_requests_in_flight", &[("direction", "outbound")]),
        0.0
    );
    assert_eq!(
        value("meshsim_upstream_requests_active", &[("service", "echo")]),
        0.0
    );
    let server_text = scrape(base + 6).await;
    assert!(
        server_text.contains(
            "meshsim_requests_total{direction=\"inbound\",service=\"echo\",status_class=\"2xx\"} 5"
        ),
        "{server_text}"
    );

    // The admin endpoint answers other paths plainly and the proxy keeps serving.
    let clients = HttpClients::new(TokioNet, Duration::from_secs(1));
    let req = Request::builder()
        .uri(format!("http://{}/nope", a(base + 5)))
        .body(body::empty())
        .unwrap();
    let resp = clients.get(Protocol::Http1).request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Two access-log lines per request (one per sidecar), each a JSON object.
    let logged = sink_lines(&lines);
    assert_eq!(logged.len(), 12, "{logged:#?}");
    let records: Vec<serde_json::Value> = logged
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let failed: Vec<_> = records.iter().filter(|r| r["status"] == 500).collect();
    assert_eq!(failed.len(), 2);
    let out_rec = failed
        .iter()
        .find(|r| r["direction"] == "outbound")
        .unwrap();
    assert_eq!(
        out_rec["source_identity"],
        "spiffe://cluster.local/ns/default/sa/web"
    );
    assert_eq!(out_rec["destination_service"], "echo");
    assert_eq!(out_rec["path"], "/fail");
    assert_eq!(out_rec["attempts"], 1);
    assert_eq!(out_rec["route"], "default");
    let in_rec = failed.iter().find(|r| r["direction"] == "inbound").unwrap();
    assert_eq!(
        in_rec["destination_identity"],
        "spiffe://cluster.local/ns/default/sa/echo"
    );
    assert_eq!(in_rec["trace_id"], out_rec["trace_id"]);
    assert!(
        in_rec["source_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    // A caller that gives up before the answer: each sidecar records the request once, as 499
    // `downstream_cancelled` (span, access-log line, error counter), and its in-flight gauge
    // returns to zero.
    let gave_up =
        tokio::time::timeout(Duration::from_millis(200), get(a(base), "/hang", None)).await;
    assert!(gave_up.is_err(), "the app answered /hang early");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (side, spans) in [("client", client.spans()), ("server", server.spans())] {
        let cancelled: Vec<_> = spans.iter().filter(|s| s.name == "GET /hang").collect();
        assert_eq!(cancelled.len(), 1, "{side}: {cancelled:?}");
        assert_eq!(
            (cancelled[0].status, cancelled[0].reason),
            (499, Some("downstream_cancelled")),
            "{side}"
        );
        assert!(
            cancelled[0].duration_us >= 150_000,
            "{side}: {:?}",
            cancelled[0]
        );
    }
    let hang: Vec<serde_json::Value> = sink_lines(&lines)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["path"] == "/hang")
        .collect();
    assert_eq!(hang.len(), 2, "{hang:#?}");
    assert!(
        hang.iter()
            .all(|r| r["status"] == 499 && r["reason"] == "downstream_cancelled")
    );
    for (port, dir) in [(base + 5, "outbound"), (base + 6, "inbound")] {
        let text = scrape(port).await;
        let cancelled = format!(
            "meshsim_request_errors_total{{direction=\"{dir}\",service=\"echo\",reason=\"downstream_cancelled\"}} 1"
        );
        assert!(text.contains(&cancelled), "{cancelled} not in\n{text}");
        let idle = format!("meshsim_requests_in_flight{{direction=\"{dir}\"}} 0");
        assert!(text.contains(&idle), "{idle} not in\n{text}");
    }
}

fn sink_lines(lines: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    lines.lock().unwrap().clone()
}
