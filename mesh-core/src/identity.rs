//! Workload identity: SPIFFE IDs, what makes a certificate an X.509-SVID, and why a TLS peer was
//! refused.
//!
//! A SPIFFE ID is `spiffe://<trust domain>/<path>`; the meshes use the path
//! `/ns/<namespace>/sa/<service account>` (Istio, Linkerd, Consul). [`SpiffeId::parse`] applies
//! the SPIFFE ID standard's rules (lower-case trust domain of `[a-z0-9._-]`, no port, user info,
//! query or fragment, path segments of `[A-Za-z0-9._-]` that are neither empty, `.` nor `..`, at
//! most 2,048 bytes). [`svid_id`] applies the X.509-SVID standard's rules to a leaf
//! certificate: exactly one URI SAN, which is a SPIFFE ID; not a CA; `digitalSignature` in its key
//! usage and neither `keyCertSign` nor `cRLSign`.
//!
//! Not here: the TLS verifiers that use these checks ([`crate::tls`]) and where identities come
//! from (a certificate authority, later the control plane).

use std::fmt;

/// A parsed, valid SPIFFE ID. Serialized as its URI; deserializing checks it.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffeId {
    uri: String,
    /// Where the path starts in `uri` (after the trust domain).
    path_at: usize,
}

/// Why a string is not a SPIFFE ID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// It does not start with `spiffe://`.
    #[error("does not start with spiffe://")]
    Scheme,
    /// Longer than the standard's 2,048 bytes.
    #[error("longer than 2048 bytes")]
    TooLong,
    /// The trust domain is empty or has a character outside `[a-z0-9._-]` (this also refuses
    /// ports, user info and upper case).
    #[error("trust domain {0:?} is not [a-z0-9._-]+")]
    TrustDomain(String),
    /// A path segment is empty, `.`, `..` or has a character outside `[A-Za-z0-9._-]` (this also
    /// refuses queries and fragments).
    #[error("path segment {0:?} is not a valid segment")]
    Segment(String),
}

impl SpiffeId {
    /// `s` as a SPIFFE ID, checked.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let rest = s.strip_prefix("spiffe://").ok_or(IdError::Scheme)?;
        if s.len() > 2048 {
            return Err(IdError::TooLong);
        }
        let (td, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let td_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
        if td.is_empty() || !td.bytes().all(td_ok) {
            return Err(IdError::TrustDomain(td.to_string()));
        }
        if !path.is_empty() {
            for seg in path[1..].split('/') {
                let seg_ok = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
                if seg.is_empty() || seg == "." || seg == ".." || !seg.bytes().all(seg_ok) {
                    return Err(IdError::Segment(seg.to_string()));
                }
            }
        }
        Ok(Self {
            uri: s.to_string(),
            path_at: "spiffe://".len() + td.len(),
        })
    }

    /// The meshes' workload form, `spiffe://<trust_domain>/ns/<ns>/sa/<sa>`, checked.
    pub fn workload(trust_domain: &str, ns: &str, sa: &str) -> Result<Self, IdError> {
        Self::parse(&format!("spiffe://{trust_domain}/ns/{ns}/sa/{sa}"))
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.uri["spiffe://".len()..self.path_at]
    }

    /// The path, e.g. `/ns/default/sa/reviews` (empty for a trust domain's own ID).
    pub fn path(&self) -> &str {
        &self.uri[self.path_at..]
    }

    /// The namespace of a `/ns/<ns>/sa/<sa>` ID.
    pub fn namespace(&self) -> Option<&str> {
        self.workload_parts().map(|(ns, _)| ns)
    }

    /// The service account of a `/ns/<ns>/sa/<sa>` ID.
    pub fn service_account(&self) -> Option<&str> {
        self.workload_parts().map(|(_, sa)| sa)
    }

    fn workload_parts(&self) -> Option<(&str, &str)> {
        let mut it = self.path().strip_prefix('/')?.split('/');
        match (it.next(), it.next(), it.next(), it.next(), it.next()) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }

