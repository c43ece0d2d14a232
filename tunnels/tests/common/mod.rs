//! Helpers shared by the tunnels integration tests: a decap-side table set, packet buffers, the
//! parse + decap stages, checksums and the scapy bridge.
#![allow(dead_code)]

use std::net::IpAddr;

use ferroplane_pipeline::buf::{PacketBuf, FRAME_SIZE};
use ferroplane_pipeline::checksum;
use ferroplane_pipeline::flow::addr_from_ip;
use ferroplane_pipeline::l3::ParseStage;
use ferroplane_pipeline::meta::PortId;
use ferroplane_pipeline::stage::{Context, Stage};
use ferroplane_pipeline::tables::{PortInfo, Tables, TablesBuilder};
use ferroplane_pipeline::tunnel::{Tunnel, TunnelKind};
use ferroplane_pipeline::verdict::Verdict;
use ferroplane_tunnels::DecapStage;

/// MAC of the underlay port `u` (10.2.0.1, 2001:db8:2::1) that tunnel packets arrive on.
pub const UNDERLAY_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x99];

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A packet buffer of its own (leaked: tests only).
pub fn buf() -> PacketBuf {
    PacketBuf::new(Box::leak(vec![0u8; FRAME_SIZE].into_boxed_slice()), 0)
}

/// The tunnels of the vector tests, in interface order after the two ports.
pub struct Ifaces {
    pub vx4: PortId,
    pub vx6: PortId,
    pub vxm: PortId,
    pub gn4: PortId,
    pub gn6: PortId,
    pub ip4: PortId,
    pub ip6: PortId,
}

/// The MAC of the tunnel interface `i` in [`vector_tables`].
pub fn tun_mac(i: PortId) -> [u8; 6] {
    [2, 0, 0, 0, i as u8, 0]
}

pub fn tunnel(
    name: &str,
    kind: TunnelKind,
    local: &str,
    remote: Option<&str>,
    vni: u32,
    options: Vec<u8>,
) -> Tunnel {
    Tunnel {
        name: name.into(),
        kind,
        iface: 0,
        local: addr_from_ip(ip(local)),
        remote: remote.map(|r| addr_from_ip(ip(r))),
        vni,
        dst_port: match kind {
            TunnelKind::Geneve => 6081,
            _ => 4789,
        },
        ttl: 64,
        udp_checksum6: true,
        options,
    }
}

/// Two ports (`u` 10.2.0.1 / 2001:db8:2::1 is the underlay, `l` 10.1.0.1 / 2001:db8:1::1) and
/// tunnels whose local end is `u`'s address and whose remote is 10.2.0.2 / 2001:db8:2::2:
/// VXLAN VNI 100 (v4 and v6 outer), a multipoint VXLAN VNI 200, Geneve VNI 300 (v4, v6) and
/// IP-in-IP (v4, v6 outer).
pub fn vector_tables() -> (Tables, Ifaces) {
    let mut b = TablesBuilder::new(9);
    b.port(PortInfo {
        name: "u".into(),
        mac: UNDERLAY_MAC,
        mtu: 1500,
        addresses: vec![(ip("10.2.0.1"), 24), (ip("2001:db8:2::1"), 64)],
    });
    b.port(PortInfo {
        name: "l".into(),
        mac: [2, 0, 0, 0, 0, 2],
        mtu: 1500,
        addresses: vec![(ip("10.1.0.1"), 24), (ip("2001:db8:1::1"), 64)],
    });
    let mut add = |name: &str, t: Tunnel, n: u8| {
        let id = 2 + n as PortId;
        b.tunnel(
            PortInfo {
                name: name.into(),
                mac: tun_mac(id),
                mtu: 1400,
                addresses: vec![(ip(&format!("10.10{n}.0.1")), 24)],
            },
            t,
        )
    };
    use TunnelKind::*;
    let (v4, r4, v6, r6) = ("10.2.0.1", Some("10.2.0.2"), "2001:db8:2::1", Some("2001:db8:2::2"));
    let ifaces = Ifaces {
        vx4: add("vx4", tunnel("vx4", Vxlan, v4, r4, 100, vec![]), 0),
        vx6: add("vx6", tunnel("vx6", Vxlan, v6, r6, 100, vec![]), 1),
        vxm: add("vxm", tunnel("vxm", Vxlan, v4, None, 200, vec![]), 2),
        gn4: add("gn4", tunnel("gn4", Geneve, v4, r4, 300, vec![]), 3),
        gn6: add("gn6", tunnel("gn6", Geneve, v6, r6, 300, vec![]), 4),
        ip4: add("ip4", tunnel("ip4", Ipip, v4, r4, 0, vec![]), 5),
        ip6: add("ip6", tunnel("ip6", Ipip, v6, r6, 0, vec![]), 6),
    };
    (b.build().unwrap(), ifaces)
}

/// Runs the parse and decap stages over `frame` received on port 0.
pub fn decap(t: &Tables, frame: &[u8]) -> PacketBuf {
    let mut p = buf();
    decap_into(t, frame, &mut p, &mut DecapStage::new(None));
    p
}

