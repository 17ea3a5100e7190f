//! Mutual TLS between sidecars, on rustls (the ring provider: pure Rust and C, no cmake), with
//! SPIFFE workload identities (`spiffe://<trust domain>/ns/<ns>/sa/<account>`,
//! [`crate::identity`]) as Istio and Linkerd issue them.
//!
//! What is checked, on both sides of every handshake ([`verify`]): the peer's chain ends at an
//! anchor of the current trust bundle and is valid now (by the clock the settings were given:
//! the system's on real sockets, a simulated one elsewhere); its leaf is an X.509-SVID (exactly
//! one URI SAN, a SPIFFE ID, not a CA, `digitalSignature`) of our trust domain; and, on
//! outbound connections whose destination's identity is known, that the server is exactly that
//! identity ([`MeshTls::client_for`]; no DNS name is involved, SNI is off). The server requires
//! a client certificate. A refused handshake is classified ([`TlsFailure`]) and counted by
//! reason on the side that saw it.
//!
//! A sidecar's certificate can be replaced while it serves ([`MeshTls::rotate`]: handshakes that
//! start afterwards present the new one, connections already up keep theirs), and so can the
//! trust bundle ([`MeshTls::set_roots`], two anchors during a root rotation). [`Renewal`] says
//! when a certificate is due for renewal under Istio's and Linkerd's rules.
//!
//! [`CertAuthority`] issues certificates (rcgen). Not here: a CA service that workloads ask for
//! certificates, which belongs to the control plane.

mod ca;
mod failure;
mod mode;
mod renewal;
mod stream;
mod verify;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};

pub use ca::{CertAuthority, Issued, KeyKind, Odd, SignError, Validity, csr};
pub use failure::TlsFailure;
pub use mode::{Mode, TLS_HANDSHAKE};
pub use renewal::Renewal;
pub use stream::MaybeTls;

use crate::identity::{IdError, SpiffeId, SvidError, svid_id};

/// The SPIFFE ID of a DER certificate if it is a valid X.509-SVID.
pub fn spiffe_id(cert: &CertificateDer<'_>) -> Option<String> {
    svid_id(cert.as_ref()).ok().map(|id| id.to_string())
}

/// Why TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM input had no usable certificate or key.
    #[error("{0}: no {1} found in PEM")]
    Pem(&'static str, &'static str),
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// Certificate generation failed.
    #[error("issuing a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// The workload's own certificate is not an X.509-SVID.
    #[error("the workload certificate: {0}")]
    Svid(#[from] SvidError),
    /// A SPIFFE ID to issue for is invalid.
    #[error("SPIFFE ID: {0}")]
    Id(#[from] IdError),
    /// A validity bound is not a representable date.
    #[error("validity bound {0} is not a representable date")]
    Validity(u64),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The name clients put in the handshake. SNI is off; the judges check SPIFFE IDs, not names.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("mesh.local").expect("a valid DNS name")
}

/// Wall time as tokio's clock measures it: `base` plus the tokio time elapsed since `start`.
/// Under a paused (simulated) tokio clock certificates age in simulated time; on real sockets
/// it runs with the system clock from `base`.
#[derive(Debug)]
pub struct TokioWallClock {
    base: Duration,
    start: tokio::time::Instant,
}

impl TokioWallClock {
    /// A clock reading `base` (since the Unix epoch) now.
    pub fn starting_at(base: Duration) -> Self {
        Self::anchored(base, tokio::time::Instant::now())
    }

    /// A clock that read `base` at `start`: every clock of a simulated run shares the run's
    /// start, whenever it is made.
    pub fn anchored(base: Duration, start: tokio::time::Instant) -> Self {
        Self { base, start }
    }
}

/// The system's wall clock, which judges validity on real sockets (never in simulation).
pub fn system_clock() -> Arc<dyn TimeProvider> {
    Arc::new(rustls::time_provider::DefaultTimeProvider)
}

impl TimeProvider for TokioWallClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(self.base + self.start.elapsed()))
    }
}

/// The certificate a sidecar presents, replaceable while it serves.
#[derive(Debug)]
struct Presented(RwLock<Arc<CertifiedKey>>);

