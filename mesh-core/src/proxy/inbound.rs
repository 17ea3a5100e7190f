//! The inbound path: local rate limits (per route or service-wide), then the local app under
//! the mesh's request timeout.

use super::*;

impl<N: Network> Proxy<N> {
    pub(super) async fn inbound(
        &self,
        req: Request<Incoming>,
        route_name: &mut String,
    ) -> Result<Response<Body>, ProxyError> {
        let route = self
            .route_buckets
            .iter()
            .find(|(r, _)| r.matcher.matches(&req));
        if let Some((r, _)) = route {
            route_name.clone_from(&r.name);
        }
        let bucket = match route {
            Some((_, b)) => Some(b),
            None => self.inbound_bucket.as_ref(),
        };
        if bucket.is_some_and(|b| !b.try_acquire()) {
            if let Some((r, _)) = route {
                self.stats
                    .incr(&format!("inbound.route.{}.rate_limited", r.name));
            }
            return Err(ProxyError::RateLimited);
        }
        let call = self.forward(
            &self.app_clients,
            req.map(body::boxed),
            self.cfg.app_addr,
            self.cfg.app_protocol,
            None,
        );
        match self.cfg.request_timeout {
            Some(t) => tokio::time::timeout(t, call)
                .await
                .map_err(|_| ProxyError::UpstreamTimeout)?,
            None => call.await,
        }
    }
}
