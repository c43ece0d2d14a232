//! Tunnel encapsulation and decapsulation over the pipeline's packet model.
//!
//! So far the header views and encoders of the overlay protocols, checked against RFC vectors
//! and scapy: [`vxlan`] (RFC 7348) and [`geneve`] (RFC 8926, TLV options with the critical
//! bit). The encap/decap stages, tunnel tables and the IP-in-IP family come with the overlay
//! issue; the packet model already reserves [`ferroplane_pipeline::buf::HEADROOM`] bytes in
//! front of every frame so that outer headers are prepended in place.

pub mod geneve;
pub mod vxlan;

/// Runs a scapy snippet that prints hex bytes: the other side of the cross-checks. A missing
/// python3 or scapy fails the test (install-deps.sh installs them); it never skips.
#[cfg(test)]
pub(crate) fn scapy_hex(py: &str) -> Vec<u8> {
    let out = std::process::Command::new("python3")
        .args(["-c", py])
        .output()
        .expect("python3 is required by this test");
    assert!(
        out.status.success(),
        "python3 with scapy is required by this test (pip install scapy): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hex = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}