    /// The whole URI.
    pub fn as_str(&self) -> &str {
        &self.uri
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<SpiffeId> for String {
    fn from(id: SpiffeId) -> String {
        id.uri
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

/// Why a certificate is not a usable X.509-SVID for this peer. Each is counted under its
/// [`reason`](SvidError::reason).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SvidError {
    /// The certificate does not parse.
    #[error("certificate does not parse")]
    Malformed,
    /// No URI SAN that is a SPIFFE ID.
    #[error("certificate carries no SPIFFE ID")]
    NoSpiffeId,
    /// More than one URI SAN (the standard allows exactly one).
    #[error("certificate carries {0} URI SANs; an SVID has exactly one")]
    SeveralUris(usize),
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("URI SAN is not a valid SPIFFE ID: {0}")]
    BadId(#[from] IdError),
    /// A CA certificate, or key usage for signing certificates, or no `digitalSignature`.
    #[error("certificate is not a leaf SVID (CA flag or key usage)")]
    NotLeaf,
    /// A SPIFFE ID of another trust domain.
    #[error("SPIFFE ID {got} is not in trust domain {want}")]
    ForeignTrustDomain {
        /// The peer's ID.
        got: String,
        /// Ours.
        want: String,
    },
    /// A valid SVID of our trust domain, but not the identity the destination must have.
    #[error("server identity {got} is not the destination's {want}")]
    WrongIdentity {
        /// The server's ID.
        got: String,
        /// What the destination service runs as.
        want: String,
    },
}

impl SvidError {
    /// A stable snake_case name for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            SvidError::Malformed => "malformed_certificate",
            SvidError::NoSpiffeId => "no_spiffe_id",
            SvidError::SeveralUris(_) => "several_uri_sans",
            SvidError::BadId(_) => "invalid_spiffe_id",
            SvidError::NotLeaf => "not_a_leaf",
            SvidError::ForeignTrustDomain { .. } => "foreign_trust_domain",
            SvidError::WrongIdentity { .. } => "wrong_identity",
        }
    }
}

/// The SPIFFE ID of a DER leaf certificate that is a valid X.509-SVID (see the module docs).
pub fn svid_id(der: &[u8]) -> Result<SpiffeId, SvidError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, c) = X509Certificate::from_der(der).map_err(|_| SvidError::Malformed)?;
    let uris: Vec<&str> = match c.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::URI(u) => Some(*u),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(_) => return Err(SvidError::Malformed),
    };
    let id = match uris.as_slice() {
        [] => return Err(SvidError::NoSpiffeId),
        [one] if !one.starts_with("spiffe://") => return Err(SvidError::NoSpiffeId),
        [one] => SpiffeId::parse(one)?,
        several => return Err(SvidError::SeveralUris(several.len())),
    };
    if c.is_ca() {
        return Err(SvidError::NotLeaf);
    }
    match c.key_usage() {
        Ok(Some(ku)) => {
            let ku = ku.value;
            if !ku.digital_signature() || ku.key_cert_sign() || ku.crl_sign() {
                return Err(SvidError::NotLeaf);
            }
        }
        // The standard requires the extension on a leaf.
        Ok(None) => return Err(SvidError::NotLeaf),
        Err(_) => return Err(SvidError::Malformed),
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn workload_ids_parse_into_their_parts() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/reviews").unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.path(), "/ns/shop/sa/reviews");
        assert_eq!(id.namespace(), Some("shop"));
        assert_eq!(id.service_account(), Some("reviews"));
        assert_eq!(
            SpiffeId::workload("cluster.local", "shop", "reviews").unwrap(),
            id
        );
        let td = SpiffeId::parse("spiffe://example.org").unwrap();
        assert_eq!((td.trust_domain(), td.path()), ("example.org", ""));
        assert_eq!(td.namespace(), None);
        let other = SpiffeId::parse("spiffe://example.org/ns/a/sa/b/extra").unwrap();
        assert_eq!(other.service_account(), None, "not the workload form");
    }

    #[test]
    fn the_standards_invalid_forms_are_refused() {
        for (s, want) in [
            ("https://cluster.local/ns/a/sa/b", IdError::Scheme),
            ("spiffe://", IdError::TrustDomain(String::new())),
            (
                "spiffe://Cluster.local/x",
                IdError::TrustDomain("Cluster.local".into()),
            ),
            ("spiffe://td:8080/x", IdError::TrustDomain("td:8080".into())),
            ("spiffe://user@td/x", IdError::TrustDomain("user@td".into())),
            ("spiffe://td/", IdError::Segment(String::new())),
            ("spiffe://td/a//b", IdError::Segment(String::new())),
            ("spiffe://td/a/../b", IdError::Segment("..".into())),
            ("spiffe://td/a/./b", IdError::Segment(".".into())),
            ("spiffe://td/a?x=1", IdError::Segment("a?x=1".into())),
            ("spiffe://td/a#f", IdError::Segment("a#f".into())),
        ] {
            assert_eq!(SpiffeId::parse(s), Err(want), "{s}");
        }
        let long = format!("spiffe://td/{}", "a".repeat(2048));
        assert_eq!(SpiffeId::parse(&long), Err(IdError::TooLong));
    }

    proptest! {
        /// Any ID built from valid parts parses back to the same parts, and its text round-trips.
        #[test]
        fn valid_parts_round_trip(
            td in "[a-z0-9][a-z0-9.-]{0,20}",
            ns in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,15}",
            sa in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,15}",
        ) {
            prop_assume!(ns != "." && ns != ".." && sa != "." && sa != "..");
            let id = SpiffeId::workload(&td, &ns, &sa).unwrap();
            prop_assert_eq!(id.trust_domain(), td.as_str());
            prop_assert_eq!(id.namespace(), Some(ns.as_str()));
            prop_assert_eq!(id.service_account(), Some(sa.as_str()));
            prop_assert_eq!(SpiffeId::parse(id.as_str()).unwrap(), id);
        }

        /// Parsing never panics, and what it accepts satisfies the standard's character rules.
        #[test]
        fn anything_parses_or_is_refused_without_panic(s in "spiffe://.{0,40}") {
            if let Ok(id) = SpiffeId::parse(&s) {
                prop_assert!(id.trust_domain().bytes().all(|b| !b.is_ascii_uppercase() && b != b':' && b != b'@'));
                prop_assert!(!id.path().contains("//") && !id.path().ends_with('/'));
                prop_assert!(!id.path().contains('?') && !id.path().contains('#'));
            }
        }
    }
}
