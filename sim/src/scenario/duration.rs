//! Durations as people write them in scenario files: `"250ms"`, `"2s"`, `"1.5s"`, `"500us"`, `"1m"`.
//! A bare number is an error, because a number without a unit is the most common way to be off by 1000.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration read from a scenario file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    /// From whole milliseconds.
    pub const fn from_ms(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    /// From whole microseconds.
    pub const fn from_us(us: u64) -> Self {
        Dur(Duration::from_micros(us))
    }
    /// Whole microseconds.
    pub fn as_us(self) -> u64 {
        self.0.as_micros() as u64
    }
    /// Whole milliseconds (rounded down).
    pub fn as_ms(self) -> u64 {
        self.0.as_millis() as u64
    }
}

/// What went wrong reading a duration.
#[derive(Debug, thiserror::Error)]
#[error("expected a duration such as \"250ms\" or \"2s\" (units: us, ms, s, m), found {0:?}")]
pub struct DurError(String);

impl FromStr for Dur {
    type Err = DurError;
    fn from_str(s: &str) -> Result<Self, DurError> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DurError(s.to_string()))?;
        let (num, unit) = t.split_at(split);
        let value: f64 = num.parse().map_err(|_| DurError(s.to_string()))?;
        let us_per_unit = match unit.trim() {
            "us" | "µs" => 1.0,
            "ms" => 1_000.0,
            "s" => 1_000_000.0,
            "m" | "min" => 60_000_000.0,
            _ => return Err(DurError(s.to_string())),
        };
        let us = value * us_per_unit;
        if !us.is_finite() || !(0.0..=1e15).contains(&us) {
            return Err(DurError(s.to_string()));
        }
        Ok(Dur(Duration::from_micros(us.round() as u64)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.as_us();
        if us.is_multiple_of(1_000_000) {
            write!(f, "{}s", us / 1_000_000)
        } else if us.is_multiple_of(1_000) {
            write!(f, "{}ms", us / 1_000)
        } else {
            write!(f, "{us}us")
        }
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"250ms\" or \"2s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!("250ms".parse::<Dur>().unwrap(), Dur::from_ms(250));
        assert_eq!("2s".parse::<Dur>().unwrap(), Dur::from_ms(2000));
        assert_eq!("1.5s".parse::<Dur>().unwrap(), Dur::from_ms(1500));
        assert_eq!("500us".parse::<Dur>().unwrap().as_us(), 500);
        assert_eq!("1m".parse::<Dur>().unwrap(), Dur::from_ms(60_000));
    }

    #[test]
    fn rejects_bare_numbers_and_unknown_units() {
        for bad in ["250", "2 hours", "ms", "-1s", ""] {
            assert!(bad.parse::<Dur>().is_err(), "{bad}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["250ms", "2s", "500us"] {
            assert_eq!(s.parse::<Dur>().unwrap().to_string(), s);
        }
    }
}
