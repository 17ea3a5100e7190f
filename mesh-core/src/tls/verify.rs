//! The two certificate judges of mutual TLS between sidecars.
//!
//! Both run webpki's chain check against the current trust bundle first (unknown CA, expired,
//! not yet valid, wrong extended key usage are webpki's verdicts, with their standard alerts),
//! then the X.509-SVID rules ([`crate::identity::svid_id`]) and the trust domain; the client's
//! judge of a server also checks the identity the destination must run as, when the caller
//! knows it. Failures of our own checks carry a typed [`SvidError`] inside
//! `CertificateError::Other`, so the side that refused counts the exact reason; rustls sends
//! those as `certificate_unknown` (RFC 8446: "some other issue arose in processing the
//! certificate, rendering it unacceptable"), as BoringSSL does when a custom check fails.
//!
//! The trust bundle is shared and replaceable ([`Trust`]): a root rotation installs a bundle
//! with both anchors for the overlap, then one without the old.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};
use rustls::{RootCertStore, SignatureScheme};

use crate::identity::{SpiffeId, SvidError, svid_id};

/// The current trust bundle and the webpki client verifier built over it.
#[derive(Debug)]
pub(super) struct Bundle {
    pub(super) roots: Arc<RootCertStore>,
    client: Arc<dyn ClientCertVerifier>,
}

/// The trust domain and its replaceable bundle, shared by both judges of one sidecar.
#[derive(Debug)]
pub(super) struct Trust {
    pub(super) domain: String,
    bundle: RwLock<Arc<Bundle>>,
    /// Bumped by every bundle change: resumable sessions are tagged with the generation their
    /// peer was authenticated under.
    generation: std::sync::atomic::AtomicU32,
    algs: WebPkiSupportedAlgorithms,
    provider: Arc<CryptoProvider>,
}

impl Trust {
    pub(super) fn new(
        domain: String,
        roots: RootCertStore,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, super::TlsError> {
        let bundle = Self::bundle(roots, &provider)?;
        Ok(Self {
            domain,
            algs: provider.signature_verification_algorithms,
            bundle: RwLock::new(bundle),
            generation: Default::default(),
            provider,
        })
    }

    fn bundle(
        roots: RootCertStore,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<Bundle>, super::TlsError> {
        let roots = Arc::new(roots);
        let client =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
        Ok(Arc::new(Bundle { roots, client }))
    }

    /// Replace the bundle; handshakes that start afterwards use the new one.
    pub(super) fn set_roots(&self, roots: RootCertStore) -> Result<(), super::TlsError> {
        let b = Self::bundle(roots, &self.provider)?;
        *self.bundle.write().unwrap_or_else(|p| p.into_inner()) = b;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The bundle's generation now.
    pub(super) fn generation(&self) -> u32 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn current(&self) -> Arc<Bundle> {
        self.bundle
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The peer's SPIFFE ID if its leaf is an SVID of our trust domain.
    fn identity(&self, end_entity: &CertificateDer<'_>) -> Result<SpiffeId, rustls::Error> {
        let id = svid_id(end_entity.as_ref()).map_err(refuse)?;
        if id.trust_domain() != self.domain {
            return Err(refuse(SvidError::ForeignTrustDomain {
                got: id.to_string(),
                want: self.domain.clone(),
            }));
        }
        Ok(id)
    }
}

/// Our refusal as a rustls error that keeps its typed reason.
fn refuse(e: SvidError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// The client's judge of a server: chain, SVID, trust domain and, if set, the exact identity.
#[derive(Debug)]
pub(super) struct ServerJudge {
    pub(super) trust: Arc<Trust>,
    pub(super) expect: Option<SpiffeId>,
}

impl ServerCertVerifier for ServerJudge {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        let bundle = self.trust.current();
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &bundle.roots,
            intermediates,
            now,
            self.trust.algs.all,
        )?;
        let id = self.trust.identity(end_entity)?;
        match &self.expect {
            Some(want) if *want != id => Err(refuse(SvidError::WrongIdentity {
                got: id.to_string(),
                want: want.to_string(),
            })),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.trust.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.trust.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust.algs.supported_schemes()
    }
}

/// The server's judge of a client: webpki's chain check (which also refuses an absent or empty
/// chain, client authentication being mandatory), then SVID and trust domain.
#[derive(Debug)]
pub(super) struct ClientJudge(pub(super) Arc<Trust>);

impl ClientCertVerifier for ClientJudge {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; clients send their one certificate regardless.
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The generation first: a bundle change during the check must not tag the session newer
        // than the bundle that judged it.
        let generation = self.0.generation();
        let verified =
            self.0
                .current()
                .client
                .verify_client_cert(end_entity, intermediates, now)?;
        self.0.identity(end_entity)?;
        super::authenticated_under(generation);
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algs.supported_schemes()
    }
}
