//! The configuration a proxy runs on: the mesh's endpoints and policies as one versioned,
//! immutable [`Snapshot`], delivered through a `tokio::sync::watch` channel as linkerd2-proxy
//! receives its profiles (`linkerd/stack/src/watch.rs`). Whoever holds the sender (the
//! simulator, `meshsim sidecar`, later the control plane) publishes a new snapshot; every
//! request reads the newest one, and a request in flight keeps the policy it started with.
//!
//! Policies are lowered once per snapshot, not per request: each route's overrides are merged
//! over its service's policy here, so the request path only matches and clones an `Arc`.
//!
//! Not here: where snapshots come from ([`crate::control::client`] publishes them when a
//! control plane is in charge), ACK/NACK, versions per resource type.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::policy::{Policies, RouteMatch, ServicePolicy};
use crate::registry::Registry;

/// What a proxy receives its configuration on.
pub type ConfigRx = watch::Receiver<Arc<Snapshot>>;
/// What publishes it.
pub type ConfigTx = watch::Sender<Arc<Snapshot>>;

/// One version of the mesh's configuration, as every proxy sees it.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every published change.
    pub version: u64,
    /// Services and their endpoints.
    pub registry: Registry,
    /// The policies it was built from, as given.
    policies: Policies,
    services: BTreeMap<String, Lowered>,
    none: Arc<ServicePolicy>,
    /// The identity each endpoint address must prove over mTLS.
    identities: BTreeMap<std::net::SocketAddr, crate::identity::SpiffeId>,
    /// The same by IP: which workload a peer connecting from that address is (shared text,
    /// as requests carry it).
    by_ip: BTreeMap<std::net::IpAddr, Arc<str>>,
}

/// A service's policy, ready per route.
#[derive(Debug)]
struct Lowered {
    default: Arc<ServicePolicy>,
    /// In order: the first that matches applies.
    routes: Vec<(RouteMatch, String, Arc<ServicePolicy>)>,
}

impl Snapshot {
    /// Version `version` of `registry` and `policies`, each route's policy lowered now.
    pub fn new(version: u64, registry: Registry, policies: &Policies) -> Self {
        let services = policies
            .services
            .iter()
            .map(|(name, p)| {
                let routes = p
                    .routes
                    .iter()
                    .map(|r| (r.matcher.clone(), r.name.clone(), Arc::new(p.with_route(r))))
                    .collect();
                let lowered = Lowered {
                    default: Arc::new(p.clone()),
                    routes,
                };
                (name.clone(), lowered)
            })
            .collect();
        let identities = registry
            .names()
            .filter_map(|n| registry.get(n))
            .flat_map(|e| &e.endpoints)
            .filter_map(|e| Some((e.addr, e.identity.clone()?)))
            .collect::<BTreeMap<_, _>>();
        let by_ip = identities
            .iter()
            .map(|(a, id)| (a.ip(), Arc::from(id.as_str())))
            .collect();
        Self {
            version,
            registry,
            policies: policies.clone(),
            services,
            none: Arc::default(),
            identities,
            by_ip,
        }
    }

    /// The policies it was built from.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The workload the registry places at `ip`, if any: a peer's identity where mTLS is
    /// modelled rather than run (and what Cilium's identity-by-address amounts to).
    pub fn identity_at(&self, ip: std::net::IpAddr) -> Option<&Arc<str>> {
        self.by_ip.get(&ip)
    }

    /// The identity the endpoint at `addr` must prove, if the registry names one.
    pub fn identity_of(&self, addr: std::net::SocketAddr) -> Option<crate::identity::SpiffeId> {
        self.identities.get(&addr).cloned()
    }

    /// The policy for `req` to `service`, and its route's name (`default` when no route
    /// matches; the empty policy when the service has none).
    pub fn policy_for<B>(
        &self,
        service: &str,
        req: &http::Request<B>,
    ) -> (Arc<ServicePolicy>, &str) {
        match self.services.get(service) {
            None => (self.none.clone(), "default"),
            Some(l) => match l.routes.iter().find(|(m, _, _)| m.matches(req)) {
                Some((_, name, p)) => (p.clone(), name),
                None => (l.default.clone(), "default"),
            },
        }
    }
}

/// A channel whose first snapshot (version 1) is `registry` and `policies`.
pub fn channel(registry: Registry, policies: &Policies) -> (ConfigTx, ConfigRx) {
    watch::channel(Arc::new(Snapshot::new(1, registry, policies)))
}

/// A configuration that never changes: the receiver of a channel whose sender is gone, which
/// keeps answering with its one snapshot.
pub fn fixed(registry: Registry, policies: &Policies) -> ConfigRx {
    channel(registry, policies).1
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::RoutePolicy;

    fn policies() -> Policies {
        let mut p = Policies::default();
        p.services.insert(
            "db".into(),
            ServicePolicy {
                timeout: Some(Duration::from_secs(1)),
                split: vec![("v1".into(), 1)],
                routes: vec![RoutePolicy {
                    name: "slow".into(),
                    matcher: RouteMatch {
                        path_prefix: Some("/slow".into()),
                        ..RouteMatch::default()
                    },
                    timeout: Some(Duration::from_millis(5)),
                    ..RoutePolicy::default()
                }],
                ..ServicePolicy::default()
            },
        );
        p
    }

    fn get(path: &str) -> http::Request<()> {
        http::Request::get(path).body(()).unwrap()
    }

    #[test]
    fn routes_are_lowered_over_their_service() {
        let s = Snapshot::new(1, Registry::new(), &policies());
        let (p, route) = s.policy_for("db", &get("/slow/x"));
        assert_eq!(route, "slow");
        assert_eq!(p.timeout, Some(Duration::from_millis(5)));
        assert_eq!(p.split, vec![("v1".to_string(), 1)], "inherited");
        assert!(p.routes.is_empty());
        let (p, route) = s.policy_for("db", &get("/fast"));
        assert_eq!(
            (route, p.timeout),
            ("default", Some(Duration::from_secs(1)))
        );
        let (p, route) = s.policy_for("web", &get("/"));
        assert_eq!((route, &*p), ("default", &ServicePolicy::default()));
    }

    #[test]
    fn a_published_snapshot_reaches_receivers_and_a_fixed_one_stays() {
        let (tx, rx) = channel(Registry::new(), &Policies::default());
        assert_eq!(rx.borrow().version, 1);
        tx.send_replace(Arc::new(Snapshot::new(2, Registry::new(), &policies())));
        assert_eq!(rx.borrow().version, 2);
        assert_eq!(rx.borrow().policy_for("db", &get("/slow")).1, "slow");
        let fixed = fixed(Registry::new(), &policies());
        assert_eq!(fixed.borrow().version, 1);
    }
}
