//! The inbound path: the authorization phase (this workload's policies, [`crate::authz`], before
//! anything spends a token or a worker on the request), the route phase (which inbound route a
//! request is on), then the local app as a tower service stack: local rate limits
//! ([`crate::ratelimit::LocalRateLimitLayer`]) around one leg to the app under the mesh's
//! request timeout ([`ToApp`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::Service;

use crate::ratelimit::{LocalRateLimit, MatchedRoute};

use super::*;

/// The inbound stack the proxy calls per request.
pub(super) type InboundStack<N> = LocalRateLimit<ToApp<N>>;

impl<N: Network> Proxy<N> {
    pub(super) async fn inbound(
        &self,
        mut req: Request<Incoming>,
        principal: Option<&str>,
        route_name: &mut String,
    ) -> Result<Response<Body>, ProxyError> {
        self.authorize(&req, principal)?;
        let route = self
            .cfg
            .inbound_route_limits
            .iter()
            .position(|r| r.matcher.matches(&req));
        if let Some(i) = route {
            route_name.clone_from(&self.cfg.inbound_route_limits[i].name);
            req.extensions_mut().insert(MatchedRoute(i));
        }
        // A body that breaks on its way to the app is the caller's failure, as on the outbound
        // leg: the app did nothing wrong.
        let (parts, incoming) = req.into_parts();
        let (body, broke) = body::watched(incoming);
        let result = call_stack(self.inbound.clone(), Request::from_parts(parts, body)).await;
        let result = match result {
            Err(_) if broke.load(std::sync::atomic::Ordering::Relaxed) => {
                Err(ProxyError::DownstreamReset)
            }
            r => r,
        };
        if let (Err(ProxyError::RateLimited), Some(i)) = (&result, route) {
            self.stats
                .route_rate_limited(&self.cfg.inbound_route_limits[i].name);
        }
        result
    }
}

impl<N: Network> Proxy<N> {
    /// The caller's SPIFFE ID: from its mTLS certificate, else (when configured) the identity
    /// the registry places at its address.
    pub(super) fn peer_identity<B>(&self, req: &Request<B>) -> Option<Arc<str>> {
        let from_tls = req.extensions().get::<PeerIdentity>().map(|p| p.0.clone());
        from_tls.or_else(|| self.identity_by_address(req.extensions().get::<PeerAddr>()?.0))
    }

    /// The identity the registry places at `peer`, when configured to name peers that way.
    fn identity_by_address(&self, peer: SocketAddr) -> Option<Arc<str>> {
        if !self.cfg.identity_by_address {
            return None;
        }
        self.config.borrow().identity_at(peer.ip()).cloned()
    }

    /// The connection phase: whether to serve a connection from `peer`, which proved
    /// `tls_identity` if it spoke mTLS, under this workload's connection policies
    /// ([`crate::authz::l4`]), for the app's port. A refusal is counted by policy and rule.
    pub(super) fn admit_connection(&self, peer: SocketAddr, tls_identity: Option<&str>) -> bool {
        if self.l4.is_empty() {
            return true;
        }
        let by_address = match tls_identity {
            Some(_) => None,
            None => self.identity_by_address(peer),
        };
        let principal = tls_identity.or(by_address.as_deref());
        let conn = crate::authz::l4::Connection {
            principal: principal.map(|p| p.strip_prefix("spiffe://").unwrap_or(p)),
            port: self.cfg.app_addr.port(),
        };
        match self.l4.check(&conn) {
            Ok(()) => true,
            Err(d) => {
                self.stats.connection_denied(&d);
                false
            }
        }
    }

    /// Evaluate this workload's policies for `req` from `principal` (the caller's SPIFFE ID,
    /// [`Self::peer_identity`]); a denial is counted by policy and rule.
    fn authorize<B>(&self, req: &Request<B>, principal: Option<&str>) -> Result<(), ProxyError> {
        if self.authz.is_empty() {
            return Ok(());
        }
        let view = crate::authz::eval::Request {
            principal: principal.map(|p| p.strip_prefix("spiffe://").unwrap_or(p)),
            method: req.method().as_str(),
            path: req.uri().path(),
            headers: req.headers(),
        };
        self.authz.check(&view).map_err(|d| {
            self.stats.authz_denied(&d);
            ProxyError::AuthzDenied
        })
    }
}

/// Call the inbound stack once. Written out rather than `ServiceExt::oneshot`, whose generic
/// request type defeats the compiler's proof that the proxy's future is `Send`.
async fn call_stack<N: Network>(
    mut stack: InboundStack<N>,
    req: Request<Body>,
) -> Result<Response<Body>, ProxyError> {
    std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut stack, cx)).await?;
    Service::<Request<Body>>::call(&mut stack, req).await
}

/// The local app as a service: one leg to it on its protocol, under the mesh's request timeout.
/// Cloned per request (with the stack around it), so it is one shared pointer.
#[derive(Clone, Debug)]
pub(super) struct ToApp<N: Network>(Arc<AppLeg<N>>);

/// Where and how [`ToApp`] reaches the app.
#[derive(Debug)]
pub(super) struct AppLeg<N: Network> {
    pub(super) clients: HttpClients<N>,
    pub(super) addr: SocketAddr,
    pub(super) protocol: Protocol,
    pub(super) timeout: Option<Duration>,
}

impl<N: Network> ToApp<N> {
    pub(super) fn new(leg: AppLeg<N>) -> Self {
        Self(Arc::new(leg))
    }
}

impl<N: Network> tower::Service<Request<Body>> for ToApp<N> {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, ProxyError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let leg = self.0.clone();
        Box::pin(async move {
            let call = forward::send(&leg.clients, req, leg.addr, leg.protocol, None);
            match leg.timeout {
                Some(t) => tokio::time::timeout(t, call)
                    .await
                    .map_err(|_| ProxyError::UpstreamTimeout)?,
                None => call.await,
            }
        })
    }
}
