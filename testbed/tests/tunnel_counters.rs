//! Tunnel interface counters end to end, against the kernel's `vxlan` device on h2: what the
//! slow path sends into the tunnel (ARP replies and echo replies from ferroplane's own overlay
//! address) counts as the tunnel's tx, and a tunnel added in a deleted tunnel's slot starts
//! from zero. Needs root (network namespaces, AF_XDP).

use ferroplane_ctl::{call, Reply, Request, Stats};
use ferroplane_dataplane::netns::addr;
use ferroplane_testbed::live::{bed_with, kernel_vxlan, sh, stats, Bed, SERIAL};

/// A point-to-point VXLAN tunnel to h2 and nothing routed through it.
const TUNNEL: &str = r#"
[[tunnel]]
name = "vx0"
kind = "vxlan"
local = "10.2.0.1"
remote = "10.2.0.2"
vni = 100
addresses = ["10.100.0.1/24"]
"#;

fn tunnel(s: &Stats, name: &str) -> (u64, u64, u64, u64) {
    let t = s.tunnels.iter().find(|t| t.name == name).expect("tunnel in stats");
    (t.rx_packets, t.rx_bytes, t.tx_packets, t.tx_bytes)
}

fn ctl(b: &Bed, req: Request) -> String {
    match call(&b.router.socket, req) {
        Ok(Reply::Ok { message }) => message,
        other => panic!("{other:?}"),
    }
}

#[test]
fn slow_path_replies_count_as_tunnel_tx_and_a_reused_slot_starts_from_zero() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let b = bed_with("tc", &[1], 1, &|c| c + TUNNEL);
    let (h2, dev) = (&b.topo.h2, &b.topo.h2_if);
    kernel_vxlan(h2, "vx0", "100", (addr::H2_V4, addr::R_RIGHT_V4), dev, "10.100.0.2/24");
    // Only ferroplane's own overlay address: everything ferroplane sends into vx0 (the ARP
    // reply, the echo replies) comes from the slow path.
    let out = sh(h2, &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.100.0.1"]);
    assert!(out.contains(" 0% packet loss"), "{out}\n{}", b.router.log_text());
    let (rx, _, tx, tx_bytes) = tunnel(&stats(&b), "vx0");
    assert!(rx >= 4, "ARP request and 3 echo requests decapsulated: {rx}");
    assert!(tx >= 4 && tx_bytes >= 42 + 3 * 98, "ARP reply and 3 echo replies: {tx} {tx_bytes}");
    // vx0 goes; vx1 takes its slot and has counted nothing yet. vx1 has its own VNI: the
    // kernel's device on h2 keeps sending on VNI 100 by itself (its IPv6 MLD reports, 90 bytes
    // inner, came in right after the add in one CI run), which vx1 must not decapsulate.
    ctl(&b, Request::TunnelDel { name: "vx0".into() });
    let vx1 = TUNNEL
        .replace("vx0", "vx1")
        .replace("10.100.0.1", "10.101.0.1")
        .replace("vni = 100", "vni = 101");
    let m = ctl(&b, Request::TunnelAdd { toml: vx1 });
    assert!(m.contains("tunnel vx1 added"), "{m}");
    assert_eq!(tunnel(&stats(&b), "vx1"), (0, 0, 0, 0), "vx1 inherited vx0's counters");
}
