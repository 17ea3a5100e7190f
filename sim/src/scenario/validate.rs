//! Checks that span fields, after serde has parsed the file: references to services, pods
//! and subsets that must exist, ranges and limits checked before memory is spent, call cycles.
//! Every error names the file, line, column and field; serde's own errors are mapped here too.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

pub(super) fn toml_error(file: &str, src: &str, field: &str, e: &toml::de::Error) -> ScenarioError {
    let mut offset = e.span().map(|s| s.start);
    // For an unknown field serde points at the table; point at the field itself.
    let unknown = e
        .message()
        .strip_prefix("unknown field `")
        .and_then(|m| m.split('`').next());
    if let (Some(name), Some(start)) = (unknown, offset)
        && let Some(i) = find_key(&src[start..], name)
    {
        offset = Some(start + i);
    }
    let (line, column) = offset.map(|o| line_col(src, o)).unwrap_or((0, 0));
    let field = field.replace(".$__serde_spanned_private_value", "");
    // Syntax errors (a duplicate key, say) point at the offending text; name it.
    let spanned_text = e
        .span()
        .and_then(|s| src.get(s))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 40 && !t.contains('\n'));
    let field = match (field.as_str(), spanned_text) {
        ("(syntax)", Some(t)) => format!("(syntax) `{t}`"),
        _ => field,
    };
    let field = match (field.as_str(), unknown) {
        ("" | "?" | ".", Some(name)) => name.to_string(),
        ("" | "?" | ".", None) => "(top level)".to_string(),
        (path, Some(name)) if !path.ends_with(name) => format!("{path}.{name}"),
        (path, _) => path.to_string(),
    };
    ScenarioError {
        file: file.to_string(),
        line,
        column,
        field,
        message: e.message().trim().to_string(),
    }
}

