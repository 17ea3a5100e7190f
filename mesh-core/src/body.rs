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

/// `body`, holding `guard` until it has been read to its end (or dropped): how a connection
/// knows a response is still going out after its head was handed over.
pub fn holding<G: Send + Sync + Unpin + 'static>(body: Body, guard: G) -> Body {
    Holding {
        inner: body,
        guard: Some(guard),
    }
    .boxed()
}

struct Holding<G> {
    inner: Body,
    guard: Option<G>,
}

impl<G: Unpin> http_body::Body for Holding<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None | Some(Err(_)))) {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Box any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}
