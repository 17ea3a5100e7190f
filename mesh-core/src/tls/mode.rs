//! What a sidecar's inbound listener accepts (Istio's `PeerAuthentication` mode), changeable
//! while it serves, as a migration to mTLS changes it.
//!
//! `Strict` accepts only mutual TLS and counts a plaintext connection as a refused handshake
//! (`plaintext`); `Permissive` accepts both, telling them apart by the first byte (a TLS
//! record starts with 0x16, a handshake; HTTP never does); `Disabled` accepts only plaintext.
//! A plaintext request carries no peer identity, so a policy naming principals refuses it.
//!
//! Not here: what the outbound side sends (mTLS whenever the proxy has TLS settings).

use std::sync::atomic::{AtomicU8, Ordering};

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

/// A mode that can change while connections are served.
#[derive(Debug, Default)]
pub(super) struct Current(AtomicU8);

impl Current {
    pub(super) fn get(&self) -> Mode {
        match self.0.load(Ordering::Relaxed) {
            1 => Mode::Permissive,
            2 => Mode::Disabled,
            _ => Mode::Strict,
        }
    }

    pub(super) fn set(&self, m: Mode) {
        let v = match m {
            Mode::Strict => 0,
            Mode::Permissive => 1,
            Mode::Disabled => 2,
        };
        self.0.store(v, Ordering::Relaxed);
    }
}
