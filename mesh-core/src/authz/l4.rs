//! Connection-time (L4) authorization: who may open a connection to this workload, and on
//! which port, judged once when the connection arrives and before any request is read.
//!
//! This is what Cilium's network policies enforce (an ingress rule's `fromEndpoints` by
//! identity and its `toPorts`), and what Istio's ztunnel enforces for an
//! `AuthorizationPolicy` that names only L4 attributes. The evaluation is the same as for
//! requests ([`super::eval`]) without CUSTOM: DENY first, then ALLOW; a workload with no ALLOW
//! policy admits what no DENY matched, one with any ALLOW policy refuses what none matches
//! (Cilium: an endpoint selected by any policy is default-deny in that direction).
//!
//! The port is the workload's own port, the one the caller dialled (Cilium's `toPorts`, which
//! a sidecar sees as the original destination), not the sidecar's listener.
//!
//! Not here: how a refusal reaches the caller. The listener closes the connection
//! ([`crate::server`]), as Envoy's network RBAC filter and ztunnel do; Cilium's datapath drops
//! the packets instead, so its callers see a connect timeout rather than a reset.

use serde::{Deserialize, Serialize};

use super::eval::{Denial, deny_then_allow, source_matches};
use super::{Action, PolicyError, Source};

/// One connection-time policy of a workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    /// Name, for counters, logs and reports.
    pub name: String,
    /// `ALLOW` or `DENY` (a CUSTOM authorizer needs a request to look at).
    pub action: Action,
    /// Any of these matching makes the policy match; none matches nothing.
    #[serde(default)]
    pub rules: Vec<L4Rule>,
}

/// One rule: from whom, to which port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct L4Rule {
    /// Any of these sources (none: any source, including one with no known identity).
    pub from: Vec<Source>,
    /// Ports the connection may be to (none: any port).
    pub ports: Vec<u16>,
    /// Ports it must not be to.
    pub not_ports: Vec<u16>,
}

/// What a connection looks like to authorization.
#[derive(Clone, Copy, Debug)]
pub struct Connection<'a> {
    /// The peer's identity without `spiffe://`, if known.
    pub principal: Option<&'a str>,
    /// The workload port the peer dialled.
    pub port: u16,
}

/// A workload's connection policies, ready to evaluate.
#[derive(Clone, Debug, Default)]
pub struct ConnectionAuthorizer {
    policies: Vec<NetworkPolicy>,
    any_allow: bool,
}

impl ConnectionAuthorizer {
    /// `policies`, already [`validate`]d.
    pub fn new(policies: Vec<NetworkPolicy>) -> Self {
        let any_allow = policies.iter().any(|p| p.action == Action::Allow);
        Self {
            policies,
            any_allow,
        }
    }

    /// Whether there is anything to evaluate.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Admit (`Ok`) or refuse `conn`.
    pub fn check(&self, conn: &Connection<'_>) -> Result<(), Denial> {
        let policies = self.policies.iter().map(|p| (p.action, p.name.as_str(), p));
        deny_then_allow(policies, self.any_allow, |p| matching_rule(p, conn))
    }
}

/// The first rule of `p` that matches `conn`.
pub fn matching_rule(p: &NetworkPolicy, conn: &Connection<'_>) -> Option<usize> {
    p.rules.iter().position(|r| {
        (r.from.is_empty() || r.from.iter().any(|s| source_matches(s, conn.principal)))
            && (r.ports.is_empty() || r.ports.contains(&conn.port))
            && !r.not_ports.contains(&conn.port)
    })
}

