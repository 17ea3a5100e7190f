//! Scenario files (TOML, format v1): the topology, how each service behaves, the workload, the
//! fault time line, mesh settings, the seed and the assertions. `scenarios/README.md` documents the
//! format with an example per feature; this module is its single source of truth.
//!
//! Types here are plain serde data. [`load`] reads and validates a file; every error names the
//! file, line, column and field, and says what was expected. Unknown fields are errors.
//! Validation that spans fields (a call to a service that does not exist) happens after parsing,
//! using the spans serde kept for the fields that refer to other things.
//!
//! # Layout
//! One file per section of the format, each holding its serde types and their lowering:
//! this file (the top level: `Scenario`, `[mesh]`, `[network]`, loading and errors),
//! [`service`] (`[[services]]`), [`policy`] (`[services.policy]`, lowered to mesh-core's
//! policy types), [`preset`] (the meshes' defaults), [`workload`], `[[faults]]` (one file per kind in
//! [`crate::fault`]),
//! [`control`] (`[control_plane]`), [`mtls`] (`[mtls]`), [`assertion`], [`duration`], and `validate` (the cross-field checks run after parsing).

pub mod assertion;
pub mod control;
pub mod duration;
pub mod mtls;
pub mod overrides;
pub mod policy;
pub mod preset;
pub mod service;
pub mod swarm;
mod validate;
pub mod workload;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use crate::fault::FaultSpec;
pub use assertion::{Assertion, Op};
pub use control::ControlPlaneSpec;
pub use duration::Dur;
pub use mesh_core::registry::Protocol;
pub use mtls::MtlsSpec;
pub use policy::*;
pub use preset::*;
pub use service::*;
pub use validate::{MAX_CALLS_PER_REQUEST, MAX_CALLS_PER_RUN, MAX_DURATION_MS, MAX_PODS};
use validate::{line_of_text, toml_error};
pub use workload::*;

/// A whole scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Seed used when the command line gives none.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Mesh settings.
    #[serde(default)]
    pub mesh: MeshSpec,
    /// Network baseline (before faults).
    #[serde(default)]
    pub network: NetworkSpec,
    /// A control plane in charge of the configuration ([`control`]); fixed configuration if
    /// absent.
    #[serde(default)]
    pub control_plane: Option<ControlPlaneSpec>,
    /// Mutual TLS between sidecars, run for real ([`mtls`]); modelled away if absent.
    #[serde(default)]
    pub mtls: Option<MtlsSpec>,
    /// The services, each with its replicas and behaviour.
    pub services: Vec<ServiceSpec>,
    /// The load.
    pub workload: WorkloadSpec,
    /// The fault time line.
    #[serde(default)]
    pub faults: Vec<Spanned<FaultSpec>>,
    /// Checks on the report; any that fails makes the run fail (exit 1).
    #[serde(default)]
    pub assertions: Vec<Spanned<Assertion>>,
    /// Report settings.
    #[serde(default)]
    pub report: ReportSpec,
    /// What `meshsim sweep --swarm` may draw per seed ([`swarm`]); ignored by a plain run.
    #[serde(default)]
    pub swarm: Option<toml::Table>,
}

/// Report settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSpec {
    /// An edge whose attempts per request exceed this in a second is in a retry storm (default 1.5).
    pub storm_threshold: f64,
}

impl Default for ReportSpec {
    fn default() -> Self {
        Self {
            storm_threshold: 1.5,
        }
    }
}

fn default_seed() -> u64 {
    1
}

/// Mesh settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshSpec {
    /// Run with sidecars. When false only the unmeshed run happens.
    pub enabled: bool,
    /// Also run the same scenario and seed without the mesh, to measure overhead.
    pub baseline: bool,
    /// Protocol between sidecars.
    pub protocol: Protocol,
    /// TCP connect timeout of the proxies.
    pub connect_timeout: Dur,
    /// How long a proxy waits for response headers (`"0s"` = forever, as Istio).
    pub request_timeout: Dur,
    /// Proxy cost calibration file, relative to the scenario file; the built-in default if absent.
    pub proxy_cost: Option<String>,
    /// Worker threads per proxy in the cost model (Envoy and Linkerd sidecars commonly run 2).
    pub proxy_workers: u32,
    /// Default policy for every service, as a real mesh configures it out of the box; a
    /// service's own `[services.policy]` fields override it field by field.
    pub preset: Option<Preset>,
}

impl Scenario {
    /// The policy the mesh applies to calls to service `i`: its own, over the preset's.
    pub fn effective_policy(&self, i: usize) -> Option<PolicySpec> {
        let preset = self.mesh.preset.map(Preset::policy);
        match (&self.services[i].policy, preset) {
            (Some(own), Some(p)) => Some(own.over(&p)),
            (Some(own), None) => Some(own.clone()),
            (None, p) => p,
        }
    }
}

impl Default for MeshSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            baseline: true,
            protocol: Protocol::Http2,
            connect_timeout: Dur::from_ms(1000),
            request_timeout: Dur::from_ms(15_000),
            proxy_cost: None,
            proxy_workers: 2,
            preset: None,
        }
    }
}

