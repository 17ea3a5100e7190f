//! The control plane and a proxy's subscription to it: the mesh's desired state (services,
//! endpoints, policies) versioned per resource type and pushed to every proxy over a
//! long-lived HTTP/2 watch stream, each push ACKed or NACKed as xDS does, each proxy's state
//! (SYNCED, STALE, NOT SENT, NACKED) known to the control plane.
//!
//! # Layout
//! - `wire`: the two messages and their framing (newline-delimited JSON on one HTTP/2 stream);
//! - `sync`: one proxy's copy of one type, and Istio's rule for reading an answer;
//! - `debounce`: when a burst of changes becomes a push (Istio's 100 ms / 10 s);
//! - `server`: the control plane;
//! - `client`: the proxy's side, which publishes on the proxy's [`crate::config::ConfigTx`];
//! - `body`: a streaming body fed from a channel, which both sides write;
//! - `ca`: the control plane's certificate authority (signing requests over HTTP);
//! - `agent`: a workload's certificate agent, renewing on its mesh's schedule.
//!
//! Not here: authorization policies (still in each proxy's own configuration), and where
//! changes come from (the simulator's pod lifecycle, the binary's mesh file).

pub mod agent;
mod body;
pub mod ca;
pub mod client;
pub mod debounce;
pub mod server;
pub mod sync;
pub mod wire;

pub use client::{Event, Subscriber};
pub use debounce::Debounce;
pub use server::{ControlPlane, Status};
pub use sync::SyncState;
pub use wire::ResourceType;
