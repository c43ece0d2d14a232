//! Tunnel encapsulation and decapsulation over the pipeline's packet model.
//!
//! - [`vxlan`] (RFC 7348) and [`geneve`] (RFC 8926, TLV options with the critical bit): header
//!   views and encoders, checked against RFC vectors and scapy.
//! - [`decap`]: the stage after parse that strips the outer headers of packets for our tunnel
//!   endpoints (VXLAN, Geneve, the IP-in-IP family of RFC 2003/4213/2473) and reports learned
//!   MACs; [`encap`]: the last stage, which wraps packets routed into a tunnel and sends them on
//!   the underlay.
//! - [`counters`]: per-tunnel interface counters.
//! - [`ecn`]: DS field and ECN handling across a tunnel (RFC 6040).
//!
//! The tunnel table itself is [`ferroplane_pipeline::tunnel`], part of the tables snapshot;
//! outer headers go into the [`ferroplane_pipeline::buf::HEADROOM`] every frame reserves.

pub mod counters;
pub mod decap;
pub mod ecn;
pub mod encap;
pub mod geneve;
pub mod vxlan;

pub use counters::TunnelCounters;
pub use decap::{DecapStage, FdbLearn, LearnQueue};
pub use encap::EncapStage;
