//! Sending one request on one leg (the HTTP version, authority and hop-by-hop headers that
//! change between legs) and mapping a client failure to the proxy failure it stands for.

use super::*;

/// Send `req` to `addr` on `protocol`, rewriting what changes between legs.
pub(super) async fn send<N: Network>(
    clients: &HttpClients<N>,
    req: Request<Body>,
    addr: SocketAddr,
    protocol: Protocol,
    authority: Option<&str>,
) -> Result<Response<Body>, ProxyError> {
    let (mut parts, req_body) = req.into_parts();
    // The authority survives the hop as Host so the far side still knows the service name
    // even when the leg's URI names an address (HTTP/2 carries it as a plain header).
    let host = authority.map(str::to_string).or_else(|| {
        parts
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .filter(|_| !parts.headers.contains_key(http::header::HOST))
    });
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some(host) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
        parts.headers.insert(http::header::HOST, host);
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    parts.uri = Uri::try_from(format!("http://{addr}{path}")).map_err(|_| ProxyError::NoRoute)?;
    parts.version = protocol.version();
    let req = Request::from_parts(parts, req_body);
    let resp = clients.get(protocol).request(req).await.map_err(classify)?;
    Ok(resp.map(body::boxed))
}

/// Map a pooled-client failure to the proxy failure it stands for.
pub fn classify(e: hyper_util::client::legacy::Error) -> ProxyError {
    if e.is_connect() {
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            if let Some(ConnectError::Timeout(_)) = s.downcast_ref::<ConnectError>() {
                return ProxyError::ConnectTimeout;
            }
            source = s.source();
        }
        ProxyError::ConnectFailed
    } else if refused_stream(&e) {
        ProxyError::RefusedStream
    } else {
        ProxyError::UpstreamReset
    }
}

/// Whether the HTTP/2 layer under `e` says the upstream refused the stream.
fn refused_stream(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = s.source();
    }
    false
}

/// The response the proxy sends for its own failure `e`.
pub fn error_response(e: ProxyError) -> Response<Body> {
    let mut resp = Response::new(body::full(format!("{e}\n")));
    *resp.status_mut() = e.status();
    resp.headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static(e.reason()));
    resp
}
