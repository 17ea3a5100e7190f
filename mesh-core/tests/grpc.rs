//! A real gRPC client and server (tonic) through two sidecars on loopback: unary and
//! server-streaming calls, with trailers and `grpc-status` intact end to end, errors included.
//! Messages are written by hand with prost's derive, so no protoc is needed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use std::task::{Context, Poll};
use std::time::Duration;

use mesh_core::net::TokioNet;
use mesh_core::proxy::{Proxy, ProxyConfig};
use mesh_core::registry::Protocol;
use tonic::codegen::http;
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    n: u32,
}

fn a(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

#[derive(Clone)]
struct Unary;
impl tonic::server::UnaryService<Msg> for Unary {
    type Response = Msg;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Msg>, tonic::Status>> + Send>>;
    fn call(&mut self, req: tonic::Request<Msg>) -> Self::Future {
        Box::pin(async move {
            let m = req.into_inner();
            if m.text == "fail" {
                return Err(tonic::Status::unavailable("backend down"));
            }
            Ok(tonic::Response::new(Msg {
                text: format!("echo {}", m.text),
                n: m.n + 1,
            }))
        })
    }
}

#[derive(Clone)]
struct Streaming;
impl tonic::server::ServerStreamingService<Msg> for Streaming {
    type Response = Msg;
    type ResponseStream =
        Pin<Box<dyn futures_util::Stream<Item = Result<Msg, tonic::Status>> + Send>>;
    type Future = Pin<
        Box<
            dyn Future<Output = Result<tonic::Response<Self::ResponseStream>, tonic::Status>>
                + Send,
        >,
    >;
    fn call(&mut self, req: tonic::Request<Msg>) -> Self::Future {
        Box::pin(async move {
            let n = req.into_inner().n;
            let items = (0..n).map(|i| {
                Ok(Msg {
                    text: format!("item {i}"),
                    n: i,
                })
            });
            let s: Self::ResponseStream = Box::pin(futures_util::stream::iter(items));
            Ok(tonic::Response::new(s))
        })
    }
}

/// The service by hand, as tonic's generated code would route it.
#[derive(Clone)]
struct Echo;
impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}
impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let codec = ProstCodec::<Msg, Msg>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(match req.uri().path() {
                "/test.Echo/Unary" => grpc.unary(Unary, req).await,
                "/test.Echo/Stream" => grpc.server_streaming(Streaming, req).await,
                _ => tonic::Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// tonic server on base+4 behind a server sidecar (inbound base+2); client sidecar outbound on base.
async fn mesh(base: u16) {
    let server = tonic::transport::Server::builder()
        .add_service(Echo)
        .serve(a(base + 4));
    tokio::spawn(server);
    let reg = mesh_core::testkit::one_service("echo", a(base + 2), Protocol::Http2);
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
        app_protocol: Protocol::Http2,
        ..ProxyConfig::conventional(a(0).ip())
    };
    let s = Proxy::new(TokioNet, cfg(base + 3, base + 2), reg.clone(), None);
    let c = Proxy::new(TokioNet, cfg(base, base + 1), reg, None);
    tokio::spawn(async move { s.run().await });
    tokio::spawn(async move { c.run().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_streaming_and_errors_through_two_sidecars() {
    let base = 21_600;
    mesh(base).await;
    // The channel dials the client sidecar; :authority names the service, as a mesh app's would.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", a(base)))
        .unwrap()
        .origin("http://echo".parse().unwrap())
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = |p: &'static str| http::uri::PathAndQuery::from_static(p);

    grpc.ready().await.unwrap();
    let resp = grpc
        .unary(
            tonic::Request::new(Msg {
                text: "hi".into(),
                n: 41,
            }),
            path("/test.Echo/Unary"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        resp.into_inner(),
        Msg {
            text: "echo hi".into(),
            n: 42
        }
    );

    // A server error keeps its code and message across both sidecars.
    grpc.ready().await.unwrap();
    let err = grpc
        .unary(
            tonic::Request::new(Msg {
                text: "fail".into(),
                n: 0,
            }),
            path("/test.Echo/Unary"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(err.message(), "backend down");

    // Server streaming: every message, then the trailers' OK status.
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(
            tonic::Request::new(Msg {
                text: String::new(),
                n: 5,
            }),
            path("/test.Echo/Stream"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        got.push(m.n);
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    let trailers = stream.trailers().await.unwrap().expect("trailers arrive");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
}
