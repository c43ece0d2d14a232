//! Tunnel encapsulation and decapsulation over the pipeline's packet model.
//!
//! So far the header views and encoders of the overlay protocols, checked against RFC vectors
//! and scapy: [`vxlan`] (RFC 7348) and [`geneve`] (RFC 8926, TLV options with the critical
//! bit). The encap/decap stages, tunnel tables and the IP-in-IP family come with the overlay
//! issue; the packet model already reserves [`ferroplane_pipeline::buf::HEADROOM`] bytes in
//! front of every frame so that outer headers are prepended in place.

pub mod geneve;
pub mod vxlan;