/// Check `policies` for what evaluation cannot interpret.
pub fn validate(policies: &[NetworkPolicy]) -> Result<(), PolicyError> {
    let mut names = std::collections::BTreeSet::new();
    for p in policies {
        if !names.insert(p.name.as_str()) {
            return Err(PolicyError::DuplicateName(p.name.clone()));
        }
        if p.action == Action::Custom {
            return Err(PolicyError::CustomAtL4(p.name.clone()));
        }
        let ports = p
            .rules
            .iter()
            .flat_map(|r| r.ports.iter().chain(&r.not_ports));
        if ports.clone().any(|&port| port == 0) {
            return Err(PolicyError::PortZero(p.name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WEB: &str = "cluster.local/ns/default/sa/web";
    const ADMIN: &str = "cluster.local/ns/ops/sa/admin";

    fn policy(name: &str, action: Action, rules: Vec<L4Rule>) -> NetworkPolicy {
        NetworkPolicy {
            name: name.into(),
            action,
            rules,
        }
    }

    fn rule(principals: &[&str], namespaces: &[&str], ports: &[u16]) -> L4Rule {
        L4Rule {
            from: vec![Source {
                principals: principals.iter().map(|s| s.to_string()).collect(),
                namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                ..Source::default()
            }],
            ports: ports.to_vec(),
            not_ports: vec![],
        }
    }

    fn conn(principal: Option<&str>, port: u16) -> Connection<'_> {
        Connection { principal, port }
    }

    #[test]
    fn allow_by_identity_and_port_refuses_the_rest() {
        let a = ConnectionAuthorizer::new(vec![policy(
            "web-8080",
            Action::Allow,
            vec![rule(&[WEB], &[], &[8080])],
        )]);
        assert_eq!(a.check(&conn(Some(WEB), 8080)), Ok(()));
        assert_eq!(a.check(&conn(Some(WEB), 9090)), Err(Denial::NoAllowMatched));
        assert_eq!(
            a.check(&conn(Some(ADMIN), 8080)),
            Err(Denial::NoAllowMatched)
        );
        // A peer of unknown identity matches no principal.
        assert_eq!(a.check(&conn(None, 8080)), Err(Denial::NoAllowMatched));
    }

    #[test]
    fn deny_wins_and_names_its_rule() {
        let a = ConnectionAuthorizer::new(vec![
            policy("all", Action::Allow, vec![L4Rule::default()]),
            policy(
                "no-ops",
                Action::Deny,
                vec![rule(&[], &["kube-system"], &[]), rule(&[], &["ops"], &[])],
            ),
        ]);
        assert_eq!(a.check(&conn(Some(WEB), 8080)), Ok(()));
        assert_eq!(
            a.check(&conn(Some(ADMIN), 8080)),
            Err(Denial::Matched {
                policy: "no-ops".into(),
                rule: 1
            })
        );
    }

    #[test]
    fn no_policies_admit_everyone_and_not_ports_exclude() {
        assert_eq!(
            ConnectionAuthorizer::default().check(&conn(None, 1)),
            Ok(())
        );
        let a = ConnectionAuthorizer::new(vec![policy(
            "not-admin-port",
            Action::Deny,
            vec![L4Rule {
                not_ports: vec![8080],
                ..L4Rule::default()
            }],
        )]);
        assert_eq!(a.check(&conn(None, 8080)), Ok(()));
        assert!(a.check(&conn(Some(WEB), 15000)).is_err());
    }

    #[test]
    fn validation_refuses_custom_port_zero_and_duplicates() {
        assert_eq!(
            validate(&[policy("c", Action::Custom, vec![])]),
            Err(PolicyError::CustomAtL4("c".into()))
        );
        assert_eq!(
            validate(&[policy("z", Action::Allow, vec![rule(&[], &[], &[0])])]),
            Err(PolicyError::PortZero("z".into()))
        );
        let ok = policy("a", Action::Allow, vec![rule(&[WEB], &[], &[8080])]);
        assert_eq!(validate(std::slice::from_ref(&ok)), Ok(()));
        assert_eq!(
            validate(&[ok.clone(), ok]),
            Err(PolicyError::DuplicateName("a".into()))
        );
    }

    fn arb_rule() -> impl Strategy<Value = L4Rule> {
        let who = prop::sample::select(vec![WEB, ADMIN, "cluster.local/ns/ops/sa/*"]);
        (
            prop::collection::vec(who, 0..2),
            prop::collection::vec(prop::sample::select(vec![8080u16, 9090]), 0..2),
            prop::collection::vec(prop::sample::select(vec![8080u16, 9090]), 0..2),
        )
            .prop_map(|(p, ports, not_ports)| L4Rule {
                from: if p.is_empty() {
                    vec![]
                } else {
                    vec![Source {
                        principals: p.into_iter().map(str::to_string).collect(),
                        ..Source::default()
                    }]
                },
                ports,
                not_ports,
            })
    }

    fn arb_policies() -> impl Strategy<Value = Vec<NetworkPolicy>> {
        prop::collection::vec(
            (
                prop::sample::select(vec![Action::Allow, Action::Deny]),
                prop::collection::vec(arb_rule(), 0..3),
            ),
            0..4,
        )
        .prop_map(|ps| {
            ps.into_iter()
                .enumerate()
                .map(|(i, (action, rules))| policy(&format!("p{i}"), action, rules))
                .collect()
        })
    }

    proptest! {
        /// The verdict is exactly Cilium's and Istio's rule: refused if any DENY matches, else
        /// admitted if there is no ALLOW or one matches; a refusal names a policy that exists.
        #[test]
        fn verdict_follows_deny_then_allow(
            policies in arb_policies(),
            who in prop::option::of(prop::sample::select(vec![WEB, ADMIN])),
            port in prop::sample::select(vec![8080u16, 9090, 15000]),
        ) {
            let c = conn(who, port);
            let matches = |a: Action| policies.iter()
                .filter(|p| p.action == a)
                .any(|p| matching_rule(p, &c).is_some());
            let any_allow = policies.iter().any(|p| p.action == Action::Allow);
            let expected = !matches(Action::Deny) && (!any_allow || matches(Action::Allow));
            let verdict = ConnectionAuthorizer::new(policies.clone()).check(&c);
            prop_assert_eq!(verdict.is_ok(), expected);
            if let Err(Denial::Matched { policy, rule }) = &verdict {
                let p = policies.iter().find(|p| &p.name == policy).unwrap();
                prop_assert_eq!(p.action, Action::Deny);
                prop_assert_eq!(matching_rule(p, &c), Some(*rule));
            }
        }

        /// Adding an ALLOW policy never admits a connection a DENY refused, and adding a DENY
        /// policy never admits one that was refused.
        #[test]
        fn more_policies_never_admit_what_deny_refused(
            policies in arb_policies(),
            extra in arb_rule(),
            port in prop::sample::select(vec![8080u16, 9090]),
        ) {
            let c = conn(Some(WEB), port);
            let before = ConnectionAuthorizer::new(policies.clone()).check(&c);
            let mut with_deny = policies.clone();
            with_deny.push(policy("extra", Action::Deny, vec![extra.clone()]));
            if before.is_err() {
                prop_assert!(ConnectionAuthorizer::new(with_deny).check(&c).is_err());
            }
            if let Err(Denial::Matched { .. }) = before {
                let mut with_allow = policies;
                with_allow.push(policy("extra", Action::Allow, vec![extra]));
                prop_assert!(ConnectionAuthorizer::new(with_allow).check(&c).is_err());
            }
        }
    }
}
