//! `--set key=value`: change one field of a scenario file from the command line, e.g.
//! `mesh.preset=linkerd-2.16`, `workload.rate_rps=500`, `services.api.replicas=3` (an array of
//! tables is addressed by its entries' `name`, or by index: `faults.0.at=2s`). The value is read
//! as a TOML value (`3`, `0.5`, `true`, `["a", "b"]`) and as a string when it is not one.
//!
//! Overrides edit the file's TOML document after the file itself has been validated, so an error
//! in the file still names its line; an error the override causes names the override.

use std::str::FromStr;

use toml::{Table, Value};

/// One `key=value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// Dotted path.
    pub path: String,
    /// The value as written.
    pub value: String,
}

impl FromStr for Override {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (path, value) = s
            .split_once('=')
            .filter(|(p, _)| !p.trim().is_empty())
            .ok_or_else(|| {
                format!("--set {s:?}: expected KEY=VALUE, e.g. mesh.preset=linkerd-2.16")
            })?;
        Ok(Self {
            path: path.trim().to_string(),
            value: value.trim().to_string(),
        })
    }
}

impl std::fmt::Display for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.path, self.value)
    }
}

fn parse_value(v: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {v}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(v.to_string()))
}

/// `src` (a whole scenario file) with every override applied, as TOML text.
pub fn apply(src: &str, overrides: &[Override]) -> Result<String, String> {
    let mut doc: Table = toml::from_str(src).map_err(|e| e.to_string())?;
    for o in overrides {
        set(&mut doc, o).map_err(|e| format!("--set {o}: {e}"))?;
    }
    toml::to_string(&doc).map_err(|e| e.to_string())
}

fn set(doc: &mut Table, o: &Override) -> Result<(), String> {
    let parts: Vec<&str> = o.path.split('.').collect();
    let mut root = Value::Table(std::mem::take(doc));
    let result = set_in(&mut root, &parts, &parts, parse_value(&o.value));
    if let Value::Table(t) = root {
        *doc = t;
    }
    result
}

/// Set `rest` under `here` (`all` is the whole path, for messages). A missing section is
/// created, so `mesh.preset=...` works on a file without `[mesh]`; a misspelt one then fails
/// validation, which names the override.
fn set_in(here: &mut Value, all: &[&str], rest: &[&str], value: Value) -> Result<(), String> {
    let at = all[..all.len() - rest.len()].join(".");
    let (key, rest) = rest.split_first().expect("a path has a part");
    match here {
        Value::Table(t) => {
            if rest.is_empty() {
                t.insert(key.to_string(), value);
                return Ok(());
            }
            let next = t
                .entry(key.to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            set_in(next, all, rest, value)
        }
        Value::Array(a) => {
            let idx = match key.parse::<usize>() {
                Ok(n) if n < a.len() => n,
                Ok(n) => return Err(format!("`{at}` has {} entries; no entry {n}", a.len())),
                Err(_) => a
                    .iter()
                    .position(|e| e.get("name").and_then(Value::as_str) == Some(*key))
                    .ok_or_else(|| format!("`{at}` has no entry named `{key}`"))?,
            };
            if rest.is_empty() {
                a[idx] = value;
                return Ok(());
            }
            set_in(&mut a[idx], all, rest, value)
        }
        _ => Err(format!("`{at}` is a value, not a section")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "name = \"t\"\n[mesh]\npreset = \"istio-1.24\"\n[[services]]\nname = \"api\"\nreplicas = 2\n[[services]]\nname = \"db\"\n[workload]\nrate_rps = 100\n";

    fn set1(s: &str) -> Result<Table, String> {
        apply(SRC, &[s.parse().unwrap()]).map(|t| toml::from_str(&t).unwrap())
    }

    #[test]
    fn overrides_reach_tables_named_entries_and_indices() {
        let t = set1("mesh.preset=linkerd-2.16").unwrap();
        assert_eq!(t["mesh"]["preset"].as_str(), Some("linkerd-2.16"));
        let t = set1("services.db.replicas=3").unwrap();
        assert_eq!(t["services"][1]["replicas"].as_integer(), Some(3));
        let t = set1("services.0.replicas=5").unwrap();
        assert_eq!(t["services"][0]["replicas"].as_integer(), Some(5));
        let t = set1("workload.rate_rps=2.5").unwrap();
        assert_eq!(t["workload"]["rate_rps"].as_float(), Some(2.5));
        let t = set1("mesh.request_timeout=2s").unwrap();
        assert_eq!(t["mesh"]["request_timeout"].as_str(), Some("2s"));
    }

    #[test]
    fn a_bad_override_says_what_it_could_not_find() {
        // A missing section is created (validation then judges it).
        let t = set1("network.latency=1ms").unwrap();
        assert_eq!(t["network"]["latency"].as_str(), Some("1ms"));
        assert!(
            set1("services.web.replicas=1")
                .unwrap_err()
                .contains("no entry named `web`")
        );
        assert!(
            set1("services.7.replicas=1")
                .unwrap_err()
                .contains("2 entries")
        );
        assert!(
            set1("services.api.replicas.x=1")
                .unwrap_err()
                .contains("is a value")
        );
        assert!("novalue".parse::<Override>().is_err());
    }
}
