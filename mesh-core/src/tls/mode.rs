//! What a sidecar's inbound listener accepts (Istio's `PeerAuthentication` mode), changeable
//! while it serves, as a migration to mTLS changes it.
//!
//! `Strict` accepts only mutual TLS and counts a plaintext connection as a refused handshake
//! (`plaintext`); `Permissive` accepts both, telling them apart by the first byte (a TLS
//! record starts with 0x16, a handshake; HTTP never does); `Disabled` accepts only plaintext.
//! A plaintext request carries no peer identity, so a policy naming principals refuses it.
//! When the mode changes, connections accepted under the old one drain (finish what is in
//! flight and close), as Envoy drains a listener whose filter chains changed, so callers
//! reconnect under the new terms.
//!
//! Not here: what the outbound side sends (mTLS whenever the proxy has TLS settings).

use serde::{Deserialize, Serialize};

/// An inbound listener's mTLS mode.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Mutual TLS only.
    #[default]
    Strict,
    /// Mutual TLS or plaintext.
    Permissive,
    /// Plaintext only.
    Disabled,
}

impl Mode {
    /// As Istio names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Strict => "STRICT",
            Mode::Permissive => "PERMISSIVE",
            Mode::Disabled => "DISABLE",
        }
    }
}

/// The first byte of every TLS connection: a handshake record.
pub const TLS_HANDSHAKE: u8 = 0x16;

/// A mode that can change while connections are served; connections watch it to drain when
/// it changes.
#[derive(Debug)]
pub(super) struct Current(tokio::sync::watch::Sender<Mode>);

impl Default for Current {
    fn default() -> Self {
        Self(tokio::sync::watch::channel(Mode::default()).0)
    }
}

impl Current {
    pub(super) fn get(&self) -> Mode {
        *self.0.borrow()
    }

    pub(super) fn set(&self, m: Mode) {
        self.0
            .send_if_modified(|now| std::mem::replace(now, m) != m);
    }

    pub(super) fn watch(&self) -> tokio::sync::watch::Receiver<Mode> {
        self.0.subscribe()
    }
}
