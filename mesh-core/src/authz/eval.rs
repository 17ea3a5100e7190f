//! Evaluating a workload's policies for one request, in Istio's order: CUSTOM, DENY, ALLOW.

use std::sync::Arc;

use super::{Action, CustomAuthorizer, Operation, Policy, Rule, Source, string_matches};

/// What a request looks like to authorization.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The peer's identity without `spiffe://` (`cluster.local/ns/default/sa/web`), if known.
    pub principal: Option<&'a str>,
    /// Method.
    pub method: &'a str,
    /// Path (without the query).
    pub path: &'a str,
    /// Headers.
    pub headers: &'a http::HeaderMap,
}

/// The namespace of a `<td>/ns/<ns>/sa/<sa>` principal.
fn namespace_of(principal: &str) -> Option<&str> {
    let mut it = principal.split('/');
    it.next()?;
    match (it.next(), it.next()) {
        (Some("ns"), Some(ns)) => Some(ns),
        _ => None,
    }
}

/// Why a request was denied: the counters' (policy, rule) key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Denial {
    /// Rule `rule` (0-based) of DENY policy `policy` matched.
    Matched {
        /// The policy.
        policy: String,
        /// The rule's index.
        rule: usize,
    },
    /// CUSTOM policy `policy` matched and its authorizer said no (or none is installed).
    Custom {
        /// The policy.
        policy: String,
    },
    /// The workload has ALLOW policies and none matched.
    NoAllowMatched,
}

impl Denial {
    /// The policy name for counters (`no_allow_match` when no policy matched).
    pub fn policy(&self) -> &str {
        match self {
            Denial::Matched { policy, .. } | Denial::Custom { policy } => policy,
            Denial::NoAllowMatched => "no_allow_match",
        }
    }

    /// The rule for counters: `rule-<i>`, `custom`, or `-`.
    pub fn rule(&self) -> String {
        match self {
            Denial::Matched { rule, .. } => format!("rule-{rule}"),
            Denial::Custom { .. } => "custom".into(),
            Denial::NoAllowMatched => "-".into(),
        }
    }
}

/// A workload's policies, ready to evaluate.
#[derive(Clone, Debug, Default)]
pub struct Authorizer {
    policies: Vec<Policy>,
    any_allow: bool,
    custom: Option<Arc<dyn CustomAuthorizer>>,
}

impl Authorizer {
    /// `policies` (already [`super::validate`]d) with `custom` answering CUSTOM ones.
    pub fn new(policies: Vec<Policy>, custom: Option<Arc<dyn CustomAuthorizer>>) -> Self {
        let any_allow = policies.iter().any(|p| p.action == Action::Allow);
        Self {
            policies,
            any_allow,
            custom,
        }
    }

    /// Whether there is anything to evaluate.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Allow (`Ok`) or deny `req`.
    pub fn check(&self, req: &Request<'_>) -> Result<(), Denial> {
        for p in self.policies.iter().filter(|p| p.action == Action::Custom) {
            if matching_rule(p, req).is_some() {
                let provider = p.provider.as_deref().unwrap_or_default();
                let allowed = self
                    .custom
                    .as_ref()
                    .is_some_and(|c| c.allows(provider, req));
                if !allowed {
                    return Err(Denial::Custom {
                        policy: p.name.clone(),
                    });
                }
            }
        }
        let policies = self.policies.iter().map(|p| (p.action, p.name.as_str(), p));
        deny_then_allow(policies, self.any_allow, |p| matching_rule(p, req))
    }
}

/// The DENY-then-ALLOW half of evaluation, shared by requests and connections
/// ([`super::l4`]): refused by the first DENY policy with a matching rule; else, when any ALLOW
/// policy exists (`any_allow`), admitted only if one matches. `policies` yields each policy's
/// action and name; `matches` its first matching rule.
pub(super) fn deny_then_allow<'a, P: 'a>(
    policies: impl Iterator<Item = (Action, &'a str, &'a P)> + Clone,
    any_allow: bool,
    matches: impl Fn(&P) -> Option<usize>,
) -> Result<(), Denial> {
    for (_, name, p) in policies.clone().filter(|(a, ..)| *a == Action::Deny) {
        if let Some(rule) = matches(p) {
            return Err(Denial::Matched {
                policy: name.to_string(),
                rule,
            });
        }
    }
    let admitted = !any_allow
        || policies
            .filter(|(a, ..)| *a == Action::Allow)
            .any(|(.., p)| matches(p).is_some());
    if admitted {
        Ok(())
    } else {
        Err(Denial::NoAllowMatched)
    }
}

/// The first rule of `p` that matches `req`.
pub fn matching_rule(p: &Policy, req: &Request<'_>) -> Option<usize> {
    p.rules.iter().position(|r| rule_matches(r, req))
}

