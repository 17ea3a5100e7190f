//! `[control_plane]`: a control plane in charge of the mesh's configuration. With it, every
//! sidecar subscribes to the control plane on the `control-plane` host and runs what it is
//! pushed; pods crashing and restarting change the endpoints it pushes, and `config` faults
//! change policies. Without it, the configuration is fixed for the run.
//!
//! ```toml
//! [control_plane]
//! push_cpu = "1ms"            # CPU per push of one type to one proxy (default 1 ms)
//! cores = 1                   # pushes that run at once
//! debounce = "100ms"          # quiet period before a push (Istio's PILOT_DEBOUNCE_AFTER)
//! debounce_max = "10s"        # longest a burst is held (PILOT_DEBOUNCE_MAX)
//! keepalive = "30s"           # HTTP/2 pings on each proxy's stream (Istio's xDS cluster)
//! keepalive_timeout = "10s"   # an unanswered ping ends the stream
//! ```

use serde::{Deserialize, Serialize};

use super::Dur;

/// The control plane's settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlPlaneSpec {
    /// CPU per push of one type to one proxy.
    pub push_cpu: Dur,
    /// Pushes that run at once.
    pub cores: u32,
    /// Quiet period before a push.
    pub debounce: Dur,
    /// Longest a burst of changes is held.
    pub debounce_max: Dur,
    /// Ping interval on each proxy's stream.
    pub keepalive: Dur,
    /// How long a ping may go unanswered.
    pub keepalive_timeout: Dur,
}

impl Default for ControlPlaneSpec {
    fn default() -> Self {
        let cp = mesh_core::control::server::Settings::default();
        let client = mesh_core::control::client::Settings::default();
        Self {
            push_cpu: Dur(cp.push_cpu),
            cores: 1,
            debounce: Dur(cp.debounce.quiet),
            debounce_max: Dur(cp.debounce.max),
            keepalive: Dur(client.keepalive),
            keepalive_timeout: Dur(client.keepalive_timeout),
        }
    }
}

impl ControlPlaneSpec {
    /// The control plane's settings (the run sets `instance` and `first_version`).
    pub fn server(&self) -> mesh_core::control::server::Settings {
        mesh_core::control::server::Settings {
            debounce: mesh_core::control::Debounce {
                quiet: self.debounce.0,
                max: self.debounce_max.0,
            },
            push_cpu: self.push_cpu.0,
            cores: self.cores as usize,
            ..Default::default()
        }
    }

    /// Each proxy's settings.
    pub fn client(&self) -> mesh_core::control::client::Settings {
        mesh_core::control::client::Settings {
            keepalive: self.keepalive.0,
            keepalive_timeout: self.keepalive_timeout.0,
            ..Default::default()
        }
    }
}
