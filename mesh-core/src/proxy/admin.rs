//! The admin listener: `/metrics` (Prometheus text) and `/ready`.

use super::*;

impl<N: Network> Proxy<N> {
    pub(super) async fn admin_loop(self: Arc<Self>, listener: N::Listener) {
        let stats = self.stats.clone();
        // A scrape connection closed for idling is no error.
        let on_event = Arc::new(move |e: ServeEvent| {
            if !matches!(e, ServeEvent::Closed(_)) {
                stats.update(|c| c.admin_errors += 1)
            }
        });
        let this = self.clone();
        let handler = move |req: Request<Incoming>| {
            let this = this.clone();
            async move { this.admin(req) }
        };
        crate::server::serve_http(self.net.clone(), listener, handler, on_event).await
    }

    pub(super) fn admin(&self, req: Request<Incoming>) -> Response<Body> {
        let (status, ctype, text) = match (req.method(), req.uri().path()) {
            (&http::Method::GET, "/metrics") => (
                http::StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics_text(),
            ),
            // Ready once there is something to route to: a sidecar fed by a control plane
            // starts with an empty registry and is not ready until the first push lands
            // (Envoy's `/ready` likewise waits for its initial configuration).
            (&http::Method::GET, "/ready") => {
                let services = self.config.borrow().registry.names().count();
                if self.draining() {
                    // Draining: take this pod out of rotation while its connections finish
                    // (Envoy fails its readiness check during a drain too).
                    (
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "not ready: draining\n".to_string(),
                    )
                } else if services > 0 {
                    (http::StatusCode::OK, "text/plain", "ready\n".to_string())
                } else {
                    (
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "not ready: no configuration yet\n".to_string(),
                    )
                }
            }
            (&http::Method::GET, _) => (
                http::StatusCode::NOT_FOUND,
                "text/plain",
                "not found; try /metrics or /ready\n".to_string(),
            ),
            _ => (
                http::StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "GET only\n".to_string(),
            ),
        };
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        resp
    }
}
