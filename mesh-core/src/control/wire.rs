//! The control plane's wire format: the two messages of the watch stream and their framing.
//!
//! One HTTP/2 request, `POST /meshsim.control.v1/Stream`, carries a stream each way: the
//! proxy's [`Request`]s in the request body, the control plane's [`Push`]es in the response
//! body. Each message is one line of JSON (newline-delimited), at most [`MAX_FRAME`] bytes.
//! The shapes are xDS's `DiscoveryRequest`/`DiscoveryResponse` reduced to what a mesh of one
//! trust domain needs: a resource type, the version a proxy runs, the nonce of the push it
//! answers, and an error detail that makes the answer a NACK. We chose JSON over protobuf
//! (tonic) so that the stream is readable with `curl` and the messages are the serde types
//! the rest of the mesh already uses; the state machine is xDS's either way.
//!
//! Not here: what either side does with a message (`server.rs`, `client.rs`, `sync.rs`).

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::policy::Policies;
use crate::registry::Registry;

/// The path of the watch stream.
pub const STREAM_PATH: &str = "/meshsim.control.v1/Stream";

/// The largest message either side accepts (16 MiB, gRPC's default is 4 MiB; a registry of
/// 10,000 endpoints is about 2 MiB of JSON).
pub const MAX_FRAME: usize = 16 << 20;

/// What a push carries, each with its own version (xDS's type URLs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    /// Services and their endpoints (xDS's EDS and CDS membership).
    Endpoints,
    /// Per-destination policy: retries, timeouts, breakers, balancing, splits, routes (xDS's
    /// CDS and RDS settings).
    Policies,
}

impl ResourceType {
    /// Every type, in the order a proxy subscribes.
    pub const ALL: [ResourceType; 2] = [ResourceType::Endpoints, ResourceType::Policies];

    /// The name reports and `proxy-status` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Endpoints => "endpoints",
            Self::Policies => "policies",
        }
    }
}

impl std::fmt::Display for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A proxy to the control plane: a subscription (no nonce), an ACK (the nonce of the push it
/// applied) or a NACK (the nonce and an error), as xDS's `DiscoveryRequest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Who asks: the proxy's node name (`db-0`).
    pub node: String,
    /// Of which type.
    #[serde(rename = "type")]
    pub kind: ResourceType,
    /// The version the proxy runs of this type (xDS `version_info`): after a NACK, still the
    /// previous one.
    pub version: Option<u64>,
    /// The push this answers (xDS `response_nonce`); none on a subscription.
    pub nonce: Option<String>,
    /// Why the push was refused (xDS `error_detail`); present makes this a NACK.
    pub error: Option<String>,
}

/// The control plane to a proxy: the whole current state of one type (state of the world).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Push {
    /// Its version; every change of the type's resources makes a new one.
    pub version: u64,
    /// Unique per push, so an answer names which push it answers.
    pub nonce: String,
    /// The source revision the resources were built from (the registry's change counter, as
    /// Kubernetes' `resourceVersion`): how a report tells which change reached a proxy when.
    pub revision: u64,
    /// The resources.
    pub resources: Resources,
}

/// The resources of one type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Resources {
    /// Every service and its endpoints.
    Endpoints(Registry),
    /// Every destination's policy.
    Policies(Policies),
}

impl Resources {
    /// Which type these are.
    pub fn kind(&self) -> ResourceType {
        match self {
            Self::Endpoints(_) => ResourceType::Endpoints,
            Self::Policies(_) => ResourceType::Policies,
        }
    }
}

/// Why a stream's bytes were not a message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A line longer than the decoder's limit (the stream is closed: it cannot be
    /// resynchronised).
    #[error("a message longer than allowed")]
    TooLarge,
    /// A line that is not the expected message.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// `msg` as one frame: its JSON and a newline.
pub fn encode<T: Serialize>(msg: &T) -> Bytes {
    let mut v = serde_json::to_vec(msg).expect("wire messages serialise");
    v.push(b'\n');
    Bytes::from(v)
}

/// The largest message a control plane accepts from a proxy (a request is about 100 bytes).
pub const MAX_REQUEST: usize = 64 << 10;

/// Splits a byte stream into messages, never holding more than its limit of one, and looking
/// at each byte once.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    /// Bytes already searched for a newline.
    scanned: usize,
    limit: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::with_limit(MAX_FRAME)
    }
}

impl Decoder {
    /// A decoder refusing messages longer than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            limit,
        }
    }

    /// Add bytes as they arrive.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if one has arrived.
    pub fn message<T: for<'de> Deserialize<'de>>(&mut self) -> Option<Result<T, WireError>> {
        let found = self.buf[self.scanned..].iter().position(|&b| b == b'\n');
        match found.map(|i| self.scanned + i) {
            Some(end) if end > self.limit => Some(Err(WireError::TooLarge)),
            Some(end) => {
                let line = self.buf.split_to(end + 1);
                self.scanned = 0;
                Some(serde_json::from_slice(&line[..end]).map_err(WireError::from))
            }
            None if self.buf.len() > self.limit => Some(Err(WireError::TooLarge)),
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_at_newlines_whatever_the_chunks() {
        let a = Request {
            node: "db-0".into(),
            kind: ResourceType::Policies,
            version: Some(3),
            nonce: Some("1-7".into()),
            error: None,
        };
        let b = Request {
            error: Some("bad".into()),
            ..a.clone()
        };
        let bytes = [encode(&a), encode(&b)].concat();
        for cut in 0..bytes.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for chunk in [&bytes[..cut], &bytes[cut..]] {
                d.push(chunk);
                while let Some(m) = d.message::<Request>() {
                    got.push(m.unwrap());
                }
            }
            assert_eq!(got, vec![a.clone(), b.clone()], "cut at {cut}");
        }
    }

    #[test]
    fn garbage_and_floods_are_errors_not_allocations() {
        let mut d = Decoder::default();
        d.push(b"{\"node\":1}\n");
        assert!(matches!(
            d.message::<Request>(),
            Some(Err(WireError::Malformed(_)))
        ));
        let mut d = Decoder::default();
        d.push(&vec![b'x'; MAX_FRAME + 1]);
        assert!(matches!(
            d.message::<Request>(),
            Some(Err(WireError::TooLarge))
        ));
    }
}