/// Offset of the first `key =` (at a line start or after `{`/`,`) in `text`.
pub(super) fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(key) {
        let at = from + i;
        let before = text[..at].trim_end_matches([' ', '\t']);
        let after = text[at + key.len()..].trim_start_matches([' ', '\t']);
        if (before.is_empty() || before.ends_with(['\n', '{', ','])) && after.starts_with('=') {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

/// Calls one request to `service` causes, itself included: 1 plus, for each call it makes,
/// `fanout` times what a request to the callee causes (every call assumed taken). Called once
/// the call graph is known to have no cycle; grows in f64, so no product overflows.
fn calls_per_request(s: &Scenario, service: &str) -> f64 {
    fn walk(
        s: &Scenario,
        service: &str,
        memo: &mut std::collections::BTreeMap<String, f64>,
    ) -> f64 {
        if let Some(n) = memo.get(service) {
            return *n;
        }
        let n = s
            .services
            .iter()
            .find(|svc| svc.name.get_ref() == service)
            .map_or(1.0, |svc| {
                1.0 + svc
                    .calls
                    .iter()
                    .map(|c| f64::from(c.fanout) * walk(s, c.service.get_ref(), memo))
                    .sum::<f64>()
            });
        memo.insert(service.to_string(), n);
        n
    }
    walk(s, service, &mut Default::default())
}

/// 1-based line and column of byte `offset` in `src`.
pub(super) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

/// Line of the first occurrence of `needle` (for fields serde kept no span for).
pub(super) fn line_of_text(src: &str, needle: &str) -> (usize, usize) {
    src.find(needle).map(|o| line_col(src, o)).unwrap_or((0, 0))
}

/// Most pods a scenario may have over all its services (each is a simulated host).
pub const MAX_PODS: u64 = 5_000;

/// Longest workload a scenario may ask for, in simulated time (a soak's day).
pub const MAX_DURATION_MS: u64 = 24 * 3600 * 1000;

/// Most calls one workload request may cause through fan-out, counting every hop (the product
/// of `fanout` along each call chain, summed over the chains, all calls assumed taken).
pub const MAX_CALLS_PER_REQUEST: f64 = 1_000.0;

/// Most calls a whole run may make (rate × duration × calls per request, or the closed model's
/// users × duration ÷ think time, at most one request per user per millisecond): what sizes
/// the run's memory and time.
pub const MAX_CALLS_PER_RUN: f64 = 50_000_000.0;

pub(super) fn validate(file: &str, src: &str, s: &Scenario) -> Result<(), ScenarioError> {
    let err_at = |span: std::ops::Range<usize>, field: String, message: String| {
        let (line, column) = line_col(src, span.start);
        ScenarioError {
            file: file.to_string(),
            line,
            column,
            field,
            message,
        }
    };
    let err_text = |needle: &str, field: String, message: String| {
        let (line, column) = line_of_text(src, needle);
        ScenarioError {
            file: file.to_string(),
            line,
            column,
            field,
            message,
        }
    };

    if s.services.is_empty() {
        return Err(err_text(
            "[workload]",
            "services".into(),
            "expected at least one [[services]] table".into(),
        ));
    }
    // Every pod is a simulated host: count them (base replicas, subsets, what scales ask
    // for) before anything builds a list of them.
    let pods = s.services.iter().fold(0u64, |n, svc| {
        let subsets = svc
            .subsets
            .iter()
            .fold(0u64, |m, sub| m.saturating_add(u64::from(sub.replicas)));
        let scaled = s
            .faults
            .iter()
            .filter_map(|f| f.get_ref().scales_to(svc.name.get_ref()))
            .max()
            .unwrap_or(0);
        let base = u64::from(svc.replicas.max(scaled));
        n.saturating_add(base).saturating_add(subsets)
    });
    if pods > MAX_PODS {
        return Err(err_text(
            "[[services]]",
            "services".into(),
            format!(
                "{pods} pods over all services (replicas, subsets and scales); expected at most {MAX_PODS} pods in all"
            ),
        ));
    }
    let mut names = BTreeSet::new();
    for (i, svc) in s.services.iter().enumerate() {
        let name = svc.name.get_ref();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && name != "clients"
            && name != "control-plane";
        if !valid {
            return Err(err_at(
                svc.name.span(),
                format!("services[{i}].name"),
                format!(
                    "expected a DNS-style name of lowercase letters, digits and '-' (not `clients` or `control-plane`), found {name:?}"
                ),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(err_at(
                svc.name.span(),
                format!("services[{i}].name"),
                format!("service {name:?} is defined twice"),
            ));
        }
        let field = |f: &str| format!("services[{i}].{f}");
        if let Err(e) = mesh_core::authz::validate(&svc.authorization) {
            return Err(err_at(
                svc.name.span(),
                field("authorization"),
                format!("expected policies the proxy can evaluate: {e}"),
            ));
        }
        if let Err(e) = mesh_core::authz::l4::validate(&svc.network_policy) {
            return Err(err_at(
                svc.name.span(),
                field("network_policy"),
                format!("expected connection policies the proxy can evaluate: {e}"),
            ));
        }
        if svc.replicas == 0 || svc.replicas > 5000 {
            return Err(err_at(
                svc.name.span(),
                field("replicas"),
                "expected 1 to 5000 replicas".into(),
            ));
        }
        if svc.zones.is_empty() {
            return Err(err_at(
                svc.name.span(),
                field("zones"),
                "expected at least one zone".into(),
            ));
        }
        if svc.workers == 0 {
            return Err(err_at(
                svc.name.span(),
                field("workers"),
                "expected at least 1 worker".into(),
            ));
        }
        if !(0.0..=1.0).contains(&svc.error_rate) {
            return Err(err_at(
                svc.name.span(),
                field("error_rate"),
                "expected a probability between 0 and 1".into(),
            ));
        }
        if let LatencySpec::Lognormal { p50, p99 } = &svc.latency
            && (p99 <= p50 || p50.as_us() == 0)
        {
            return Err(err_at(
                svc.name.span(),
                field("latency"),
                "lognormal needs 0 < p50 < p99".into(),
            ));
        }
        if let LatencySpec::Uniform { min, max } = &svc.latency
            && max < min
        {
            return Err(err_at(
                svc.name.span(),
                field("latency"),
                "uniform needs min <= max".into(),
            ));
        }
    }
    for (i, svc) in s.services.iter().enumerate() {
        let mut versions = BTreeSet::from([svc.version.clone()]);
        for (k, sub) in svc.subsets.iter().enumerate() {
            if !versions.insert(sub.name.clone()) || sub.name.is_empty() {
                return Err(err_at(
                    svc.name.span(),
                    format!("services[{i}].subsets[{k}].name"),
                    format!(
                        "subset {:?} is empty or defined twice (the base pods are {:?})",
                        sub.name, svc.version
                    ),
                ));
            }
        }
        let Some(p) = &svc.policy else { continue };
        let field = |f: &str| format!("services[{i}].policy.{f}");
        for (k, r) in p.routes.iter().flatten().enumerate() {
            if r.method
                .as_ref()
                .is_some_and(|m| http::Method::from_bytes(m.as_bytes()).is_err())
            {
                return Err(err_at(
                    svc.name.span(),
                    field(&format!("routes[{k}].method")),
                    "expected an HTTP method".into(),
                ));
            }
            if let Some(b) = r
                .split
                .iter()
                .flatten()
                .find(|b| !versions.contains(&b.subset))
            {
                return Err(err_at(
                    svc.name.span(),
                    field(&format!("routes[{k}].split")),
                    format!("no subset {:?}; expected one of {versions:?}", b.subset),
                ));
            }
            if let Some(rl) = &r.rate_limit
                && !(rl.rps > 0.0 && rl.rps <= 1e6)
            {
                return Err(err_at(
                    svc.name.span(),
                    field(&format!("routes[{k}].rate_limit.rps")),
                    "expected a rate above 0".into(),
                ));
            }
        }
        for b in p.split.iter().flatten() {
            if !versions.contains(&b.subset) {
                return Err(err_at(
                    svc.name.span(),
                    field("split"),
                    format!("no subset {:?}; expected one of {versions:?}", b.subset),
                ));
            }
        }
        if (p.lb == Some(LbSpec::RingHash)) != p.hash_header.is_some() {
            return Err(err_at(
                svc.name.span(),
                field("hash_header"),
                "`lb = \"ring-hash\"` needs `hash_header`, and only it takes one".into(),
            ));
        }
        if let Some(r) = &p.retry {
            if r.max_retries > 100 {
                return Err(err_at(
                    svc.name.span(),
                    field("retry.max_retries"),
                    "expected at most 100 retries".into(),
                ));
            }
            if r.backoff_max < r.backoff_base {
                return Err(err_at(
                    svc.name.span(),
                    field("retry.backoff_max"),
                    "expected backoff_max >= backoff_base".into(),
                ));
            }
            if r.same_endpoint && r.avoid_previous_hosts {
                return Err(err_at(
                    svc.name.span(),
                    field("retry.same_endpoint"),
                    "expected same_endpoint or avoid_previous_hosts, not both".into(),
                ));
            }
            if let Some(b) = &r.budget
                && (!(0.0..=10.0).contains(&b.ratio)
                    || b.window.as_ms() < 1000
                    || b.window.as_ms() > 60_000
                    || b.min_per_sec > 1_000_000)
            {
                return Err(err_at(
                    svc.name.span(),
                    field("retry.budget"),
                    "expected 0 <= ratio <= 10, a window between 1s and 60s and min_per_sec at most 1000000 (tower's budget panics beyond)".into(),
                ));
            }
        }
        if let Some(r) = &p.rate_limit
            && !(r.rps > 0.0 && r.rps <= 1e6)
        {
            return Err(err_at(
                svc.name.span(),
                field("rate_limit.rps"),
                "expected a rate above 0".into(),
            ));
        }
        if let Some(c) = &p.circuit_breaker {
            for (name, v) in [
                ("max_requests", c.max_requests),
                ("max_connections", c.max_connections),
            ] {
                if v == 0 {
                    return Err(err_at(
                        svc.name.span(),
                        field(&format!("circuit_breaker.{name}")),
                        "expected at least 1".into(),
                    ));
                }
            }
            if let Some(b) = &c.retry_budget
                && !(0.0..=100.0).contains(&b.percent)
            {
                return Err(err_at(
                    svc.name.span(),
                    field("circuit_breaker.retry_budget.percent"),
                    "expected a percent between 0 and 100".into(),
                ));
            }
        }
    }
    for (i, svc) in s.services.iter().enumerate() {
        for (j, call) in svc.calls.iter().enumerate() {
            let field = format!("services[{i}].calls[{j}]");
            if !names.contains(call.service.get_ref()) {
                return Err(err_at(
                    call.service.span(),
                    format!("{field}.service"),
                    format!(
                        "no service named {:?}; expected one of {:?}",
                        call.service.get_ref(),
                        names
                    ),
                ));
            }
            if !(0.0..=1.0).contains(&call.probability) || call.fanout == 0 || call.fanout > 100 {
                return Err(err_at(
                    call.service.span(),
                    field,
                    "expected 0 <= probability <= 1 and 1 <= fanout <= 100".into(),
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(s) {
        return Err(err_text(
            "calls",
            "services.calls".into(),
            format!(
                "calls form a cycle ({}); requests would never finish",
                cycle.join(" -> ")
            ),
        ));
    }
    let w = &s.workload;
    if w.duration.as_ms() > MAX_DURATION_MS {
        return Err(err_text(
            "duration",
            "workload.duration".into(),
            format!(
                "expected at most {} hours of simulated time",
                MAX_DURATION_MS / 3_600_000
            ),
        ));
    }
    if !names.contains(w.target.get_ref()) {
        return Err(err_at(
            w.target.span(),
            "workload.target".into(),
            format!(
                "no service named {:?}; expected one of {:?}",
                w.target.get_ref(),
                names
            ),
        ));
    }
    match w.model {
        LoadModel::Open => match w.rate_rps {
            Some(r) if r > 0.0 && r <= 1_000_000.0 => {}
            _ => {
                return Err(err_text(
                    "[workload]",
                    "workload.rate_rps".into(),
                    "the open model needs rate_rps between 0 and 1000000".into(),
                ));
            }
        },
        LoadModel::Closed => match w.users {
            Some(u) if u > 0 && u <= 100_000 => {}
            _ => {
                return Err(err_text(
                    "[workload]",
                    "workload.users".into(),
                    "the closed model needs users between 1 and 100000".into(),
                ));
            }
        },
    }
    // What the run will cost, bounded before anything is built: calls per workload request
    // through fan-out, then over the whole run.
    let per_request = calls_per_request(s, w.target.get_ref());
    if per_request > MAX_CALLS_PER_REQUEST {
        return Err(err_text(
            "fanout",
            "services.calls".into(),
            format!(
                "one request to {:?} fans out to {per_request:.0} calls; expected at most {MAX_CALLS_PER_REQUEST:.0}",
                w.target.get_ref()
            ),
        ));
    }
    let seconds = w.duration.as_ms() as f64 / 1000.0;
    let requests = match w.model {
        LoadModel::Open => w.rate_rps.unwrap_or(0.0) * seconds,
        LoadModel::Closed => {
            let per_user = seconds / (w.think.as_ms().max(1) as f64 / 1000.0);
            f64::from(w.users.unwrap_or(0)) * per_user
        }
    };
    if requests * per_request > MAX_CALLS_PER_RUN {
        return Err(err_text(
            "[workload]",
            "workload".into(),
            format!(
                "about {:.0} requests × {per_request:.0} calls each = {:.0} calls; expected at most {MAX_CALLS_PER_RUN:.0} (shorten the duration or lower the rate)",
                requests,
                requests * per_request
            ),
        ));
    }
    if w.duration.as_ms() == 0 || w.warmup >= w.duration {
        return Err(err_text(
            "duration",
            "workload.duration".into(),
            "expected a duration longer than the warm-up".into(),
        ));
    }
    if w.clients == 0 || w.clients > 1000 {
        return Err(err_text(
            "[workload]",
            "workload.clients".into(),
            "expected 1 to 1000 client hosts".into(),
        ));
    }
    if w.plaintext_clients > w.clients {
        return Err(err_text(
            "plaintext_clients",
            "workload.plaintext_clients".into(),
            format!(
                "expected at most `clients` ({}) clients without a sidecar",
                w.clients
            ),
        ));
    }
    if w.routes.is_empty() || w.routes.iter().all(|r| r.weight == 0) {
        return Err(err_text(
            "routes",
            "workload.routes".into(),
            "expected at least one route with a weight above 0".into(),
        ));
    }
    for (k, r) in w.routes.iter().enumerate() {
        if http::Method::from_bytes(r.method.as_bytes()).is_err() || !r.path.starts_with('/') {
            return Err(err_text(
                &r.path,
                format!("workload.routes[{k}]"),
                "expected an HTTP method and a path starting with '/'".into(),
            ));
        }
    }

    let pods: BTreeSet<String> = s
        .services
        .iter()
        .flat_map(|svc| svc.pods().into_iter().map(|p| p.0))
        .collect();
    let topology = crate::fault::Topology {
        services: &names,
        pods: &pods,
        example: s.services[0].name.get_ref(),
        control_plane: s.control_plane.is_some(),
        mtls: s.mtls.is_some(),
    };
    for (k, f) in s.faults.iter().enumerate() {
        f.get_ref()
            .check(&topology)
            .map_err(|message| err_at(f.span(), format!("faults[{k}]"), message))?;
    }
    Ok(())
}

pub(super) fn find_cycle(s: &Scenario) -> Option<Vec<String>> {
    let edges: BTreeMap<&str, Vec<&str>> = s
        .services
        .iter()
        .map(|svc| {
            (
                svc.name.get_ref().as_str(),
                svc.calls
                    .iter()
                    .map(|c| c.service.get_ref().as_str())
                    .collect(),
            )
        })
        .collect();
    fn visit<'a>(
        n: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| *s == n) {
            let mut c: Vec<String> = stack[pos..].iter().map(|s| s.to_string()).collect();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n);
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n);
        None
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, &edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}
