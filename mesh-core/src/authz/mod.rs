//! Authorization: who may call this workload, and how, as Istio's `AuthorizationPolicy` says it.
//!
//! A workload has a list of [`Policy`]s. Each has an action (`ALLOW`, `DENY`, or `CUSTOM`, the
//! extension point an external authorizer answers through [`CustomAuthorizer`]) and rules. A
//! rule matches when any of its sources matches (or it has none), any of its operations matches
//! (or it has none) and every condition holds; a policy matches when any rule does. Evaluation
//! ([`eval`]) follows Istio's order: CUSTOM, then DENY, then ALLOW; a workload with no ALLOW
//! policy allows what no DENY policy matched, one with any ALLOW policy denies what none of them
//! matches. A denied request gets 403 (`x-mesh-error: authz_denied`) and is counted by policy
//! and rule.
//!
//! Strings match as Istio's do: exact, `prefix*`, `*suffix`, or `*` (present at all).
//! Principals are SPIFFE IDs without the scheme (`cluster.local/ns/default/sa/web`), as Istio
//! writes them; namespaces come from the principal.
//!
//! The connection-time (L4) counterpart, by source identity and port, is [`l4`].
//!
//! Not here: where policies come from (the scenario
//! or the binary today, the control plane later); and where the source identity comes from (the peer's mTLS certificate, or the
//! registry's address map when the simulator models mTLS without running it).

pub mod eval;
pub mod l4;

use serde::{Deserialize, Serialize};

/// What a matching policy does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    /// Allow what matches (and, once any ALLOW policy exists, deny what none matches).
    Allow,
    /// Deny what matches.
    Deny,
    /// Ask the external authorizer named by `provider`.
    Custom,
}

/// One `AuthorizationPolicy` of a workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Name, for counters, logs and reports.
    pub name: String,
    /// What a match does.
    pub action: Action,
    /// For `CUSTOM`: the authorizer's name.
    #[serde(default)]
    pub provider: Option<String>,
    /// Any of these matching makes the policy match. None: the policy matches nothing (as
    /// Istio's ALLOW with no rules denies everything; one empty rule `{}` matches everything).
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One rule: from whom, to what, when.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rule {
    /// Any of these sources (none: any source).
    pub from: Vec<Source>,
    /// Any of these operations (none: any operation).
    pub to: Vec<Operation>,
    /// All of these conditions.
    pub when: Vec<Condition>,
}

/// Who calls. Each list that is set must match; `not_` lists must not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Source {
    /// Peer identities, e.g. `cluster.local/ns/default/sa/web`.
    pub principals: Vec<String>,
    /// Identities that must not be the peer's.
    pub not_principals: Vec<String>,
    /// The peer's namespace.
    pub namespaces: Vec<String>,
    /// Namespaces that must not be the peer's.
    pub not_namespaces: Vec<String>,
}

/// What is called. Each list that is set must match; `not_` lists must not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Operation {
    /// Methods, e.g. `GET`.
    pub methods: Vec<String>,
    /// Methods that must not be the request's.
    pub not_methods: Vec<String>,
    /// Paths: exact, `prefix*`, `*suffix`, `*`.
    pub paths: Vec<String>,
    /// Paths that must not match.
    pub not_paths: Vec<String>,
}

/// A condition on a request header: `key` is `request.headers[<name>]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// `request.headers[<name>]` (the only key supported here).
    pub key: String,
    /// The header matches any of these.
    #[serde(default)]
    pub values: Vec<String>,
    /// The header matches none of these.
    #[serde(default)]
    pub not_values: Vec<String>,
}

impl Condition {
    /// The header name of a `request.headers[<name>]` key.
    pub fn header(&self) -> Option<&str> {
        self.key
            .strip_prefix("request.headers[")
            .and_then(|r| r.strip_suffix(']'))
            .filter(|h| !h.is_empty())
    }
}

/// Whether `value` matches Istio's string pattern `pattern`.
pub fn string_matches(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return value.starts_with(prefix);
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return value.ends_with(suffix);
    }
    pattern == value
}

/// Why a workload's policies cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A condition key other than `request.headers[<name>]`.
    #[error("policy {policy:?}: condition key {key:?} is not request.headers[<name>]")]
    ConditionKey {
        /// The policy.
        policy: String,
        /// The key.
        key: String,
    },
    /// A CUSTOM policy without a provider, or a provider on another action.
    #[error("policy {0:?}: CUSTOM needs a provider, and only CUSTOM takes one")]
    Provider(String),
    /// A connection policy with action CUSTOM.
    #[error("policy {0:?}: a connection policy is ALLOW or DENY (CUSTOM needs a request to judge)")]
    CustomAtL4(String),
    /// A connection policy naming port 0.
    #[error("policy {0:?}: port 0 names no port (1 to 65535 expected)")]
    PortZero(String),
    /// Two policies share a name (counters would merge them).
    #[error("two policies are named {0:?}")]
    DuplicateName(String),
}

/// Check `policies` for what evaluation cannot interpret.
pub fn validate(policies: &[Policy]) -> Result<(), PolicyError> {
    let mut names = std::collections::BTreeSet::new();
    for p in policies {
        if !names.insert(p.name.as_str()) {
            return Err(PolicyError::DuplicateName(p.name.clone()));
        }
        if (p.action == Action::Custom) != p.provider.is_some() {
            return Err(PolicyError::Provider(p.name.clone()));
        }
        for c in p.rules.iter().flat_map(|r| &r.when) {
            if c.header().is_none() {
                return Err(PolicyError::ConditionKey {
                    policy: p.name.clone(),
                    key: c.key.clone(),
                });
            }
        }
    }
    Ok(())
}

/// An external authorizer for CUSTOM policies (Istio's `ext_authz` providers).
pub trait CustomAuthorizer: Send + Sync + std::fmt::Debug {
    /// Whether `provider` allows the request.
    fn allows(&self, provider: &str, req: &eval::Request<'_>) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_string_patterns() {
        assert!(string_matches("/api", "/api"));
        assert!(!string_matches("/api", "/api/x"));
        assert!(string_matches("/api/*", "/api/x"));
        assert!(string_matches("*.json", "/a/b.json"));
        assert!(string_matches("*", ""));
        assert!(!string_matches("*.json", "/a/b.xml"));
    }

    #[test]
    fn validation_names_what_cannot_be_evaluated() {
        let p = |name: &str, action, provider: Option<&str>, key: &str| Policy {
            name: name.into(),
            action,
            provider: provider.map(str::to_string),
            rules: vec![Rule {
                when: vec![Condition {
                    key: key.into(),
                    values: vec!["x".into()],
                    not_values: vec![],
                }],
                ..Rule::default()
            }],
        };
        let ok = p("a", Action::Allow, None, "request.headers[x-team]");
        assert_eq!(validate(std::slice::from_ref(&ok)), Ok(()));
        assert!(matches!(
            validate(&[p("a", Action::Allow, None, "source.ip")]),
            Err(PolicyError::ConditionKey { .. })
        ));
        assert_eq!(
            validate(&[p("c", Action::Custom, None, "request.headers[x]")]),
            Err(PolicyError::Provider("c".into()))
        );
        assert_eq!(
            validate(&[ok.clone(), ok]),
            Err(PolicyError::DuplicateName("a".into()))
        );
    }
}