pub fn decap_into(t: &Tables, frame: &[u8], p: &mut PacketBuf, stage: &mut DecapStage) {
    p.fill_from(frame).unwrap();
    p.meta.in_port = 0;
    let cx = Context { tables: t, now_ns: 1 };
    let burst = std::slice::from_mut(p);
    ParseStage.process(&cx, burst);
    stage.process(&cx, burst);
}

/// The verdict after parse + decap.
pub fn verdict(t: &Tables, frame: &[u8]) -> Verdict {
    decap(t, frame).meta.verdict
}

/// An IPv4 header's checksum written in place.
pub fn fix_ipv4_checksum(h: &mut [u8]) {
    h[10..12].fill(0);
    let c = checksum::checksum(&h[..(h[0] & 15) as usize * 4]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Runs a python3 snippet (scapy imported by the caller) that prints hex. A missing python3 or
/// scapy fails the test loudly (install-deps.sh installs them); it never skips.
pub fn scapy_hex(py: &str) -> Vec<u8> {
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
    assert!(!hex.is_empty() && hex.len().is_multiple_of(2), "scapy printed no hex: {hex:?}");
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// Several frames from one python run: one hex line each.
pub fn scapy_frames(py: &str) -> Vec<Vec<u8>> {
    let out = std::process::Command::new("python3")
        .args(["-c", py])
        .output()
        .expect("python3 is required by this test");
    assert!(
        out.status.success(),
        "python3 with scapy is required by this test (pip install scapy): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let l = l.trim();
            (0..l.len()).step_by(2).map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap()).collect()
        })
        .collect()
}

/// Hex with whitespace allowed (for annotated byte vectors).
pub fn hex(s: &str) -> Vec<u8> {
    let h: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(h.len().is_multiple_of(2), "odd hex: {h}");
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
}

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    [&dst[..], &src[..], &ethertype.to_be_bytes()[..], payload].concat()
}

/// An IPv4 packet (no options, DF) with a valid header checksum.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, tos: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, tos, 0, 0, 0, 0, 0x40, 0, ttl, proto, 0, 0];
    h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    fix_ipv4_checksum(&mut h);
    h.extend_from_slice(payload);
    h
}

pub fn ipv6(src: [u8; 16], dst: [u8; 16], nh: u8, tc: u8, hlim: u8, payload: &[u8]) -> Vec<u8> {
    let first = (6u32 << 28) | ((tc as u32) << 20) | 0xbeef;
    let mut h = first.to_be_bytes().to_vec();
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[nh, hlim]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// A UDP datagram with a zero checksum.
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    [&sport.to_be_bytes()[..], &dport.to_be_bytes()[..], &len.to_be_bytes()[..], &[0, 0], payload]
        .concat()
}

pub fn vxlan(vni: u32, payload: &[u8]) -> Vec<u8> {
    let v = vni.to_be_bytes();
    [&[0x08, 0, 0, 0, v[1], v[2], v[3], 0][..], payload].concat()
}

/// A Geneve header (version 0, no O/C bits) with encoded `options`.
pub fn geneve(vni: u32, proto: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let v = vni.to_be_bytes();
    let p = proto.to_be_bytes();
    let h = [(options.len() / 4) as u8, 0, p[0], p[1], v[1], v[2], v[3], 0];
    [&h[..], options, payload].concat()
}

pub const LOCAL4: [u8; 4] = [10, 2, 0, 1];
pub const REMOTE4: [u8; 4] = [10, 2, 0, 2];
pub const LOCAL6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const REMOTE6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// An outer frame to the underlay port from `src`: IPv4 (`src.len() == 4`) or IPv6, with ECN /
/// DS `ds`, carrying `payload` as protocol `proto`.
pub fn outer(src: &[u8], proto: u8, ds: u8, payload: &[u8]) -> Vec<u8> {
    if src.len() == 4 {
        let s = [src[0], src[1], src[2], src[3]];
        eth(UNDERLAY_MAC, PEER_MAC, 0x0800, &ipv4(s, LOCAL4, proto, ds, 64, payload))
    } else {
        let mut s = [0u8; 16];
        s.copy_from_slice(src);
        eth(UNDERLAY_MAC, PEER_MAC, 0x86dd, &ipv6(s, LOCAL6, proto, ds, 64, payload))
    }
}

/// An inner Ethernet + IPv4 + UDP frame to `dst_mac` (an overlay interface).
pub fn inner_udp4(dst_mac: [u8; 6], tos: u8, payload: &[u8]) -> Vec<u8> {
    let ip = ipv4([10, 100, 0, 2], [10, 1, 0, 5], 17, tos, 64, &udp(1111, 2222, payload));
    eth(dst_mac, [2, 0, 0, 0, 0xbb, 1], 0x0800, &ip)
}

/// An inner IPv6 + UDP packet (no Ethernet).
pub fn inner_ip6(tc: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = [0u8; 16];
    s[..2].copy_from_slice(&[0xfd, 0]);
    s[15] = 2;
    let mut d = s;
    d[15] = 5;
    ipv6(s, d, 17, tc, 64, &udp(1111, 2222, payload))
}