impl Presented {
    fn get(&self) -> Arc<CertifiedKey> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ResolvesServerCert for Presented {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ResolvesClientCert for Presented {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

thread_local! {
    /// The trust generation under which the handshake being processed on this thread
    /// authenticated its peer (by a certificate check, or by resuming a session of that
    /// generation): rustls checks the client's certificate and stores the session's ticket
    /// within one processing call, so the ticket is tagged with the generation that judged the
    /// peer, not the one current when it is stored. A handshake that straddled a bundle change
    /// would otherwise store a session the new bundle never judged, and every resumption of it
    /// would skip the check (seen: 1 run in 5 of `dropping_the_old_root_too_early_fails_handshakes`).
    static AUTHENTICATED_UNDER: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

fn authenticated_under(generation: u32) {
    AUTHENTICATED_UNDER.with(|g| g.set(Some(generation)));
}

/// The server's resumption cache, forgetting every session when the trust bundle changes: a
/// resumed TLS 1.3 session skips the certificate check, so a peer authenticated under a root
/// that is no longer trusted must make a full handshake.
#[derive(Debug)]
struct Sessions {
    cache: Arc<rustls::server::ServerSessionMemoryCache>,
    trust: Arc<verify::Trust>,
}

impl Sessions {
    fn current(&self, v: Vec<u8>) -> Option<Vec<u8>> {
        let tag = self.trust.generation().to_be_bytes();
        let fresh = (v.len() >= 4 && v[..4] == tag).then(|| v[4..].to_vec());
        if fresh.is_some() {
            authenticated_under(self.trust.generation());
        }
        fresh
    }
}

impl rustls::server::StoresServerSessions for Sessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let generation = AUTHENTICATED_UNDER
            .with(|g| g.take())
            .unwrap_or_else(|| self.trust.generation());
        let mut tagged = generation.to_be_bytes().to_vec();
        tagged.extend_from_slice(&value);
        self.cache.put(key, tagged)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.cache.get(key).and_then(|v| self.current(v))
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.cache.take(key).and_then(|v| self.current(v))
    }
    fn can_cache(&self) -> bool {
        true
    }
}

/// A sidecar's TLS settings, both directions. Cheap to clone (one shared state).
#[derive(Clone, Debug)]
pub struct MeshTls(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    identity: RwLock<SpiffeId>,
    trust: Arc<verify::Trust>,
    presented: Arc<Presented>,
    /// Replaced (with an empty resumption cache) when the trust bundle changes.
    server: RwLock<Arc<ServerConfig>>,
    /// For destinations whose identity is unknown: any workload of the trust domain. Rebuilt
    /// (with an empty resumption cache) when the trust bundle changes.
    client: RwLock<Arc<ClientConfig>>,
    /// Per expected server identity, built on first use.
    by_identity: Mutex<BTreeMap<SpiffeId, Arc<ClientConfig>>>,
    provider: Arc<CryptoProvider>,
    time: Arc<dyn TimeProvider>,
    /// What the inbound listener accepts.
    mode: mode::Current,
}

fn roots_from_pem(pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()).flatten() {
        roots.add(c)?;
    }
    if roots.is_empty() {
        return Err(TlsError::Pem("CA", "certificate"));
    }
    Ok(roots)
}

fn certified_key(
    chain: &str,
    key: &str,
    provider: &CryptoProvider,
) -> Result<(SpiffeId, CertifiedKey), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .flatten()
        .collect();
    let leaf = chain
        .first()
        .ok_or(TlsError::Pem("workload", "certificate"))?;
    let id = svid_id(leaf.as_ref())?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|_| TlsError::Pem("workload", "private key"))?;
    Ok((id, CertifiedKey::from_der(chain, key, provider)?))
}

impl MeshTls {
    /// Settings from PEM text (the trust bundle, this workload's chain and key) on the system
    /// clock. The trust domain is the workload certificate's.
    pub fn from_pem(ca: &str, chain: &str, key: &str) -> Result<Self, TlsError> {
        Self::with_clock(
            ca,
            chain,
            key,
            Arc::new(rustls::time_provider::DefaultTimeProvider),
        )
    }

    /// The same, judging validity by `time`.
    pub fn with_clock(
        ca: &str,
        chain: &str,
        key: &str,
        time: Arc<dyn TimeProvider>,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let roots = roots_from_pem(ca)?;
        let (identity, ck) = certified_key(chain, key, &provider)?;
        let trust = Arc::new(verify::Trust::new(
            identity.trust_domain().to_string(),
            roots,
            provider.clone(),
        )?);
        let presented = Arc::new(Presented(RwLock::new(Arc::new(ck))));
        let server = Self::server_config(&provider, &time, &trust, &presented)?;
        let client = Self::client_config(&provider, &time, &trust, &presented, None)?;
        Ok(Self(Arc::new(Inner {
            identity: RwLock::new(identity),
            trust,
            presented,
            server: RwLock::new(server),
            client: RwLock::new(client),
            by_identity: Mutex::default(),
            provider,
            time,
            mode: mode::Current::default(),
        })))
    }

