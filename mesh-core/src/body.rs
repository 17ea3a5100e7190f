//! The body type shared by every leg of the proxy, so a request received on one protocol can be
//! forwarded on another without copying.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// Errors a body can carry, type-erased so hyper's and ours mix.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every request and response that crosses the proxy.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body holding `bytes` in full.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// Box a downstream body, noting in the flag returned if reading it fails (malformed chunked
/// framing, the client reset mid-body): a failed forward is then the client's doing, not the
/// upstream's.
pub fn watched<B>(body: B) -> (Body, std::sync::Arc<std::sync::atomic::AtomicBool>)
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let broke = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = broke.clone();
    let body = body
        .map_err(move |e| {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
            e.into()
        })
        .boxed();
    (body, broke)
}

/// Box any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}
