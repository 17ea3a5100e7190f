//! The IO boundary: everything the mesh needs from a network, and nothing more.
//!
//! A [`Network`] binds listeners, accepts and connects TCP streams, and spawns the tasks that serve
//! connections. [`TokioNet`] implements it on `tokio::net` for real sockets; the `sim` crate
//! implements it on a simulated socket stack. Spawning is part of the boundary because a simulated
//! host must know which host a task belongs to, and because hyper needs an executor for HTTP/2.
//!
//! This module is not a general runtime abstraction: no timers (tokio time is used directly and
//! the simulator drives it), no UDP, no DNS (endpoints are addresses).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A network the mesh can run on: real sockets or a simulated stack.
pub trait Network: Clone + Send + Sync + 'static {
    /// A connected byte stream.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// A bound, listening socket.
    type Listener: Send + Sync + 'static;

    /// Bind and listen on `addr`.
    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Accept the next connection on `listener`.
    fn accept(
        &self,
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    /// Open a connection to `addr`.
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Run `fut` in the background, on the same host as the caller.
    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static;
}

/// Real sockets on the ambient tokio runtime.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

impl Network for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind(addr).await
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        // Proxies forward small messages; Nagle's delay would dominate their latency.
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(fut);
    }
}

/// A stream from any [`Network`], wrapped so hyper-util's pooled client accepts it
/// (its `Connection` trait and the stream types are both foreign to this crate).
#[derive(Debug)]
pub struct NetStream<S>(pub S);

impl<S: AsyncRead + Unpin> AsyncRead for NetStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NetStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S> hyper_util::client::legacy::connect::Connection for NetStream<S> {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

/// hyper's executor over a [`Network`]'s spawn, so HTTP/2 connection tasks and pooled
/// client connections run on the right (possibly simulated) host.
#[derive(Clone, Debug)]
pub struct NetExecutor<N>(pub N);

impl<N, F> hyper::rt::Executor<F> for NetExecutor<N>
where
    N: Network,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(async move {
            fut.await;
        });
    }
}

/// A `tower::Service<http::Uri>` connector for hyper-util's client: connects to the URI's
/// `ip:port` authority through the [`Network`], bounded by a connect timeout, and wraps the
/// connection in TLS when configured (mTLS between sidecars; the handshake counts towards the
/// connect timeout).
#[derive(Clone)]
pub struct Connector<N> {
    net: N,
    connect_timeout: std::time::Duration,
    tls: Option<crate::tls::Dialer>,
}

impl<N: std::fmt::Debug> std::fmt::Debug for Connector<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("net", &self.net)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl<N: Network> Connector<N> {
    /// A connector that gives up after `connect_timeout`.
    pub fn new(net: N, connect_timeout: std::time::Duration) -> Self {
        Self {
            net,
            connect_timeout,
            tls: None,
        }
    }

    /// The same, speaking TLS through `dialer` on every connection.
    pub fn with_tls(
        net: N,
        connect_timeout: std::time::Duration,
        dialer: crate::tls::Dialer,
    ) -> Self {
        Self {
            net,
            connect_timeout,
            tls: Some(dialer),
        }
    }
}

/// Why a connection attempt failed; the proxy maps these to statuses.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URI did not name an `ip:port` endpoint.
    #[error("endpoint address is not ip:port: {0}")]
    BadAddress(String),
    /// The connect did not finish in time.
    #[error("connect timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The network refused or reset the connect.
    #[error("connect failed: {0}")]
    Io(#[from] io::Error),
    /// The TLS handshake failed (bad or untrusted certificate, protocol error).
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
}

impl<N: Network> tower::Service<http::Uri> for Connector<N> {
    type Response = hyper_util::rt::TokioIo<NetStream<crate::tls::MaybeTls<N::Stream>>>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let net = self.net.clone();
        let timeout = self.connect_timeout;
        let tls = self.tls.clone();
        Box::pin(async move {
            let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
            let addr: SocketAddr = authority
                .parse()
                .map_err(|_| ConnectError::BadAddress(authority.to_string()))?;
            let connect = async {
                let stream = net.connect(addr).await?;
                match tls {
                    None => Ok(crate::tls::MaybeTls::Plain(stream)),
                    Some(tls) => tls
                        .connect(addr, stream)
                        .await
                        .map(|s| crate::tls::MaybeTls::Tls(Box::new(s)))
                        .map_err(ConnectError::Tls),
                }
            };
            match tokio::time::timeout(timeout, connect).await {
                Ok(stream) => Ok(hyper_util::rt::TokioIo::new(NetStream(stream?))),
                Err(_) => Err(ConnectError::Timeout(timeout)),
            }
        })
    }
}
