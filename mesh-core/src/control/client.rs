//! A proxy's side of the watch stream: subscribe to every resource type, apply each push that
//! checks out and ACK it, refuse what does not and NACK it, and keep the last good
//! configuration whenever the control plane is unreachable, reconnecting with backoff.
//!
//! A push of policies is judged per destination, as Envoy judges a state-of-the-world CDS
//! update per cluster: valid ones are applied, an invalid one keeps the destination's previous
//! policy, and the push is NACKed with every error while the proxy's version stays the
//! previous one. What the proxy runs is published on its [`ConfigTx`], where the data path
//! already reads it.
//!
//! Reconnects back off as Envoy's xDS stream does (`JitteredExponentialBackOffStrategy`,
//! 500 ms base, 30 s cap, full jitter), from a seeded RNG. A dead control plane is noticed by
//! HTTP/2 keep-alive pings (Istio's xDS cluster: 30 s interval, 10 s timeout by default in
//! [`Settings`]) or by the connection failing.
//!
//! Not here: the control plane (`server.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;

use super::body::{ChannelBody, channel};
use super::wire::{self, Decoder, Push, ResourceType, Resources, STREAM_PATH};
use crate::config::{ConfigTx, Snapshot};
use crate::net::{NetExecutor, Network};
use crate::policy::Policies;
use crate::registry::Registry;

/// How a proxy talks to its control plane.
#[derive(Clone, Debug)]
pub struct Settings {
    /// First reconnect backoff (Envoy: 500 ms).
    pub backoff_base: Duration,
    /// Largest reconnect backoff (Envoy: 30 s).
    pub backoff_max: Duration,
    /// HTTP/2 ping interval on the stream (Istio: 30 s).
    pub keepalive: Duration,
    /// How long a ping may go unanswered before the stream is declared dead (Istio: 10 s).
    pub keepalive_timeout: Duration,
    /// Bound on connecting (Istio's xDS cluster: 1 s... its `connectTimeout` default is 10 s;
    /// a control plane is near, so 1 s).
    pub connect_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            keepalive: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// Something the subscriber did, for counters and reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The stream is up.
    Connected,
    /// The stream failed or could not be opened; the proxy keeps its configuration.
    Disconnected {
        /// Why, as text.
        reason: String,
    },
    /// A push was applied whole and ACKed.
    Applied {
        /// Its type.
        kind: ResourceType,
        /// Its version.
        version: u64,
        /// Its source revision.
        revision: u64,
    },
    /// A push was refused (at least in part) and NACKed.
    Refused {
        /// Its type.
        kind: ResourceType,
        /// The refused version.
        version: u64,
        /// Its source revision.
        revision: u64,
        /// Why.
        error: String,
    },
}

/// Hears the subscriber's events.
pub type OnEvent = Arc<dyn Fn(&Event) + Send + Sync>;

/// The configuration a proxy runs, kept across streams.
#[derive(Debug)]
struct Held {
    registry: Registry,
    policies: Policies,
    versions: BTreeMap<ResourceType, u64>,
    published: u64,
}

/// A proxy's subscription to its control plane.
pub struct Subscriber<N: Network> {
    net: N,
    control_plane: std::net::SocketAddr,
    node: String,
    settings: Settings,
    rng: ChaCha8Rng,
    tx: ConfigTx,
    held: Held,
    on_event: OnEvent,
}

impl<N: Network> std::fmt::Debug for Subscriber<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("node", &self.node)
            .field("control_plane", &self.control_plane)
            .finish_non_exhaustive()
    }
}