fn rule_matches(r: &Rule, req: &Request<'_>) -> bool {
    (r.from.is_empty() || r.from.iter().any(|s| source_matches(s, req.principal)))
        && (r.to.is_empty() || r.to.iter().any(|o| operation_matches(o, req)))
        && r.when.iter().all(|c| {
            let v = c
                .header()
                .and_then(|h| req.headers.get(h))
                .and_then(|v| v.to_str().ok());
            let any = |pats: &[String], v: Option<&str>| {
                v.is_some_and(|v| pats.iter().any(|p| string_matches(p, v)))
            };
            (c.values.is_empty() || any(&c.values, v)) && !any(&c.not_values, v)
        })
}

/// A set list must contain a match; a `not_` list must not. A missing value matches no
/// pattern, so a source without an identity fails `principals` and passes `not_principals`.
fn field(pats: &[String], nots: &[String], v: Option<&str>) -> bool {
    let any = |pats: &[String]| v.is_some_and(|v| pats.iter().any(|p| string_matches(p, v)));
    (pats.is_empty() || any(pats)) && !any(nots)
}

/// Whether a peer with `principal` (without `spiffe://`; `None` when unknown) is `s`.
pub(super) fn source_matches(s: &Source, principal: Option<&str>) -> bool {
    field(&s.principals, &s.not_principals, principal)
        && field(
            &s.namespaces,
            &s.not_namespaces,
            principal.and_then(namespace_of),
        )
}

