//! Per-second edge series and the retry storms in them: maximal runs of consecutive seconds
//! whose attempts per request exceed the threshold. Pure functions of recorded data, so they
//! are tested on series written by hand.

use std::collections::BTreeMap;

use mesh_core::proxy::stats::Second;
use reports::{EdgeBucket, Storm};

/// Each edge's per-second counts as report buckets (amplification and error ratio per second),
/// and every storm in them, ordered by start then edge.
pub(super) fn edge_series(
    per_sec: BTreeMap<String, BTreeMap<u64, Second>>,
    threshold: f64,
) -> (BTreeMap<String, Vec<EdgeBucket>>, Vec<Storm>) {
    let mut storms = Vec::new();
    let mut timeline = BTreeMap::new();
    for (edge, secs) in per_sec {
        let buckets: Vec<EdgeBucket> = secs
            .into_iter()
            .map(|(t_s, n)| EdgeBucket {
                t_s,
                requests: n.requests,
                attempts: n.attempts,
                amplification: super::harvest::ratio(n.attempts, n.requests),
                failures: n.failures,
                error_ratio: super::harvest::ratio(n.failures, n.requests),
            })
            .collect();
        storms.extend(storms_in(&edge, &buckets, threshold));
        timeline.insert(edge, buckets);
    }
    storms.sort_by(|a, b| (a.start_s, &a.edge).cmp(&(b.start_s, &b.edge)));
    (timeline, storms)
}

/// The storms on `edge` in `buckets` (ordered by second): each a run of consecutive seconds
/// with requests and an amplification above `threshold`, with its peak. A second without
/// requests, or a gap in the series, ends a storm.
pub(super) fn storms_in(edge: &str, buckets: &[EdgeBucket], threshold: f64) -> Vec<Storm> {
    let mut storms = Vec::new();
    let mut open: Option<Storm> = None;
    for b in buckets {
        let stormy = b.requests > 0 && b.amplification > threshold;
        match (&mut open, stormy) {
            (Some(s), true) if s.end_s == b.t_s => {
                s.end_s = b.t_s + 1;
                s.peak_amplification = s.peak_amplification.max(b.amplification);
            }
            (_, true) => {
                storms.extend(open.take());
                open = Some(Storm {
                    edge: edge.to_string(),
                    start_s: b.t_s,
                    end_s: b.t_s + 1,
                    peak_amplification: b.amplification,
                });
            }
            (_, false) => storms.extend(open.take()),
        }
    }
    storms.extend(open);
    storms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(amps: &[(u64, u64, f64)]) -> Vec<EdgeBucket> {
        amps.iter()
            .map(|&(t_s, requests, amplification)| EdgeBucket {
                t_s,
                requests,
                attempts: (requests as f64 * amplification) as u64,
                amplification,
                failures: 0,
                error_ratio: 0.0,
            })
            .collect()
    }

    fn spans(storms: &[Storm]) -> Vec<(u64, u64, f64)> {
        storms
            .iter()
            .map(|s| (s.start_s, s.end_s, s.peak_amplification))
            .collect()
    }

    #[test]
    fn edge_series_are_ratios_per_second_and_storms_are_ordered() {
        let second = |requests, attempts, failures| Second {
            requests,
            attempts,
            failures,
        };
        let per_sec = BTreeMap::from([
            (
                "b->c".to_string(),
                BTreeMap::from([(0, second(10, 40, 5)), (1, second(0, 3, 0))]),
            ),
            ("a->b".to_string(), BTreeMap::from([(3, second(3, 9, 0))])),
        ]);
        let (timeline, storms) = edge_series(per_sec, 2.0);
        let b = &timeline["b->c"];
        assert_eq!((b[0].amplification, b[0].error_ratio), (4.0, 0.5));
        assert_eq!((b[1].amplification, b[1].error_ratio), (0.0, 0.0));
        assert_eq!(timeline["a->b"][0].t_s, 3);
        let order: Vec<(&str, u64)> = storms
            .iter()
            .map(|s| (s.edge.as_str(), s.start_s))
            .collect();
        assert_eq!(order, [("b->c", 0), ("a->b", 3)]);
    }

    #[test]
    fn runs_above_the_threshold_are_storms_with_their_peak() {
        let b = series(&[
            (0, 10, 1.0),
            (1, 10, 2.0),
            (2, 10, 3.5),
            (3, 10, 1.5), // at the threshold: not above it
            (4, 10, 1.6),
            (6, 10, 2.0), // a gap at 5 s ends the storm before
            (7, 0, 9.0),  // no requests: no storm
            (8, 10, 1.7),
        ]);
        let got = storms_in("api->db", &b, 1.5);
        assert_eq!(
            spans(&got),
            vec![(1, 3, 3.5), (4, 5, 1.6), (6, 7, 2.0), (8, 9, 1.7)]
        );
        assert!(got.iter().all(|s| s.edge == "api->db"));
    }

    #[test]
    fn a_calm_or_empty_series_has_no_storm() {
        assert!(storms_in("e", &[], 1.5).is_empty());
        assert!(storms_in("e", &series(&[(0, 5, 1.2), (1, 5, 1.5)]), 1.5).is_empty());
        // A storm that lasts to the end of the series is closed there.
        assert_eq!(
            spans(&storms_in("e", &series(&[(0, 5, 1.0), (1, 5, 4.0)]), 1.5)),
            vec![(1, 2, 4.0)]
        );
    }
}