impl<N: Network + Unpin> Subscriber<N> {
    /// A subscriber for proxy `node`, publishing on `tx`. What `tx` holds now is the
    /// configuration to keep until the first push (a bootstrap, or nothing at all); `versions`
    /// says which versions it is, if any.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        net: N,
        control_plane: std::net::SocketAddr,
        node: impl Into<String>,
        settings: Settings,
        seed: u64,
        tx: ConfigTx,
        versions: BTreeMap<ResourceType, u64>,
        on_event: OnEvent,
    ) -> Self {
        let (registry, policies, published) = {
            let now = tx.borrow();
            (now.registry.clone(), now.policies().clone(), now.version)
        };
        Self {
            net,
            control_plane,
            node: node.into(),
            settings,
            rng: ChaCha8Rng::seed_from_u64(seed),
            tx,
            held: Held {
                registry,
                policies,
                versions,
                published,
            },
            on_event,
        }
    }

    /// Stay subscribed, forever.
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            let reason = match self.session(&mut failures).await {
                Ok(()) => "the control plane ended the stream".to_string(),
                Err(e) => e,
            };
            (self.on_event)(&Event::Disconnected { reason });
            let wait = crate::retry::backoff(
                &mut self.rng,
                self.settings.backoff_base,
                self.settings.backoff_max,
                failures,
            );
            failures = failures.saturating_add(1);
            tokio::time::sleep(wait).await;
        }
    }

    /// One stream, until it fails. A push received resets `failures`.
    async fn session(&mut self, failures: &mut u32) -> Result<(), String> {
        let s = &self.settings;
        let stream = tokio::time::timeout(s.connect_timeout, self.net.connect(self.control_plane))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let (mut send, conn) =
            hyper::client::conn::http2::Builder::new(NetExecutor(self.net.clone()))
                .timer(TokioTimer::new())
                .keep_alive_interval(s.keepalive)
                .keep_alive_timeout(s.keepalive_timeout)
                .keep_alive_while_idle(true)
                .handshake::<_, ChannelBody>(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        self.net.spawn(async move {
            let _ = conn.await;
        });
        let (answers, body) = channel();
        for kind in ResourceType::ALL {
            let subscribe = wire::Request {
                node: self.node.clone(),
                kind,
                version: self.held.versions.get(&kind).copied(),
                nonce: None,
                error: None,
            };
            answers
                .send(wire::encode(&subscribe))
                .await
                .map_err(|_| "stream closed".to_string())?;
        }
        let req = http::Request::post(format!("http://control-plane{STREAM_PATH}"))
            .header(http::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body)
            .expect("a valid request");
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("stream: {e}"))?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("stream refused with {}", resp.status()));
        }
        (self.on_event)(&Event::Connected);
        let mut body = resp.into_body();
        let mut decoder = Decoder::default();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("stream: {e}"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            decoder.push(&data);
            while let Some(push) = decoder.message::<Push>() {
                let push = push.map_err(|e| e.to_string())?;
                *failures = 0;
                self.take(push, &answers).await?;
            }
        }
        Ok(())
    }

    /// Apply what checks out of `push`, publish it, and answer.
    async fn take(
        &mut self,
        push: Push,
        answers: &mpsc::Sender<bytes::Bytes>,
    ) -> Result<(), String> {
        let kind = push.resources.kind();
        let errors = match push.resources {
            Resources::Endpoints(registry) => {
                self.held.registry = registry;
                Vec::new()
            }
            Resources::Policies(policies) => {
                let mut errors = Vec::new();
                let mut next = Policies::default();
                for (service, p) in policies.services {
                    match p.validate(&service) {
                        Ok(()) => {
                            next.services.insert(service, p);
                        }
                        Err(e) => {
                            errors.push(e.to_string());
                            if let Some(old) = self.held.policies.services.get(&service) {
                                next.services.insert(service, old.clone());
                            }
                        }
                    }
                }
                self.held.policies = next;
                errors
            }
        };
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        let event = match &error {
            None => {
                self.held.versions.insert(kind, push.version);
                Event::Applied {
                    kind,
                    version: push.version,
                    revision: push.revision,
                }
            }
            Some(e) => Event::Refused {
                kind,
                version: push.version,
                revision: push.revision,
                error: e.clone(),
            },
        };
        self.held.published += 1;
        self.tx.send_replace(Arc::new(Snapshot::new(
            self.held.published,
            self.held.registry.clone(),
            &self.held.policies,
        )));
        (self.on_event)(&event);
        let answer = wire::Request {
            node: self.node.clone(),
            kind,
            version: self.held.versions.get(&kind).copied(),
            nonce: Some(push.nonce),
            error,
        };
        answers
            .send(wire::encode(&answer))
            .await
            .map_err(|_| "stream closed".to_string())
    }
}
