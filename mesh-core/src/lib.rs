//! The mesh itself: a sidecar proxy (HTTP/1.1 and HTTP/2 both ways, on hyper), a service registry and
//! load balancing. This crate is the code under test; it is **not** a simulator and never imports one.
//!
//! It reaches the network only through the [`net::Network`] boundary: [`net::TokioNet`] is the real
//! implementation on `tokio::net`; the `sim` crate provides a simulated one. Time is tokio time (the
//! simulator drives it), and every random draw (balancer picks, splits, retry jitter, trace ids)
//! comes from ChaCha streams seeded from `ProxyConfig::seed`, so the same code is deterministic
//! under the simulator and real on sockets.
//!
//! # Layout
//! - [`net`]: the IO boundary (bind/accept, connect, spawn) and its tokio implementation.
//! - [`registry`]: services and their endpoints.
//! - [`config`]: the versioned snapshot (registry and lowered policies) a proxy reads, delivered on a
//!   watch channel.
//! - [`balance`]: endpoint selection (round robin, random, least request, peak-EWMA, ring hash),
//!   outlier ejection, and the one weighted draw splits use.
//! - [`error`]: why the proxy answered a request itself (`ProxyError`), a leaf every module uses.
//! - [`proxy`]: the sidecar: outbound routing by service name, inbound forwarding to the local app,
//!   hop-by-hop header handling, upstream failures mapped to 502/503/504, and its typed counters
//!   ([`proxy::stats`]).
//! - [`server`]: accept-and-serve HTTP/1.1 + HTTP/2 on any network, shared by every listener.
//! - [`client`]: pooled HTTP/1.1 and HTTP/2 clients over any network.
//! - [`policy`]: resilience policy per destination (timeouts, retries, budgets, breakers) as plain data.
//! - [`retry`]: retry decisions: retryable outcomes, jittered backoff, budgets (a sliding window of our own: tower 0.5's `TpsBudget` overshot its closed form).
//! - [`authz`]: Istio-style authorization policies (ALLOW, DENY, CUSTOM) on the inbound path.
//! - [`breaker`]: Envoy-style circuit breaking by in-flight thresholds.
//! - [`identity`]: SPIFFE IDs and the X.509-SVID rules a workload certificate must meet.
//! - [`tls`]: mutual TLS between sidecars: certificate judges, rotation, a CA.
//! - [`ratelimit`]: local token-bucket rate limiting (429), as a tower layer on the inbound path.
//! - [`hop`]: a hook through which a harness charges the proxy's own processing cost.
//! - [`body`]: the one body type every leg uses.
//! - [`telemetry`]: golden-signal metrics (Prometheus text on the admin listener), W3C trace
//!   context and a span per hop, JSON access logs.
//!
//! # Library choices
//! hyper 1.x for HTTP (the de-facto Rust HTTP implementation, used by linkerd2-proxy) and hyper-util's
//! pooled client for connection pooling and HTTP/2 multiplexing, over a connector of our own so the
//! network stays behind the boundary (hyper-util's default connector resolves DNS on a blocking pool).
#![forbid(unsafe_code)]

pub mod authz;
pub mod balance;
pub mod body;
pub mod breaker;
pub mod client;
pub mod config;
pub mod control;
pub mod error;
pub mod hop;
pub mod identity;
pub mod limits;
pub mod net;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod registry;
pub mod retry;
pub mod server;
pub mod telemetry;
pub mod testkit;
pub mod tls;
