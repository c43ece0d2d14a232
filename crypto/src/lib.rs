//! WireGuard cryptography for ferroplane: the Noise_IKpsk2 handshake, cookies, the replay window
//! and session keys.
//!
//! This crate is intentionally empty until the WireGuard issue lands; the workspace carries it now so
//! that the dependency arrows of DESIGN.md (`tunnels -> crypto`) are fixed from the start.
