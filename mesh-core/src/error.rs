//! Why the proxy answered a request itself, and with which status.
//!
//! The mapping follows Envoy where the meshes agree: no endpoints and failed connects are
//! `503 Service Unavailable` (Envoy's `UH`/`UF`), an upstream that resets or speaks broken HTTP is
//! `502 Bad Gateway` (as nginx and Linkerd answer), and an upstream that does not answer in time is
//! `504 Gateway Timeout` (Envoy's `UT`). The reason travels in [`ERROR_HEADER`] so callers and
//! reports can tell a proxy's 503 from an application's.

use http::StatusCode;

/// Response header naming why the proxy answered a request itself.
pub const ERROR_HEADER: &str = "x-mesh-error";

/// A failure the proxy turns into a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum ProxyError {
    /// The request named no service (no `Host`/authority).
    #[error("request names no destination")]
    NoRoute,
    /// The service is unknown or has no endpoints.
    #[error("no endpoints for the destination service")]
    NoEndpoints,
    /// The TCP connect to the endpoint failed (refused, reset, unreachable).
    #[error("upstream connect failed")]
    ConnectFailed,
    /// The TCP connect did not complete within the connect timeout.
    #[error("upstream connect timed out")]
    ConnectTimeout,
    /// The upstream closed or reset the stream before a complete response.
    #[error("upstream reset before response")]
    UpstreamReset,
    /// The upstream refused the HTTP/2 stream unprocessed (`REFUSED_STREAM`, e.g. past its
    /// `max_concurrent_streams` or while going away).
    #[error("upstream refused the stream")]
    RefusedStream,
    /// The upstream did not respond within the request timeout.
    #[error("upstream request timed out")]
    UpstreamTimeout,
    /// The local rate limit refused the request (Envoy's `RL`).
    #[error("rate limited")]
    RateLimited,
    /// The destination's circuit breaker is full (Envoy's upstream overflow, `UO`).
    #[error("circuit breaker open: too many requests or retries in flight")]
    CircuitOpen,
    /// An authorization policy of the destination workload denied the request (Envoy's RBAC
    /// filter: 403 "RBAC: access denied").
    #[error("RBAC: access denied")]
    AuthzDenied,
    /// The proxy already held its most requests in flight in this direction
    /// ([`crate::limits::Limits::max_requests_in_flight`]); answered at once, before any
    /// upstream work (Envoy's overload manager `stop_accepting_requests`).
    #[error("proxy overloaded")]
    Overloaded,
    /// The request names its destination ambiguously: several `Host` headers (RFC 9112 §3.2:
    /// answered 400).
    #[error("ambiguous destination: several Host headers")]
    BadAuthority,
    /// The downstream's request body broke while it was read or forwarded (malformed chunked
    /// framing, a reset mid-body): the client's failure, answered 400 where an answer can still
    /// reach it, and never charged to the upstream endpoint (no outlier-detection failure).
    #[error("the request body from downstream broke")]
    DownstreamReset,
    /// The request's target is not a path the proxy can forward: asterisk-form (`OPTIONS *`)
    /// or authority-form (`CONNECT host:port`). Envoy refuses both with 400 unless configured
    /// otherwise (`absolute_path_rejected`); so do we, before any upstream is chosen, so the
    /// client's request is never charged to a destination.
    #[error("the request target is not a path this proxy forwards (OPTIONS * or CONNECT)")]
    BadTarget,
}

impl ProxyError {
    /// Every failure, in declaration order.
    pub const ALL: [ProxyError; 14] = [
        ProxyError::NoRoute,
        ProxyError::NoEndpoints,
        ProxyError::ConnectFailed,
        ProxyError::ConnectTimeout,
        ProxyError::UpstreamReset,
        ProxyError::RefusedStream,
        ProxyError::UpstreamTimeout,
        ProxyError::RateLimited,
        ProxyError::CircuitOpen,
        ProxyError::AuthzDenied,
        ProxyError::Overloaded,
        ProxyError::BadAuthority,
        ProxyError::DownstreamReset,
        ProxyError::BadTarget,
    ];

    /// The failure whose [`reason`](Self::reason) is `reason`: how a response another sidecar
    /// answered itself (its [`ERROR_HEADER`]) is read back as a typed failure.
    pub fn from_reason(reason: &str) -> Option<ProxyError> {
        Self::ALL.into_iter().find(|e| e.reason() == reason)
    }

    /// The status the downstream sees.
    pub fn status(self) -> StatusCode {
        match self {
            ProxyError::NoRoute
            | ProxyError::BadAuthority
            | ProxyError::DownstreamReset
            | ProxyError::BadTarget => StatusCode::BAD_REQUEST,
            ProxyError::NoEndpoints
            | ProxyError::ConnectFailed
            | ProxyError::ConnectTimeout
            | ProxyError::CircuitOpen
            | ProxyError::Overloaded
            | ProxyError::RefusedStream => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamReset => StatusCode::BAD_GATEWAY,
            ProxyError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::AuthzDenied => StatusCode::FORBIDDEN,
        }
    }

    /// A stable snake_case name for headers, counters and reports.
    pub fn reason(self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no_route",
            ProxyError::NoEndpoints => "no_endpoints",
            ProxyError::ConnectFailed => "connect_failed",
            ProxyError::ConnectTimeout => "connect_timeout",
            ProxyError::UpstreamReset => "upstream_reset",
            ProxyError::RefusedStream => "refused_stream",
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::CircuitOpen => "circuit_open",
            ProxyError::RateLimited => "rate_limited",
            ProxyError::AuthzDenied => "authz_denied",
            ProxyError::Overloaded => "overloaded",
            ProxyError::BadAuthority => "bad_authority",
            ProxyError::DownstreamReset => "downstream_reset",
            ProxyError::BadTarget => "bad_target",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_reads_back_as_its_failure() {
        for e in ProxyError::ALL {
            assert_eq!(ProxyError::from_reason(e.reason()), Some(e));
        }
        assert_eq!(ProxyError::from_reason("upstream_5xx"), None);
        let mut reasons: Vec<_> = ProxyError::ALL.iter().map(|e| e.reason()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), ProxyError::ALL.len(), "reasons are distinct");
    }
}
