//! A workload's certificate agent (Istio's pilot-agent SDS half): it renews the workload's
//! certificate at the time its mesh's rule says ([`Renewal`]), asking the control plane's CA
//! with a signing request for a fresh key, and rotates it into the proxy's TLS settings while
//! they serve. A refused or unanswered request is retried with backoff (1 s doubling to 30 s,
//! full jitter, seeded: our choice; Istio retries its CSR through gRPC's own backoff); meanwhile
//! the old certificate serves until it expires, after which handshakes fail, as they would.
//!
//! Not here: the CA (`ca.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ca::{MAX_REQUEST, SIGN_PATH, SignRequest, SignResponse};
use crate::identity::SpiffeId;
use crate::net::Network;
use crate::tls::{KeyKind, MeshTls, Renewal, Validity};

/// What the agent did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertEvent {
    /// A certificate was issued and is now presented.
    Rotated {
        /// Its validity.
        validity: Validity,
    },
    /// A request failed; the current certificate stays.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Hears the agent's events.
pub type OnCertEvent = Arc<dyn Fn(&CertEvent) + Send + Sync>;

/// A workload's certificate agent.
pub struct CertAgent<N: Network> {
    /// The network to reach the CA on.
    pub net: N,
    /// The CA.
    pub ca: SocketAddr,
    /// This proxy's node name.
    pub node: String,
    /// The identity it asks for.
    pub identity: SpiffeId,
    /// Where the certificate goes.
    pub tls: MeshTls,
    /// When to renew.
    pub renewal: Renewal,
    /// The key algorithm.
    pub kind: KeyKind,
    /// Seed for jitter.
    pub seed: u64,
    /// Told of every rotation and failure.
    pub on_event: OnCertEvent,
}

impl<N: Network> std::fmt::Debug for CertAgent<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAgent")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl<N: Network + Unpin> CertAgent<N> {
    /// Keep the certificate fresh forever. `current` is the validity of the certificate the
    /// settings hold now (`None`: get one at once).
    pub async fn run(self, current: Option<Validity>) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut current = current;
        loop {
            if let Some(v) = current {
                let now = self.now();
                let due = self.renewal.renew_after(v, v.not_before, rng.random());
                let at = v.not_before + due.as_secs();
                tokio::time::sleep(Duration::from_secs(at.saturating_sub(now))).await;
            }
            let mut failures = 0u32;
            loop {
                match self.request().await {
                    Ok(v) => {
                        (self.on_event)(&CertEvent::Rotated { validity: v });
                        current = Some(v);
                        break;
                    }
                    Err(reason) => {
                        (self.on_event)(&CertEvent::Failed { reason });
                        let wait = crate::retry::backoff(
                            &mut rng,
                            Duration::from_secs(1),
                            Duration::from_secs(30),
                            failures,
                        );
                        failures = failures.saturating_add(1);
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
    }

    fn now(&self) -> u64 {
        self.tls.now().map_or(0, |t| t.as_secs())
    }

    /// One signing request, start to finish (10 s at most: a CA that dies mid-answer must not
    /// hang the agent), rotated in on success.
    async fn request(&self) -> Result<Validity, String> {
        tokio::time::timeout(Duration::from_secs(10), self.exchange())
            .await
            .map_err(|_| "the CA did not answer in 10 s".to_string())?
    }

    async fn exchange(&self) -> Result<Validity, String> {
        let (csr, key) = crate::tls::csr(&self.identity, self.kind).map_err(|e| e.to_string())?;
        let body = serde_json::to_vec(&SignRequest {
            node: self.node.clone(),
            csr,
        })
        .expect("a request serialises");
        let stream = tokio::time::timeout(Duration::from_secs(1), self.net.connect(self.ca))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        self.net.spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::post(format!("http://control-plane{SIGN_PATH}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .expect("a valid request");
        let resp = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
            .await
            .map_err(|_| "the CA did not answer".to_string())?
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_REQUEST)
            .collect()
            .await
            .map_err(|e| format!("answer: {e}"))?
            .to_bytes();
        if status != http::StatusCode::OK {
            return Err(format!(
                "the CA refused ({status}): {}",
                String::from_utf8_lossy(&bytes).trim()
            ));
        }
        let answer: SignResponse =
            serde_json::from_slice(&bytes).map_err(|e| format!("answer: {e}"))?;
        self.tls
            .rotate(&answer.cert, &key)
            .map_err(|e| format!("rotate: {e}"))?;
        Ok(Validity {
            not_before: answer.not_before,
            not_after: answer.not_after,
        })
    }
}
