//! What the control plane knows of one proxy's copy of one resource type, and how it reads a
//! proxy's answer: Istio's `shouldRespond` (`pilot/pkg/xds/ads.go`) as a pure function.
//!
//! An answer with an error is a NACK; one without a nonce is a (re)subscription and gets the
//! current state; one whose nonce is not the last push's answers a push that has since been
//! superseded and is ignored; otherwise it is the ACK of the last push. The state `istioctl
//! proxy-status` shows follows from the last push and its answer: nothing sent (NOT SENT),
//! sent and unanswered (STALE), acknowledged (SYNCED), refused (NACKED).
//!
//! Not here: the stream that carries the messages (`server.rs`).

use serde::{Deserialize, Serialize};

use super::wire::Request;

/// A proxy's state for one type, as `istioctl proxy-status` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncState {
    /// The last push was acknowledged.
    Synced,
    /// A push is unanswered.
    Stale,
    /// Nothing of this type has been sent on the current stream.
    NotSent,
    /// The last push was refused; the proxy runs its previous version.
    Nacked,
}

impl SyncState {
    /// Every state, in the order reports list them.
    pub const ALL: [SyncState; 4] = [Self::Synced, Self::Stale, Self::NotSent, Self::Nacked];

    /// As `istioctl proxy-status` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "SYNCED",
            Self::Stale => "STALE",
            Self::NotSent => "NOT SENT",
            Self::Nacked => "NACKED",
        }
    }
}

/// What a proxy's message means, given the last push of its type on the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A first request, or one after a reconnect: send the current state.
    Subscribe,
    /// The last push was applied.
    Ack,
    /// The last push was refused, and why.
    Nack(String),
    /// An answer to an older push, superseded by a newer one: ignored.
    Expired,
}

impl Answer {
    /// Read `req` against the nonce of the last push of its type: an answer to an older push
    /// is ignored whatever it says (Istio records a stale NACK; we keep the state about the
    /// push now outstanding), then an error is a NACK, no nonce a subscription, else an ACK.
    pub fn of(req: &Request, last_nonce: Option<&str>) -> Answer {
        match (&req.error, &req.nonce) {
            (_, Some(n)) if Some(n.as_str()) != last_nonce => Answer::Expired,
            (Some(e), Some(_)) => Answer::Nack(e.clone()),
            (_, None) => Answer::Subscribe,
            (None, Some(_)) => Answer::Ack,
        }
    }
}

/// One proxy's copy of one type, on the control plane.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeSync {
    /// The last push: its version and nonce.
    pub sent: Option<(u64, String)>,
    /// The version the proxy says it runs.
    pub running: Option<u64>,
    /// Whether the last push was answered, and how.
    pub answered: Option<Result<(), String>>,
}

impl TypeSync {
    /// Its state.
    pub fn state(&self) -> SyncState {
        match (&self.sent, &self.answered) {
            (None, _) => SyncState::NotSent,
            (Some(_), None) => SyncState::Stale,
            (Some(_), Some(Ok(()))) => SyncState::Synced,
            (Some(_), Some(Err(_))) => SyncState::Nacked,
        }
    }

    /// Take the proxy's message; true when it should be answered with the current state.
    pub fn on_request(&mut self, req: &Request) -> bool {
        let last = self.sent.as_ref().map(|(_, n)| n.as_str());
        match Answer::of(req, last) {
            Answer::Subscribe => {
                self.running = req.version;
                true
            }
            Answer::Ack => {
                self.running = req.version;
                self.answered = Some(Ok(()));
                false
            }
            Answer::Nack(e) => {
                self.running = req.version;
                self.answered = Some(Err(e));
                false
            }
            Answer::Expired => false,
        }
    }

    /// Record a push.
    pub fn on_push(&mut self, version: u64, nonce: String) {
        self.sent = Some((version, nonce));
        self.answered = None;
    }

    /// The last refusal's error, while the state is NACKED.
    pub fn error(&self) -> Option<&str> {
        match &self.answered {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::control::wire::ResourceType;

    fn req(nonce: Option<&str>, error: Option<&str>, version: Option<u64>) -> Request {
        Request {
            node: "db-0".into(),
            kind: ResourceType::Endpoints,
            version,
            nonce: nonce.map(Into::into),
            error: error.map(Into::into),
        }
    }

    #[test]
    fn the_states_follow_pushes_and_answers() {
        let mut s = TypeSync::default();
        assert_eq!(s.state(), SyncState::NotSent);
        assert!(
            s.on_request(&req(None, None, None)),
            "a subscription is answered"
        );
        s.on_push(1, "a".into());
        assert_eq!(s.state(), SyncState::Stale);
        assert!(!s.on_request(&req(Some("a"), None, Some(1))));
        assert_eq!((s.state(), s.running), (SyncState::Synced, Some(1)));
        s.on_push(2, "b".into());
        assert!(!s.on_request(&req(Some("b"), Some("bad split"), Some(1))));
        assert_eq!(s.state(), SyncState::Nacked);
        assert_eq!((s.error(), s.running), (Some("bad split"), Some(1)));
        s.on_push(3, "c".into());
        // A late answer to push b changes nothing.
        assert!(!s.on_request(&req(Some("b"), None, Some(2))));
        assert_eq!((s.state(), s.running), (SyncState::Stale, Some(1)));
    }

    proptest! {
        /// Whatever the messages, only an answer carrying the last push's nonce moves the state
        /// out of STALE, and only a subscription asks for a push.
        #[test]
        fn only_the_last_nonce_counts(
            msgs in proptest::collection::vec((0u8..4, any::<bool>(), any::<bool>()), 0..40)
        ) {
            let mut s = TypeSync::default();
            let mut n = 0u64;
            for (nonce, error, push) in msgs {
                if push {
                    n += 1;
                    s.on_push(n, n.to_string());
                }
                let nonce = (nonce > 0).then(|| (n + 1).saturating_sub(u64::from(nonce)).to_string());
                let before = s.clone();
                let respond = s.on_request(&req(nonce.as_deref(), error.then_some("e"), Some(0)));
                prop_assert_eq!(respond, nonce.is_none());
                let current = s.sent.as_ref().map(|(_, x)| x.clone());
                if nonce.is_some() && nonce != current {
                    prop_assert_eq!(&s, &before);
                } else if nonce.is_some() {
                    let want = if error { SyncState::Nacked } else { SyncState::Synced };
                    prop_assert_eq!(s.state(), want);
                }
            }
        }
    }
}
