//! Mutual TLS between sidecars, on rustls (the ring provider: pure Rust and C, no cmake), with
//! SPIFFE identities (`spiffe://<trust domain>/ns/<ns>/sa/<account>`) in each workload
//! certificate's URI SAN, as Istio and Linkerd issue them.
//!
//! What is checked: both sides present a certificate chaining to the mesh's CA (the trust domain)
//! and carrying a SPIFFE ID; the server requires a client certificate, so a caller without one,
//! with an empty chain, with one from another CA or with no SPIFFE ID is refused at the handshake
//! ([`SpiffeClientVerifier`]). What is not (yet): that the server's SPIFFE ID is the
//! one the caller expected for the destination service. That needs the control plane's
//! service-account map, and the control-plane issue adds it; until then any workload of the
//! trust domain may serve any service, as in a mesh with authorization policies off.
//!
//! [`TestCa`] issues certificates for tests and benches (rcgen); a real CA with rotation belongs
//! to the control plane.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{CertificateError, DistinguishedName};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// The SPIFFE ID in a certificate's URI SAN (the first `spiffe://` one), if any. Parsed with
/// x509-parser; a certificate that does not parse has no identity.
pub fn spiffe_id(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, c) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let san = c.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|g| match g {
        GeneralName::URI(u) if u.starts_with("spiffe://") => Some((*u).to_string()),
        _ => None,
    })
}

/// A sidecar's TLS settings, both directions.
#[derive(Clone, Debug)]
pub struct MeshTls {
    /// For connections this sidecar opens to other sidecars.
    pub client: Arc<ClientConfig>,
    /// For connections other sidecars open to this one.
    pub server: Arc<ServerConfig>,
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
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The name clients put in the handshake. SNI is off; our verifier checks the chain, not names.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("mesh.local").expect("a valid DNS name")
}

impl MeshTls {
    /// Settings from PEM text: the mesh CA's certificate, this workload's certificate chain and
    /// its private key.
    pub fn from_pem(ca: &str, chain: &str, key: &str) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca.as_bytes()).flatten() {
            roots.add(c)?;
        }
        if roots.is_empty() {
            return Err(TlsError::Pem("CA", "certificate"));
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
            .flatten()
            .collect();
        if chain.is_empty() {
            return Err(TlsError::Pem("workload", "certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
            .map_err(|_| TlsError::Pem("workload", "private key"))?;
        let roots = Arc::new(roots);
        let provider = provider();
        let client_verifier = Arc::new(SpiffeClientVerifier(
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?,
        ));
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let verifier = Arc::new(TrustDomainVerifier {
            roots,
            algs: provider.signature_verification_algorithms,
        });
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain, key)?;
        client.enable_sni = false;
        Ok(Self {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }
}

/// Accepts a server certificate that chains to the mesh CA, whatever names it carries (see the
/// module docs for why names are not checked yet).
#[derive(Debug)]
struct TrustDomainVerifier {
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for TrustDomainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        require_spiffe_id(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A mesh workload is known by its SPIFFE ID; a CA-signed certificate without one names nobody
/// and is refused (it could not be matched by an authorization policy or an access log).
fn require_spiffe_id(end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    match spiffe_id(end_entity) {
        Some(_) => Ok(()),
        None => Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        )),
    }
}

/// The server side of mTLS: webpki's chain check against the mesh CA (which also refuses an
/// absent or empty client chain, since client authentication is mandatory), then a SPIFFE ID.
#[derive(Debug)]
pub struct SpiffeClientVerifier(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
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
        let verified = self.0.verify_client_cert(end_entity, intermediates, now)?;
        require_spiffe_id(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A throwaway certificate authority for tests and benches.
pub struct TestCa {
    trust_domain: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("trust_domain", &self.trust_domain)
            .finish()
    }
}

/// A workload's certificate and key, PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The SPIFFE ID in the certificate.
    pub spiffe_id: String,
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl TestCa {
    /// A self-signed CA for `trust_domain` (e.g. `cluster.local`).
    pub fn new(trust_domain: &str) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("meshsim CA {trust_domain}"),
        );
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Self {
            trust_domain: trust_domain.to_string(),
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.pem
    }

    /// A workload certificate for service account `sa` in namespace `default`.
    pub fn issue(&self, sa: &str) -> Result<Issued, TlsError> {
        let spiffe_id = format!("spiffe://{}/ns/default/sa/{sa}", self.trust_domain);
        let san = rcgen::SanType::URI(spiffe_id.as_str().try_into()?);
        self.sign(san, spiffe_id)
    }

    /// A certificate this CA signs that carries no SPIFFE ID (only a DNS name), for tests of
    /// what the mesh refuses.
    pub fn issue_without_spiffe_id(&self) -> Result<Issued, TlsError> {
        let san = rcgen::SanType::DnsName("mesh.local".try_into()?);
        self.sign(san, String::new())
    }

    /// A workload certificate with the one subject alternative name `san`, for both client and
    /// server authentication, signed by this CA.
    fn sign(&self, san: rcgen::SanType, spiffe_id: String) -> Result<Issued, TlsError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![san];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            spiffe_id,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Ready-made settings for workload `sa`.
    pub fn mesh_tls(&self, sa: &str) -> Result<MeshTls, TlsError> {
        let i = self.issue(sa)?;
        MeshTls::from_pem(&self.pem, &i.cert_pem, &i.key_pem)
    }
}

/// A client connection that may be wrapped in TLS.
#[derive(Debug)]
pub enum MaybeTls<S> {
    /// Plain TCP.
    Plain(S),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<S>>),
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> tokio::io::AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite
    for MaybeTls<S>
{
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_build_both_configs_and_carry_the_spiffe_id() {
        let ca = TestCa::new("cluster.local").unwrap();
        let i = ca.issue("reviews").unwrap();
        assert_eq!(i.spiffe_id, "spiffe://cluster.local/ns/default/sa/reviews");
        let tls = MeshTls::from_pem(ca.ca_pem(), &i.cert_pem, &i.key_pem).unwrap();
        assert_eq!(tls.server.alpn_protocols.len(), 2);
        assert!(MeshTls::from_pem("", &i.cert_pem, &i.key_pem).is_err());
        assert!(MeshTls::from_pem(ca.ca_pem(), &i.cert_pem, "not a key").is_err());
    }
}