fn operation_matches(o: &Operation, req: &Request<'_>) -> bool {
    field(&o.methods, &o.not_methods, Some(req.method))
        && field(&o.paths, &o.not_paths, Some(req.path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req<'a>(
        principal: Option<&'a str>,
        method: &'a str,
        path: &'a str,
        h: &'a http::HeaderMap,
    ) -> Request<'a> {
        Request {
            principal,
            method,
            path,
            headers: h,
        }
    }

    fn policy(name: &str, action: Action, rules: Vec<Rule>) -> Policy {
        Policy {
            name: name.into(),
            action,
            provider: (action == Action::Custom).then(|| "opa".into()),
            rules,
        }
    }

    fn from(principal: &str) -> Rule {
        Rule {
            from: vec![Source {
                principals: vec![principal.into()],
                ..Source::default()
            }],
            ..Rule::default()
        }
    }

    const WEB: &str = "cluster.local/ns/shop/sa/web";
    const BATCH: &str = "cluster.local/ns/jobs/sa/batch";

    #[test]
    fn istio_semantics_in_order() {
        let h = http::HeaderMap::new();
        // No policies: everything is allowed.
        assert_eq!(
            Authorizer::default().check(&req(None, "GET", "/", &h)),
            Ok(())
        );
        // One ALLOW: only what it matches.
        let allow_web = Authorizer::new(
            vec![policy("web-only", Action::Allow, vec![from(WEB)])],
            None,
        );
        assert_eq!(allow_web.check(&req(Some(WEB), "GET", "/", &h)), Ok(()));
        assert_eq!(
            allow_web.check(&req(Some(BATCH), "GET", "/", &h)),
            Err(Denial::NoAllowMatched)
        );
        assert_eq!(
            allow_web.check(&req(None, "GET", "/", &h)),
            Err(Denial::NoAllowMatched),
            "no identity matches no principal"
        );
        // DENY wins over ALLOW.
        let purge = Rule {
            to: vec![Operation {
                methods: vec!["POST".into()],
                paths: vec!["/admin/*".into()],
                ..Operation::default()
            }],
            ..Rule::default()
        };
        let both = Authorizer::new(
            vec![
                policy("web-only", Action::Allow, vec![from(WEB)]),
                policy("no-admin", Action::Deny, vec![from(BATCH), purge]),
            ],
            None,
        );
        assert_eq!(
            both.check(&req(Some(WEB), "POST", "/admin/purge", &h)),
            Err(Denial::Matched {
                policy: "no-admin".into(),
                rule: 1
            })
        );
        assert_eq!(
            both.check(&req(Some(WEB), "GET", "/admin/purge", &h)),
            Ok(())
        );
        // An ALLOW with no rules denies everything; one empty rule allows everything.
        let none = Authorizer::new(vec![policy("nothing", Action::Allow, vec![])], None);
        assert!(none.check(&req(Some(WEB), "GET", "/", &h)).is_err());
        let all = Authorizer::new(
            vec![policy("all", Action::Allow, vec![Rule::default()])],
            None,
        );
        assert_eq!(all.check(&req(None, "GET", "/", &h)), Ok(()));
        // Namespaces come from the principal.
        let ns = Rule {
            from: vec![Source {
                namespaces: vec!["shop".into()],
                ..Source::default()
            }],
            ..Rule::default()
        };
        let shop = Authorizer::new(vec![policy("shop", Action::Allow, vec![ns])], None);
        assert_eq!(shop.check(&req(Some(WEB), "GET", "/", &h)), Ok(()));
        assert!(shop.check(&req(Some(BATCH), "GET", "/", &h)).is_err());
    }

    #[test]
    fn header_conditions_and_custom_authorizers() {
        #[derive(Debug)]
        struct OnlyTeamA;
        impl CustomAuthorizer for OnlyTeamA {
            fn allows(&self, provider: &str, req: &Request<'_>) -> bool {
                provider == "opa" && req.headers.get("x-team").is_some_and(|v| v == "a")
            }
        }
        let mut a = http::HeaderMap::new();
        a.insert("x-team", "a".parse().unwrap());
        let mut b = http::HeaderMap::new();
        b.insert("x-team", "b".parse().unwrap());
        let cond = Rule {
            when: vec![super::super::Condition {
                key: "request.headers[x-team]".into(),
                values: vec!["b".into()],
                not_values: vec![],
            }],
            ..Rule::default()
        };
        let deny_b = Authorizer::new(vec![policy("no-b", Action::Deny, vec![cond])], None);
        assert_eq!(deny_b.check(&req(None, "GET", "/", &a)), Ok(()));
        assert!(deny_b.check(&req(None, "GET", "/", &b)).is_err());
        let custom = Authorizer::new(
            vec![policy("ext", Action::Custom, vec![Rule::default()])],
            Some(Arc::new(OnlyTeamA)),
        );
        assert_eq!(custom.check(&req(None, "GET", "/", &a)), Ok(()));
        assert_eq!(
            custom.check(&req(None, "GET", "/", &b)),
            Err(Denial::Custom {
                policy: "ext".into()
            })
        );
        // No authorizer installed: a matching CUSTOM policy fails closed.
        let orphan = Authorizer::new(
            vec![policy("ext", Action::Custom, vec![Rule::default()])],
            None,
        );
        assert!(orphan.check(&req(None, "GET", "/", &a)).is_err());
    }

    fn arb_rule() -> impl Strategy<Value = Rule> {
        let pats = prop::collection::vec(
            prop::sample::select(vec!["/a", "/a/*", "*", "*.json", "/b"]),
            0..2,
        );
        let who = prop::collection::vec(prop::sample::select(vec![WEB, BATCH, "*"]), 0..2);
        let methods = prop::collection::vec(prop::sample::select(vec!["GET", "POST"]), 0..2);
        (who, methods, pats).prop_map(|(who, methods, paths)| {
            let s = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
            Rule {
                from: if who.is_empty() {
                    vec![]
                } else {
                    vec![Source {
                        principals: s(who),
                        ..Source::default()
                    }]
                },
                to: vec![Operation {
                    methods: s(methods),
                    paths: s(paths),
                    ..Operation::default()
                }],
                when: vec![],
            }
        })
    }

    fn arb_policies() -> impl Strategy<Value = Vec<Policy>> {
        prop::collection::vec(
            (
                prop::sample::select(vec![Action::Allow, Action::Deny]),
                prop::collection::vec(arb_rule(), 0..3),
            ),
            0..4,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (a, rules))| policy(&format!("p{i}"), a, rules))
                .collect()
        })
    }

    proptest! {
        /// Istio's order, whatever the policies: a matching DENY denies; with no ALLOW policy
        /// everything else is allowed; with some, exactly what one of them matches is.
        #[test]
        fn evaluation_follows_istios_order(
            policies in arb_policies(),
            principal in prop::option::of(prop::sample::select(vec![WEB, BATCH])),
            method in prop::sample::select(vec!["GET", "POST"]),
            path in prop::sample::select(vec!["/a", "/a/x", "/b", "/c.json"]),
        ) {
            let h = http::HeaderMap::new();
            let r = req(principal, method, path, &h);
            let decision = Authorizer::new(policies.clone(), None).check(&r);
            let deny_hit = policies.iter().any(|p| p.action == Action::Deny && matching_rule(p, &r).is_some());
            let allows: Vec<_> = policies.iter().filter(|p| p.action == Action::Allow).collect();
            let allow_hit = allows.iter().any(|p| matching_rule(p, &r).is_some());
            let expected_allow = !deny_hit && (allows.is_empty() || allow_hit);
            prop_assert_eq!(decision.is_ok(), expected_allow, "{:?}", decision);
            if deny_hit {
                let is_matched = matches!(decision, Err(Denial::Matched { .. }));
                prop_assert!(is_matched);
            }
            // An ALLOW that matches everything allows exactly what no DENY matches.
            let mut more = policies.clone();
            more.push(policy("allow-all", Action::Allow, vec![Rule::default()]));
            prop_assert_eq!(Authorizer::new(more, None).check(&r).is_ok(), !deny_hit);
        }
    }
}
