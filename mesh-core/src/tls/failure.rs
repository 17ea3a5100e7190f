//! Why a TLS handshake between sidecars failed, classified from rustls' error so each side
//! counts its refusals by reason.

use crate::identity::SvidError;

/// `UnknownCA` → `unknown_ca`, `CertificateExpired` → `certificate_expired`.
fn snake(camel: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in camel.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Why a TLS handshake between sidecars failed, as the side that saw it can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The peer's chain does not end at a trusted anchor (alert `unknown_ca`).
    UnknownCa,
    /// The peer's certificate has expired (alert `certificate_expired`).
    Expired,
    /// The peer's certificate is not valid yet (alert `certificate_expired`).
    NotYetValid,
    /// The client presented no certificate, or an empty chain (alert `certificate_required`).
    NoCertificate,
    /// A signature in the chain does not verify, e.g. a forged CA with our CA's name (alert
    /// `decrypt_error`).
    BadSignature,
    /// Another certificate fault webpki found (named after it, e.g. a CA used as a leaf).
    Certificate(String),
    /// The certificate is not an acceptable SVID for this peer (alert `certificate_unknown`).
    Svid(SvidError),
    /// The peer refused us with this alert.
    PeerRefused(String),
    /// A plaintext connection where only mutual TLS is accepted (strict mode).
    Plaintext,
    /// Anything else: the peer is not speaking TLS, a protocol error, a closed connection.
    Protocol,
}

impl TlsFailure {
    /// Classify the error a handshake ended with (tokio-rustls wraps rustls' error in an
    /// `io::Error`).
    pub fn of(e: &std::io::Error) -> Self {
        use rustls::CertificateError as C;
        let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return TlsFailure::Protocol;
        };
        match r {
            rustls::Error::InvalidCertificate(c) => match c {
                C::UnknownIssuer => TlsFailure::UnknownCa,
                C::Expired | C::ExpiredContext { .. } => TlsFailure::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => TlsFailure::NotYetValid,
                #[allow(deprecated)]
                C::BadSignature
                | C::UnsupportedSignatureAlgorithm
                | C::UnsupportedSignatureAlgorithmContext { .. }
                | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                    TlsFailure::BadSignature
                }
                C::Other(o) => match o.0.downcast_ref::<SvidError>() {
                    Some(s) => TlsFailure::Svid(s.clone()),
                    None => TlsFailure::Certificate(snake(&format!("{:?}", o.0))),
                },
                other => TlsFailure::Certificate(snake(
                    format!("{other:?}")
                        .split([' ', '(', '{'])
                        .next()
                        .unwrap_or("other"),
                )),
            },
            rustls::Error::NoCertificatesPresented => TlsFailure::NoCertificate,
            rustls::Error::AlertReceived(a) => TlsFailure::PeerRefused(snake(&format!("{a:?}"))),
            _ => TlsFailure::Protocol,
        }
    }

    /// A stable snake_case name for counters.
    pub fn reason(&self) -> String {
        match self {
            TlsFailure::UnknownCa => "unknown_ca".into(),
            TlsFailure::Expired => "expired".into(),
            TlsFailure::NotYetValid => "not_yet_valid".into(),
            TlsFailure::NoCertificate => "no_certificate".into(),
            TlsFailure::BadSignature => "bad_signature".into(),
            TlsFailure::Certificate(c) => c.clone(),
            TlsFailure::Svid(s) => s.reason().into(),
            TlsFailure::PeerRefused(a) => format!("peer_alert_{a}"),
            TlsFailure::Plaintext => "plaintext".into(),
            TlsFailure::Protocol => "protocol".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_names_are_snake_case() {
        assert_eq!(snake("UnknownCA"), "unknown_ca");
        assert_eq!(snake("CertificateExpired"), "certificate_expired");
        assert_eq!(snake("BadCertificate"), "bad_certificate");
    }
}
