//! `[swarm]`: ranges a sweep's seed may draw the scenario from (`meshsim sweep --swarm`), as
//! TigerBeetle's VOPR perturbs its cluster per seed. Each entry names a field the way `--set`
//! does and says what may be drawn:
//!
//! ```toml
//! [swarm]
//! "faults.0.at" = { range = ["1s", "6s"] }        # a duration, uniform to the microsecond
//! "workload.rate_rps" = { range = [50, 200] }     # an integer (or a float), uniform
//! "faults.0.service" = { choose = ["db", "api"] } # one of these, equally likely
//! ```
//!
//! Plain `meshsim run` ignores the section. A sweep with `--swarm` draws each entry from the
//! seed (its own stream, so the run's other randomness is unchanged), writes the drawn scenario as
//! a plain file and runs that file; the file is the reproduction. Every entry is checked at load:
//! both ends of a range and every choice must give a valid scenario.

use rand::Rng;
use toml::{Table, Value};

use super::Dur;
use super::overrides::Override;

/// What one entry may draw.
#[derive(Clone, Debug, PartialEq)]
pub enum Draw {
    /// Uniform between two integers, inclusive.
    Int(i64, i64),
    /// Uniform between two floats.
    Float(f64, f64),
    /// Uniform between two durations, inclusive, to the microsecond.
    Duration(Dur, Dur),
    /// One of these values.
    Choose(Vec<Value>),
}

/// The parsed section, entries in key order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Swarm {
    /// (field path, what it draws).
    pub entries: Vec<(String, Draw)>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Swarm {
    /// Parse the section; an error names the entry and says what was expected.
    pub fn parse(t: &Table) -> Result<Self, (String, String)> {
        let mut entries = Vec::new();
        for (key, v) in t {
            let bad = |m: &str| (format!("swarm.\"{key}\""), m.to_string());
            let spec = v.as_table().filter(|s| s.len() == 1).ok_or_else(|| {
                bad("expected { range = [LOW, HIGH] } or { choose = [A, B, ...] }")
            })?;
            let draw = if let Some(r) = spec.get("range") {
                match r.as_array().map(Vec::as_slice) {
                    Some([Value::Integer(a), Value::Integer(b)]) if a <= b => Draw::Int(*a, *b),
                    Some([Value::Float(a), Value::Float(b)]) if a <= b => Draw::Float(*a, *b),
                    Some([Value::String(a), Value::String(b)]) => {
                        match (a.parse::<Dur>(), b.parse::<Dur>()) {
                            (Ok(a), Ok(b)) if a <= b => Draw::Duration(a, b),
                            _ => {
                                return Err(bad(
                                    "a range of durations is [\"LOW\", \"HIGH\"] with LOW <= HIGH, e.g. [\"1s\", \"5s\"]",
                                ));
                            }
                        }
                    }
                    _ => {
                        return Err(bad(
                            "expected range = [LOW, HIGH]: two integers, two floats or two durations, LOW <= HIGH",
                        ));
                    }
                }
            } else if let Some(c) = spec.get("choose") {
                match c.as_array() {
                    Some(a) if !a.is_empty() => Draw::Choose(a.clone()),
                    _ => return Err(bad("expected choose = [A, B, ...] with at least one value")),
                }
            } else {
                return Err(bad(
                    "expected { range = [LOW, HIGH] } or { choose = [A, B, ...] }",
                ));
            };
            entries.push((key.clone(), draw));
        }
        Ok(Self { entries })
    }

    /// Every value an entry can take at its extremes (both ends of a range, every choice), as
    /// overrides: what load-time validation tries.
    pub fn extremes(&self) -> Vec<Override> {
        let mut out = Vec::new();
        for (path, d) in &self.entries {
            let values: Vec<String> = match d {
                Draw::Int(a, b) => vec![a.to_string(), b.to_string()],
                Draw::Float(a, b) => {
                    vec![Value::Float(*a).to_string(), Value::Float(*b).to_string()]
                }
                Draw::Duration(a, b) => vec![a.to_string(), b.to_string()],
                Draw::Choose(c) => c.iter().map(text).collect(),
            };
            out.extend(values.into_iter().map(|value| Override {
                path: path.clone(),
                value,
            }));
        }
        out
    }

    /// One draw of every entry from `rng`, as overrides in entry order.
    pub fn draw<R: Rng>(&self, rng: &mut R) -> Vec<Override> {
        self.entries
            .iter()
            .map(|(path, d)| {
                let value = match d {
                    Draw::Int(a, b) => rng.random_range(*a..=*b).to_string(),
                    Draw::Float(a, b) => {
                        let x = if a == b { *a } else { rng.random_range(*a..*b) };
                        Value::Float(x).to_string()
                    }
                    Draw::Duration(a, b) => {
                        Dur::from_us(rng.random_range(a.as_us()..=b.as_us())).to_string()
                    }
                    Draw::Choose(c) => text(&c[rng.random_range(0..c.len())]),
                };
                Override {
                    path: path.clone(),
                    value,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn swarm(src: &str) -> Result<Swarm, (String, String)> {
        Swarm::parse(&toml::from_str(src).unwrap())
    }

    #[test]
    fn draws_stay_in_their_ranges_and_every_choice_comes_up() {
        let s = swarm(
            "\"a\" = { range = [\"1s\", \"3s\"] }\n\"b\" = { range = [5, 9] }\n\"c\" = { choose = [\"x\", \"y\", \"z\"] }\n",
        )
        .unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..300 {
            let d = s.draw(&mut rng);
            let a: Dur = d[0].value.parse().unwrap();
            assert!(a >= Dur::from_ms(1000) && a <= Dur::from_ms(3000), "{a}");
            let b: i64 = d[1].value.parse().unwrap();
            assert!((5..=9).contains(&b));
            seen.insert(d[2].value.clone());
        }
        assert_eq!(seen.len(), 3);
        assert_eq!(s.extremes().len(), 2 + 2 + 3);
    }

    #[test]
    fn a_malformed_entry_names_itself() {
        for bad in [
            "\"a\" = 3",
            "\"a\" = { range = [3] }",
            "\"a\" = { range = [\"5s\", \"1s\"] }",
            "\"a\" = { range = [1, 2.0] }",
            "\"a\" = { choose = [] }",
            "\"a\" = { pick = [1] }",
        ] {
            let (field, msg) = swarm(bad).unwrap_err();
            assert_eq!(field, "swarm.\"a\"", "{bad}");
            assert!(
                msg.starts_with("expected") || msg.contains("LOW"),
                "{bad}: {msg}"
            );
        }
    }
}
