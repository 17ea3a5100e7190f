//! The control plane's certificate authority, as istiod is one: a workload's agent sends a
//! signing request for its own key (`POST /meshsim.ca.v1/Sign`, JSON), the CA works out who the
//! caller is, refuses a request for any other identity, signs one for the caller's identity
//! valid for the configured lifetime from now on the CA's clock, and answers with it and its
//! validity.
//!
//! Who the caller is: Istio's CA checks a Kubernetes service-account token; ours trusts the
//! node name the request states and maps it to an identity with [`Authenticate`], which the
//! simulator answers from its pods. That is not authentication: anyone who can reach the port
//! can name any node. It stands for the token check, which is not modelled, and must not face an
//! untrusted network. A node it does not know is refused (403).
//!
//! Not here: when to ask (`agent.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Response, StatusCode};
use rustls::time_provider::TimeProvider;
use serde::{Deserialize, Serialize};

use crate::body::{Body, full};
use crate::identity::SpiffeId;
use crate::tls::{CertAuthority, Validity};

/// The path of the signing endpoint.
pub const SIGN_PATH: &str = "/meshsim.ca.v1/Sign";

/// Where the CA's root certificate (the trust bundle) is served, as PEM: what Istio mounts from
/// the `istio-ca-root-cert` ConfigMap. Public material; a sidecar that fetches it over plaintext
/// trusts the network it fetches on for that one answer.
pub const ROOT_PATH: &str = "/meshsim.ca.v1/Root";

/// The largest request the CA reads (a signing request is under 1 KiB).
pub const MAX_REQUEST: usize = 64 << 10;

/// A workload's request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignRequest {
    /// Who asks (its node name).
    pub node: String,
    /// Its signing request, PEM.
    pub csr: String,
}

/// The CA's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignResponse {
    /// The certificate, PEM.
    pub cert: String,
    /// First second it is valid (Unix).
    pub not_before: u64,
    /// Last second it is valid (Unix).
    pub not_after: u64,
}

/// Who a caller is, by its node name.
pub type Authenticate = Arc<dyn Fn(&str) -> Option<SpiffeId> + Send + Sync>;

/// The signing service.
pub struct CaService {
    /// The CA that signs now; replaced at the middle step of a root rotation.
    ca: std::sync::Mutex<Arc<CertAuthority>>,
    lifetime: Duration,
    clock: Arc<dyn TimeProvider>,
    who: Authenticate,
    signed: AtomicU64,
}

impl std::fmt::Debug for CaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaService")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl CaService {
    /// Sign with `ca` for `lifetime` from now on `clock`, for the callers `who` knows.
    pub fn new(
        ca: Arc<CertAuthority>,
        lifetime: Duration,
        clock: Arc<dyn TimeProvider>,
        who: Authenticate,
    ) -> Self {
        Self {
            ca: std::sync::Mutex::new(ca),
            lifetime,
            clock,
            who,
            signed: AtomicU64::new(0),
        }
    }

    /// Sign with `ca` from now on: the middle step of a root rotation, once every workload
    /// trusts both the old root and `ca`'s (and before the old one is dropped).
    pub fn set_signer(&self, ca: Arc<CertAuthority>) {
        *self.ca.lock().unwrap_or_else(|p| p.into_inner()) = ca;
    }

    /// The root certificate of the CA signing now, as PEM.
    pub fn root_pem(&self) -> String {
        self.ca
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ca_pem()
            .to_string()
    }

    /// Certificates signed so far.
    pub fn signed(&self) -> u64 {
        self.signed.load(Ordering::Relaxed)
    }

    /// Answer one request's body.
    pub fn handle(&self, body: &[u8]) -> Response<Body> {
        let reply = |status: StatusCode, text: String| {
            let mut r = Response::new(full(text));
            *r.status_mut() = status;
            r
        };
        let req: SignRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return reply(StatusCode::BAD_REQUEST, format!("{e}\n")),
        };
        let Some(id) = (self.who)(&req.node) else {
            return reply(
                StatusCode::FORBIDDEN,
                format!("unknown caller {:?}\n", req.node),
            );
        };
        let Some(now) = self.clock.current_time() else {
            return reply(StatusCode::SERVICE_UNAVAILABLE, "no clock\n".into());
        };
        let validity = Validity::starting(now, self.lifetime);
        let ca = self.ca.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match ca.sign_request(&req.csr, &id, validity) {
            Ok(cert) => {
                self.signed.fetch_add(1, Ordering::Relaxed);
                let answer = SignResponse {
                    cert,
                    not_before: validity.not_before,
                    not_after: validity.not_after,
                };
                let mut r = Response::new(full(
                    serde_json::to_vec(&answer).expect("an answer serialises"),
                ));
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                r
            }
            Err(e) => reply(StatusCode::FORBIDDEN, format!("{e}\n")),
        }
    }
}
