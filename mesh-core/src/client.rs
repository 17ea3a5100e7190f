//! Pooled HTTP clients over any [`Network`]: one HTTP/1.1 pool (keep-alive connections) and one
//! HTTP/2 pool (one multiplexed connection per endpoint), from hyper-util, over our own connector.

use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioTimer;

use crate::body::Body;
use crate::net::{Connector, NetExecutor, Network};
use crate::registry::Protocol;

/// A pooled client per protocol.
#[derive(Clone, Debug)]
pub struct HttpClients<N: Network> {
    h1: Client<Connector<N>, Body>,
    h2: Client<Connector<N>, Body>,
}

impl<N: Network> HttpClients<N> {
    /// Clients on `net` whose connects give up after `connect_timeout`.
    pub fn new(net: N, connect_timeout: Duration) -> Self {
        Self::with_connector(net.clone(), Connector::new(net, connect_timeout))
    }

    /// Clients that speak TLS through `dialer` on every connection (mTLS between sidecars).
    pub fn with_tls(net: N, connect_timeout: Duration, dialer: crate::tls::Dialer) -> Self {
        Self::with_connector(
            net.clone(),
            Connector::with_tls(net, connect_timeout, dialer),
        )
    }

    fn with_connector(net: N, connector: Connector<N>) -> Self {
        let build = |http2: bool| {
            let mut b = Client::builder(NetExecutor(net.clone()));
            // With a pool timer the pool reads time from it (tokio's clock, which the simulator
            // drives), never the wall clock; 90 s is hyper-util's default idle timeout.
            b.pool_idle_timeout(Duration::from_secs(90))
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .http2_only(http2);
            b.build(connector.clone())
        };
        Self {
            h1: build(false),
            h2: build(true),
        }
    }

    /// The client for `protocol`.
    pub fn get(&self, protocol: Protocol) -> &Client<Connector<N>, Body> {
        match protocol {
            Protocol::Http1 => &self.h1,
            Protocol::Http2 => &self.h2,
        }
    }
}
