//! Hop-by-hop header handling (RFC 9110 §7.6.1): headers that describe one connection must not be
//! forwarded to the next. That includes every header the `Connection` header names, and `TE`
//! except its `trailers` value, which gRPC needs end to end over HTTP/2. Two exceptions and one
//! addition: the W3C `traceparent` stays whatever `Connection` names (it is end to end, and
//! the proxy's own trace context must not be stripped by a client's `Connection:
//! traceparent`); and a message that came chunked loses its `Content-Length` too (RFC 9112
//! §6.3: with `Transfer-Encoding` present, `Content-Length` is not the length, and forwarding
//! it would frame the next hop's message wrongly).

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// Headers that are always hop-by-hop.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "transfer-encoding",
    "upgrade",
    "trailer",
];

/// Remove hop-by-hop headers from `headers` before forwarding them.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if name != crate::telemetry::trace::TRACEPARENT {
            headers.remove(name);
        }
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    let keeps_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    headers.remove(header::TE);
    if keeps_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_standard_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        h.insert("x-end-to-end", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-end-to-end"], "kept");
    }

    #[test]
    fn chunked_drops_content_length_and_traceparent_survives_connection() {
        let mut h = HeaderMap::new();
        h.insert("content-length", HeaderValue::from_static("2"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("connection", HeaderValue::from_static("traceparent"));
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        strip_hop_by_hop(&mut h);
        assert!(h.get("content-length").is_none(), "{h:?}");
        assert!(h.get("traceparent").is_some(), "{h:?}");
        // Without chunking, the length stays.
        let mut h = HeaderMap::new();
        h.insert("content-length", HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h["content-length"], "2");
    }

    #[test]
    fn te_keeps_only_trailers() {
        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("gzip, trailers"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h["te"], "trailers");
        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("te").is_none());
    }
}
