//! A certificate authority issuing X.509-SVIDs (rcgen): a self-signed root per trust domain and
//! workload certificates with the key usages the X.509-SVID standard asks of a leaf
//! (`digitalSignature`, CA flag false, exactly one URI SAN), each with the validity window it is
//! given, so lifetimes and expiry can be exercised on any clock.
//!
//! It also issues the certificates a mesh must refuse (no SPIFFE ID, several URI SANs, a CA
//! certificate used as a leaf), for tests of both sides of the handshake.
//!
//! A workload can also ask with a certificate signing request ([`csr`], [`CertAuthority::sign_request`]):
//! its key never leaves it, and the CA signs only the identity it has established for the
//! caller (a request naming another is refused), as Istio's CA does. Only the request's key is
//! used; usages, validity and serial are the CA's. Serial numbers count up within a range of the CA's own, and with
//! [`KeyKind::Ed25519`] every certificate and signature has one length, so a handshake's bytes
//! on the wire are the same length from run to run (the simulator needs that; ECDSA signatures
//! vary by a byte or two).
//!
//! Not here: when certificates are renewed ([`crate::tls::Renewal`]) and who asks (the control
//! plane's CA service, [`crate::control::ca`]).

use std::time::Duration;

use rustls::pki_types::UnixTime;

use super::{MeshTls, TlsError};
use crate::identity::SpiffeId;

/// When a certificate is valid, in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// First second it is valid.
    pub not_before: u64,
    /// Last second it is valid.
    pub not_after: u64,
}

impl Validity {
    /// From 1975 to 4096, rcgen's default: for tests and benches where time does not matter.
    pub const ALWAYS: Validity = Validity {
        not_before: 157_766_400,
        not_after: 66_166_560_000,
    };

    /// `lifetime` starting at `from`.
    pub fn starting(from: UnixTime, lifetime: Duration) -> Self {
        let from = from.as_secs();
        Self {
            not_before: from,
            not_after: from + lifetime.as_secs(),
        }
    }

    fn apply(self, params: &mut rcgen::CertificateParams) -> Result<(), TlsError> {
        let at = |s: u64| {
            time::OffsetDateTime::from_unix_timestamp(s as i64).map_err(|_| TlsError::Validity(s))
        };
        params.not_before = at(self.not_before)?;
        params.not_after = at(self.not_after)?;
        Ok(())
    }
}

/// A workload's certificate and key, PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The SPIFFE ID in the certificate (empty for the deliberately malformed ones).
    pub spiffe_id: String,
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM (PKCS#8).
    pub key_pem: String,
    /// When it is valid.
    pub validity: Validity,
}

/// The key algorithm of a CA and the workloads it serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256 (what Istio and Linkerd issue).
    #[default]
    EcdsaP256,
    /// Ed25519: fixed-length keys and signatures.
    Ed25519,
}

impl KeyKind {
    fn algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    fn generate(self) -> Result<rcgen::KeyPair, TlsError> {
        Ok(rcgen::KeyPair::generate_for(self.algorithm())?)
    }
}

/// A new key for `id` and a signing request for it: (request PEM, key PEM).
pub fn csr(id: &SpiffeId, kind: KeyKind) -> Result<(String, String), TlsError> {
    let key = kind.generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = vec![rcgen::SanType::URI(id.as_str().try_into()?)];
    let request = params.serialize_request(&key)?;
    Ok((request.pem()?, key.serialize_pem()))
}

/// Why the CA refused to sign a request.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Not a signing request, or its signature does not verify.
    #[error("not a valid signing request: {0}")]
    Malformed(String),
    /// It asks for another identity than the caller's.
    #[error("the request names {asked:?}, but the caller is {caller}")]
    WrongIdentity {
        /// What it asked for.
        asked: Vec<String>,
        /// Who the caller is.
        caller: String,
    },
    /// Signing failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A root CA for one trust domain.
pub struct CertAuthority {
    trust_domain: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
    kind: KeyKind,
    serial: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("trust_domain", &self.trust_domain)
            .finish()
    }
}

/// What a deliberately wrong certificate carries (see [`CertAuthority::issue_odd`]).
#[derive(Clone, Debug)]
pub enum Odd {
    /// Only a DNS name, no SPIFFE ID.
    NoSpiffeId,
    /// Two SPIFFE IDs.
    TwoIds(String, String),
    /// A valid SPIFFE ID on a certificate that is itself a CA.
    CaAsLeaf(String),
}

impl CertAuthority {
    /// A self-signed root for `trust_domain` (e.g. `cluster.local`), valid from 1975 to 4096.
    pub fn new(trust_domain: &str) -> Result<Self, TlsError> {
        Self::with_validity(trust_domain, Validity::ALWAYS)
    }

