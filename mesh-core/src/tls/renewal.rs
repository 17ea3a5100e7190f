//! When a workload certificate is due for renewal, under Istio's and Linkerd's default rules.

use std::time::Duration;

use super::Validity;

/// When a workload certificate is renewed, as the meshes do it by default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Renewal {
    /// Istio (1.24+): at `fraction` of the lifetime (0.5), with up to `jitter` of the lifetime
    /// (0.01) added at random (`SECRET_GRACE_PERIOD_RATIO` and its jitter).
    Istio {
        /// Share of the lifetime after which to renew.
        fraction: f64,
        /// Largest random share of the lifetime added.
        jitter: f64,
    },
    /// Linkerd: when `fraction` (0.7) of the remaining lifetime has passed, i.e. at
    /// `fraction` × lifetime for a freshly issued certificate.
    Linkerd {
        /// Share of the remaining lifetime after which to renew.
        fraction: f64,
    },
}

impl Renewal {
    /// Istio's default.
    pub const ISTIO: Renewal = Renewal::Istio {
        fraction: 0.5,
        jitter: 0.01,
    };
    /// Linkerd's default.
    pub const LINKERD: Renewal = Renewal::Linkerd { fraction: 0.7 };

    /// How long after `issued_at` to renew a certificate valid for `validity` seconds, whose
    /// holder received it at `received_at` (Linkerd counts from there); `u` is a uniform draw
    /// in [0, 1) from the caller's seeded stream (Istio's jitter).
    pub fn renew_after(self, validity: Validity, received_at: u64, u: f64) -> Duration {
        let lifetime = validity.not_after.saturating_sub(validity.not_before) as f64;
        let secs = match self {
            Renewal::Istio { fraction, jitter } => lifetime * (fraction + jitter * u),
            Renewal::Linkerd { fraction } => {
                let remaining = validity.not_after.saturating_sub(received_at) as f64;
                let from_issue = received_at.saturating_sub(validity.not_before) as f64;
                from_issue + remaining * fraction
            }
        };
        Duration::from_secs_f64(secs.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_follows_each_meshs_rule() {
        let day = Validity {
            not_before: 1_000,
            not_after: 1_000 + 86_400,
        };
        // Istio: half the lifetime, plus up to 1% of it.
        assert_eq!(
            Renewal::ISTIO.renew_after(day, 1_000, 0.0),
            Duration::from_secs(43_200)
        );
        let late = Renewal::ISTIO.renew_after(day, 1_000, 0.999_999);
        assert!(late > Duration::from_secs(44_063) && late < Duration::from_secs(44_065));
        // Linkerd: 70% of what remained when it was received.
        assert_eq!(
            Renewal::LINKERD.renew_after(day, 1_000, 0.5),
            Duration::from_secs_f64(86_400.0 * 0.7)
        );
        let received_late = Renewal::LINKERD.renew_after(day, 1_000 + 36_400, 0.0);
        assert_eq!(
            received_late,
            Duration::from_secs_f64(36_400.0 + 50_000.0 * 0.7)
        );
    }
}
