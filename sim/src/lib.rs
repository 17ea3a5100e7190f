//! placeholder
pub mod cost;
pub mod scenario;
pub mod substrate;