    /// A self-signed root for `trust_domain` valid for `validity`.
    pub fn with_validity(trust_domain: &str, validity: Validity) -> Result<Self, TlsError> {
        Self::with_key(trust_domain, validity, KeyKind::default())
    }

    /// A self-signed root for `trust_domain` valid for `validity`, its keys (and those of the
    /// certificates it issues itself) of `kind`.
    pub fn with_key(
        trust_domain: &str,
        validity: Validity,
        kind: KeyKind,
    ) -> Result<Self, TlsError> {
        let key = kind.generate()?;
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
        // Serials: this CA's tag (from its public key) in the high half, a count in the low
        // half. Unique across CAs that share a name (two roots of one trust domain during a
        // rotation), and always 8 bytes of DER (top byte 0x40-0x7f: positive, no padding).
        let tag = key.public_key_raw().iter().fold(0u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let base = 0x4000_0000_0000_0000 | ((tag & 0x3fff_ffff) << 32);
        params.serial_number = Some(rcgen::SerialNumber::from(base | 1));
        validity.apply(&mut params)?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            trust_domain: trust_domain.to_string(),
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
            kind,
            serial: std::sync::atomic::AtomicU64::new(base | 2),
        })
    }

    fn next_serial(&self) -> rcgen::SerialNumber {
        let n = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rcgen::SerialNumber::from(n)
    }

    /// Sign `csr_pem` (from [`csr`]) for `caller`, whom the CA has identified, valid for
    /// `validity`: a leaf with the X.509-SVID key usages, whatever usages the request asked
    /// for; a request naming another identity than `caller` is refused.
    pub fn sign_request(
        &self,
        csr_pem: &str,
        caller: &SpiffeId,
        validity: Validity,
    ) -> Result<String, SignError> {
        let mut request = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| SignError::Malformed(e.to_string()))?;
        let asked: Vec<String> = request
            .params
            .subject_alt_names
            .iter()
            .map(|s| match s {
                rcgen::SanType::URI(u) => u.as_str().to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        if asked != [caller.as_str()] {
            return Err(SignError::WrongIdentity {
                asked,
                caller: caller.to_string(),
            });
        }
        let p = &mut request.params;
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.is_ca = rcgen::IsCa::ExplicitNoCa;
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        p.serial_number = Some(self.next_serial());
        validity.apply(p)?;
        let cert = request.signed_by(&self.issuer).map_err(TlsError::from)?;
        Ok(cert.pem())
    }

    /// The root certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.pem
    }

    /// The trust domain it signs for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// A workload certificate for service account `sa` in namespace `default`, always valid.
    pub fn issue(&self, sa: &str) -> Result<Issued, TlsError> {
        let id = SpiffeId::workload(&self.trust_domain, "default", sa)?;
        self.issue_svid(&id, Validity::ALWAYS)
    }

    /// An X.509-SVID for `id` valid for `validity`.
    pub fn issue_svid(&self, id: &SpiffeId, validity: Validity) -> Result<Issued, TlsError> {
        let san = rcgen::SanType::URI(id.as_str().try_into()?);
        self.sign(vec![san], id.to_string(), validity, false)
    }

    /// A certificate this CA signs that no mesh may accept as a workload's, always valid.
    pub fn issue_odd(&self, odd: Odd) -> Result<Issued, TlsError> {
        let uri = |s: &str| -> Result<rcgen::SanType, TlsError> {
            Ok(rcgen::SanType::URI(s.try_into()?))
        };
        let (sans, ca) = match &odd {
            Odd::NoSpiffeId => (
                vec![rcgen::SanType::DnsName("mesh.local".try_into()?)],
                false,
            ),
            Odd::TwoIds(a, b) => (vec![uri(a)?, uri(b)?], false),
            Odd::CaAsLeaf(a) => (vec![uri(a)?], true),
        };
        self.sign(sans, String::new(), Validity::ALWAYS, ca)
    }

    /// A certificate with `sans`, for both client and server authentication, signed by this CA.
    fn sign(
        &self,
        sans: Vec<rcgen::SanType>,
        spiffe_id: String,
        validity: Validity,
        ca: bool,
    ) -> Result<Issued, TlsError> {
        let key = self.kind.generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.serial_number = Some(self.next_serial());
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![
                rcgen::KeyUsagePurpose::DigitalSignature,
                rcgen::KeyUsagePurpose::KeyCertSign,
            ];
        } else {
            params.is_ca = rcgen::IsCa::ExplicitNoCa;
            params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        }
        validity.apply(&mut params)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            spiffe_id,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            validity,
        })
    }

    /// Ready-made settings for workload `sa` (system clock).
    pub fn mesh_tls(&self, sa: &str) -> Result<MeshTls, TlsError> {
        let i = self.issue(sa)?;
        MeshTls::from_pem(&self.pem, &i.cert_pem, &i.key_pem)
    }
}