    /// A server configuration with its own, empty resumption cache.
    fn server_config(
        provider: &Arc<CryptoProvider>,
        time: &Arc<dyn TimeProvider>,
        trust: &Arc<verify::Trust>,
        presented: &Arc<Presented>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let mut server = ServerConfig::builder_with_details(provider.clone(), time.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(verify::ClientJudge(trust.clone())))
            .with_cert_resolver(presented.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        server.session_storage = Arc::new(Sessions {
            cache: rustls::server::ServerSessionMemoryCache::new(256),
            trust: trust.clone(),
        });
        Ok(Arc::new(server))
    }

    fn client_config(
        provider: &Arc<CryptoProvider>,
        time: &Arc<dyn TimeProvider>,
        trust: &Arc<verify::Trust>,
        presented: &Arc<Presented>,
        expect: Option<SpiffeId>,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let judge = verify::ServerJudge {
            trust: trust.clone(),
            expect,
        };
        let mut client = ClientConfig::builder_with_details(provider.clone(), time.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(judge))
            .with_client_cert_resolver(presented.clone());
        client.enable_sni = false;
        Ok(Arc::new(client))
    }

    /// What the inbound listener accepts now (strict unless set).
    pub fn mode(&self) -> Mode {
        self.0.mode.get()
    }

    /// Change what the inbound listener accepts; connections accepted before drain.
    pub fn set_mode(&self, m: Mode) {
        self.0.mode.set(m);
    }

    /// Changes of the mode, for connections to drain on.
    pub fn mode_changes(&self) -> tokio::sync::watch::Receiver<Mode> {
        self.0.mode.watch()
    }

    /// Now, on the clock these settings judge validity by.
    pub fn now(&self) -> Option<UnixTime> {
        self.0.time.current_time()
    }

    /// This workload's identity (of the certificate it presents now).
    pub fn identity(&self) -> SpiffeId {
        self.0
            .identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The trust domain whose workloads it accepts.
    pub fn trust_domain(&self) -> &str {
        &self.0.trust.domain
    }

    /// For connections other sidecars open to this one.
    pub fn server(&self) -> Arc<ServerConfig> {
        self.0
            .server
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// For connections to a sidecar of any identity in the trust domain.
    pub fn client(&self) -> Arc<ClientConfig> {
        self.0
            .client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// For connections to a sidecar that must be `expected`.
    pub fn client_for(&self, expected: &SpiffeId) -> Arc<ClientConfig> {
        let mut map = self.0.by_identity.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(expected) {
            return c.clone();
        }
        let i = &self.0;
        match Self::client_config(
            &i.provider,
            &i.time,
            &i.trust,
            &i.presented,
            Some(expected.clone()),
        ) {
            Ok(c) => {
                map.insert(expected.clone(), c.clone());
                c
            }
            // Building can only fail on protocol versions, which `with_clock` already built
            // with; fall back to trust-domain checks rather than refusing every connection.
            Err(_) => self.client(),
        }
    }

    /// Present `chain` and `key` from the next handshake on (certificate rotation). The new
    /// certificate must be an SVID of the same trust domain.
    pub fn rotate(&self, chain: &str, key: &str) -> Result<(), TlsError> {
        let (id, ck) = certified_key(chain, key, &self.0.provider)?;
        if id.trust_domain() != self.0.trust.domain {
            return Err(TlsError::Svid(SvidError::ForeignTrustDomain {
                got: id.to_string(),
                want: self.0.trust.domain.clone(),
            }));
        }
        *self
            .0
            .presented
            .0
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(ck);
        *self.0.identity.write().unwrap_or_else(|p| p.into_inner()) = id;
        Ok(())
    }

    /// Trust the anchors in `pem` from the next handshake on (root rotation: both roots during
    /// the overlap, then the new one alone).
    ///
    /// Sessions resumed without a certificate check would outlive the change, so both sides
    /// forget theirs: the server's cache moves to a new generation, the client configurations
    /// are rebuilt with empty caches.
    pub fn set_roots(&self, pem: &str) -> Result<(), TlsError> {
        let i = &self.0;
        // Moves the trust to a new generation: sessions of older ones are not resumed.
        i.trust.set_roots(roots_from_pem(pem)?)?;
        // And a new server configuration with an empty cache: a handshake in flight across the
        // change finishes on the old configuration and stores its session there, where no
        // later connection looks (listeners take `server()` per connection). The generation
        // tags cover callers that hold one configuration for good.
        let fresh = Self::server_config(&i.provider, &i.time, &i.trust, &i.presented)?;
        *i.server.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        let fresh = Self::client_config(&i.provider, &i.time, &i.trust, &i.presented, None)?;
        *i.client.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        i.by_identity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }
}

/// Which identity the sidecar at an address must prove (from the registry).
pub type ExpectedIdentity = Arc<dyn Fn(std::net::SocketAddr) -> Option<SpiffeId> + Send + Sync>;
/// Who counts a refused handshake.
pub type OnFailure = Arc<dyn Fn(&TlsFailure) + Send + Sync>;

/// How a sidecar opens TLS to another: with its settings, demanding the identity the registry
/// names for the address, counting what goes wrong.
#[derive(Clone)]
pub struct Dialer {
    tls: MeshTls,
    expect: ExpectedIdentity,
    on_failure: OnFailure,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer").field("tls", &self.tls).finish()
    }
}

impl Dialer {
    /// A dialer with `tls`, `expect` and `on_failure`.
    pub fn new(tls: MeshTls, expect: ExpectedIdentity, on_failure: OnFailure) -> Self {
        Self {
            tls,
            expect,
            on_failure,
        }
    }

    /// A dialer that accepts any workload of the trust domain and counts nothing.
    pub fn any(tls: MeshTls) -> Self {
        Self::new(tls, Arc::new(|_| None), Arc::new(|_| {}))
    }

    /// The TLS handshake over `stream`, already connected to `addr`.
    pub async fn connect<S>(
        &self,
        addr: std::net::SocketAddr,
        stream: S,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let cfg = match (self.expect)(addr) {
            Some(id) => self.tls.client_for(&id),
            None => self.tls.client(),
        };
        tokio_rustls::TlsConnector::from(cfg)
            .connect(server_name(), stream)
            .await
            .inspect_err(|e| (self.on_failure)(&TlsFailure::of(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_build_both_configs_and_carry_the_spiffe_id() {
        let ca = CertAuthority::new("cluster.local").unwrap();
        let i = ca.issue("reviews").unwrap();
        assert_eq!(i.spiffe_id, "spiffe://cluster.local/ns/default/sa/reviews");
        let tls = MeshTls::from_pem(ca.ca_pem(), &i.cert_pem, &i.key_pem).unwrap();
        assert_eq!(tls.server().alpn_protocols.len(), 2);
        assert_eq!(tls.identity().as_str(), i.spiffe_id);
        assert_eq!(tls.trust_domain(), "cluster.local");
        assert!(MeshTls::from_pem("", &i.cert_pem, &i.key_pem).is_err());
        assert!(MeshTls::from_pem(ca.ca_pem(), &i.cert_pem, "not a key").is_err());
        let odd = ca.issue_odd(Odd::NoSpiffeId).unwrap();
        assert!(matches!(
            MeshTls::from_pem(ca.ca_pem(), &odd.cert_pem, &odd.key_pem),
            Err(TlsError::Svid(SvidError::NoSpiffeId))
        ));
    }

    #[test]
    fn issued_svids_satisfy_the_standard_and_odd_ones_do_not() {
        let ca = CertAuthority::new("cluster.local").unwrap();
        let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let ok = ca.issue("a").unwrap();
        assert_eq!(
            svid_id(der(&ok.cert_pem).as_ref()).unwrap().as_str(),
            ok.spiffe_id
        );
        let a = "spiffe://cluster.local/ns/default/sa/a".to_string();
        let b = "spiffe://cluster.local/ns/default/sa/b".to_string();
        for (odd, want) in [
            (Odd::NoSpiffeId, SvidError::NoSpiffeId),
            (Odd::TwoIds(a.clone(), b), SvidError::SeveralUris(2)),
            (Odd::CaAsLeaf(a), SvidError::NotLeaf),
        ] {
            let c = ca.issue_odd(odd).unwrap();
            assert_eq!(svid_id(der(&c.cert_pem).as_ref()), Err(want));
        }
    }
}
