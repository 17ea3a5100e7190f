//! The proxy with clients nobody here wrote: curl over HTTP/1.1 through two sidecars
//! (keep-alive reuse, chunked uploads, a large upload with `Expect: 100-continue`, a streamed
//! response). Skipped, loudly, when curl is not installed (`.ci/run` installs it).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // real sockets, an OS thread for the mesh

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use mesh_core::body;
use mesh_core::net::{Network, TokioNet};
use mesh_core::proxy::{Proxy, ProxyConfig};
use mesh_core::registry::Protocol;
use mesh_core::server::serve_http;

fn a(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

/// `/stream` answers 64 chunks of 1 KiB with no length; anything else reads the whole body and
/// answers `<method> len=<bytes> chunked=<was the request chunked>`.
async fn app(req: http::Request<hyper::body::Incoming>) -> http::Response<body::Body> {
    if req.uri().path() == "/stream" {
        let chunks = (0..64).map(|_| {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![b'z'; 1024])))
        });
        let stream = futures_util::stream::iter(chunks);
        return http::Response::new(body::boxed(http_body_util::StreamBody::new(stream)));
    }
    let method = req.method().clone();
    let chunked = req
        .headers()
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let len = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    http::Response::new(body::full(format!("{method} len={len} chunked={chunked}")))
}

/// Client sidecar outbound on base, server sidecar inbound on base+2, app on base+4; mesh
/// protocol `mesh`.
fn start(base: u16, mesh: Protocol) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = TokioNet.bind(a(base + 4)).await.unwrap();
            tokio::spawn(serve_http(TokioNet, l, app, Arc::new(|_| {})));
            let reg = mesh_core::testkit::one_service("echo", a(base + 2), mesh);
            let cfg = |out, inb| ProxyConfig {
                authorization: Vec::new(),
                custom_authorizer: None,
                identity_by_address: false,
                network_policies: Vec::new(),
                limits: Default::default(),
                admin_addr: None,
                telemetry: Default::default(),
                outbound_addr: a(out),
                inbound_addr: a(inb),
                app_addr: a(base + 4),
                ..ProxyConfig::conventional(a(0).ip())
            };
            let server = Proxy::new(TokioNet, cfg(base + 3, base + 2), reg.clone(), None);
            tokio::spawn(async move { server.run().await });
            let client = Proxy::new(TokioNet, cfg(base, base + 1), reg, None);
            let _ = client.run().await;
        });
    });
    std::thread::sleep(Duration::from_millis(200));
}

fn curl(args: &[&str]) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-H", "Host: echo"])
        .args(args)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn have_curl() -> bool {
    let ok = Command::new("curl").arg("--version").output().is_ok();
    if !ok {
        // Under CI (`.ci/run` sets MESHSIM_REQUIRE_TOOLS) a missing tool fails, never skips.
        assert!(
            std::env::var_os("MESHSIM_REQUIRE_TOOLS").is_none(),
            "MESHSIM_REQUIRE_TOOLS is set but curl is not installed"
        );
        eprintln!("SKIPPED: curl is not installed (bash .ci/run installs it)");
    }
    ok
}

#[test]
fn curl_through_two_sidecars() {
    if !have_curl() {
        return;
    }
    for (i, mesh) in [Protocol::Http1, Protocol::Http2].into_iter().enumerate() {
        let base = 21_500 + 10 * i as u16;
        start(base, mesh);
        let url = |p: &str| format!("http://{}{p}", a(base));

        // Two requests in one curl run share one connection to the sidecar.
        let connects = curl(&[
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{num_connects} ",
            &url("/a"),
            &url("/b"),
        ])
        .unwrap();
        assert_eq!(connects.trim(), "1 0", "keep-alive reuse ({mesh:?})");

        // A chunked upload of unknown length arrives whole.
        let dir = std::env::temp_dir().join(format!("meshsim-curl-{}-{i}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small");
        std::fs::write(&small, vec![b'a'; 100_000]).unwrap();
        let up = format!("@{}", small.display());
        let seen = curl(&[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &up,
            &url("/up"),
        ])
        .unwrap();
        assert!(seen.starts_with("POST len=100000"), "{seen}");

        // 8 MiB with a length: curl asks `Expect: 100-continue` first; the sidecars must pass it.
        let big = dir.join("big");
        std::fs::write(&big, vec![b'b'; 8 << 20]).unwrap();
        let up = format!("@{}", big.display());
        let seen = curl(&["--data-binary", &up, &url("/big")]).unwrap();
        assert_eq!(seen, "POST len=8388608 chunked=false", "({mesh:?})");

        // A streamed response of unknown length arrives whole.
        let got = curl(&[&url("/stream")]).unwrap();
        assert_eq!(got.len(), 64 * 1024, "({mesh:?})");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