/// The network before any fault.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSpec {
    /// One-way latency of every packet between two hosts (default 100 µs, a same-zone RTT of
    /// 200 µs: [`crate::substrate::DEFAULT_LATENCY_US`] gives the source). `"0s"` makes the
    /// network free, for checks against queueing theory.
    pub latency: Dur,
    /// Extra one-way latency between hosts in different zones.
    pub cross_zone_latency: Dur,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        Self {
            latency: Dur::from_us(crate::substrate::DEFAULT_LATENCY_US),
            cross_zone_latency: Dur::default(),
        }
    }
}

/// A scenario file that could not be used. Displays as `file:line:column: field: message`
/// (`file: field: message` when no line is at fault: an unreadable file, a `--set` override).
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {field}: {message}", if *line > 0 { format!(":{line}:{column}") } else { String::new() })]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// 1-based line (0 when the whole file is at fault).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The field's path, e.g. `services[1].latency.p99`, or `(file)`.
    pub field: String,
    /// What was wrong and what was expected.
    pub message: String,
}

/// A scenario as loaded: the parsed data plus where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The scenario.
    pub scenario: Scenario,
    /// The file it came from.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, hex.
    pub hash: String,
    /// The proxy cost model the scenario uses.
    pub cost: crate::cost::Calibration,
}

/// Read, parse and validate a scenario file.
pub fn load(path: &Path) -> Result<Loaded, ScenarioError> {
    load_with(path, &[])
}

/// Read, parse and validate a scenario file, then apply `--set` overrides (the file is validated
/// first, so its errors name its lines; then the overridden scenario, whose errors name the
/// overrides). The hash is of the scenario as run.
pub fn load_with(path: &Path, overrides: &[overrides::Override]) -> Result<Loaded, ScenarioError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        line: 0,
        column: 0,
        field: "(file)".into(),
        message: format!("cannot read: {e}"),
    })?;
    let mut scenario = parse(&file, &src)?;
    let src = if overrides.is_empty() {
        src
    } else {
        let names: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
        let what = format!("{file} with --set {}", names.join(" --set "));
        let edited = overrides::apply(&src, overrides).map_err(|message| ScenarioError {
            file: what.clone(),
            line: 0,
            column: 0,
            field: "(--set)".into(),
            message,
        })?;
        scenario = parse(&what, &edited).map_err(|e| ScenarioError {
            line: 0,
            column: 0,
            ..e
        })?;
        edited
    };
    // Every value the swarm section can draw must give a valid scenario.
    if let Some(t) = &scenario.swarm {
        let sw = swarm::Swarm::parse(t).map_err(|(field, message)| ScenarioError {
            line: line_of_text(&src, "[swarm]").0,
            column: 1,
            file: file.clone(),
            field,
            message,
        })?;
        for o in sw.extremes() {
            let bad = |message: String| ScenarioError {
                line: line_of_text(&src, &format!("\"{}\"", o.path)).0,
                column: 1,
                file: file.clone(),
                field: format!("swarm.\"{}\"", o.path),
                message,
            };
            let edited = overrides::apply(&src, std::slice::from_ref(&o)).map_err(&bad)?;
            parse(&file, &edited).map_err(|e| {
                bad(format!(
                    "drawing {} gives an invalid scenario: {}: {}",
                    o.value, e.field, e.message
                ))
            })?;
        }
    }
    let cost = match &scenario.mesh.proxy_cost {
        None => crate::cost::Calibration::builtin(),
        Some(rel) => {
            // A calibration file beside the scenario (or below it): a relative `.toml` path
            // that does not climb out, so a scenario cannot make the loader read elsewhere.
            let named = Path::new(rel);
            let inside = named.is_relative()
                && named
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
                && named.extension().is_some_and(|e| e == "toml");
            let p = path.parent().unwrap_or(Path::new(".")).join(rel);
            let checked = if inside {
                crate::cost::Calibration::load(&p)
            } else {
                Err(format!(
                    "{rel:?}: expected a relative path to a .toml calibration file beside the scenario (no `..`, not absolute)"
                ))
            };
            checked.map_err(|message| ScenarioError {
                line: line_of_text(&src, "proxy_cost").0,
                column: 1,
                file: file.clone(),
                field: "mesh.proxy_cost".into(),
                message,
            })?
        }
    };
    use sha2::Digest;
    let hash = sha2::Sha256::digest(src.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Loaded {
        scenario,
        path: path.to_path_buf(),
        hash,
        cost,
    })
}

/// Parse and validate scenario text; `file` names it in errors.
pub fn parse(file: &str, src: &str) -> Result<Scenario, ScenarioError> {
    let de =
        toml::de::Deserializer::parse(src).map_err(|e| toml_error(file, src, "(syntax)", &e))?;
    let scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        toml_error(file, src, &path, e.inner())
    })?;
    validate::validate(file, src, &scenario)?;
    Ok(scenario)
}

#[cfg(test)]
mod tests;
