//! Services and their endpoints: what the outbound proxy routes a service name to.
//!
//! The harness (or the binary) builds it from the topology; proxies read it inside a
//! [`crate::config::Snapshot`], which a control plane will publish in new versions.
//! Ordered maps only, so any iteration (reports, debugging) is deterministic.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The HTTP protocol a leg speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 over cleartext (h2c, prior knowledge).
    Http2,
}

impl Protocol {
    /// The `http::Version` a request on this leg carries.
    pub fn version(self) -> http::Version {
        match self {
            Protocol::Http1 => http::Version::HTTP_11,
            Protocol::Http2 => http::Version::HTTP_2,
        }
    }
}

/// One instance of a service, as the mesh reaches it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Where to connect: the pod's inbound proxy port when meshed, the app port otherwise.
    pub addr: SocketAddr,
    /// The pod's name, for reports.
    pub pod: String,
    /// Availability zone, for locality-aware policies later.
    pub zone: String,
    /// The subset (version) the pod belongs to, e.g. `v1`, `v2`; traffic splits select by it.
    #[serde(default)]
    pub subset: String,
    /// The workload identity the pod runs as: over mTLS, the server must prove exactly this
    /// one; `None` accepts any workload of the trust domain.
    #[serde(default)]
    pub identity: Option<crate::identity::SpiffeId>,
}

/// A named service and its endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// Protocol the mesh speaks between sidecars for this service.
    pub protocol: Protocol,
    /// Endpoints in a stable order (the balancer's index refers to it).
    pub endpoints: Vec<Endpoint>,
}

/// All services the mesh knows, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    services: BTreeMap<String, ServiceEntry>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add or replace a service.
    pub fn insert(&mut self, name: impl Into<String>, entry: ServiceEntry) {
        self.services.insert(name.into(), entry);
    }

    /// Look a service up by name.
    pub fn get(&self, name: &str) -> Option<&ServiceEntry> {
        self.services.get(name)
    }

    /// Service names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// This registry with the endpoints of the pods `unlisted` names left out (every service
    /// stays, possibly with no endpoints): what a control plane lists while those pods are down,
    /// not ready or not yet started.
    pub fn without_pods(&self, unlisted: &std::collections::BTreeSet<String>) -> Registry {
        let mut out = self.clone();
        for entry in out.services.values_mut() {
            entry.endpoints.retain(|e| !unlisted.contains(&e.pod));
        }
        out
    }
}

/// The service name an HTTP authority refers to: `db`, `db:80` and `db.default.svc.cluster.local`
/// all name `db`.
pub fn service_of_authority(authority: &str) -> &str {
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    host.split('.').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_forms_name_the_same_service() {
        assert_eq!(service_of_authority("db"), "db");
        assert_eq!(service_of_authority("db:80"), "db");
        assert_eq!(
            service_of_authority("db.default.svc.cluster.local:8080"),
            "db"
        );
    }
}
