//! Shared harness of the decap fuzz targets (`decap_vxlan`, `decap_geneve`, `decap_ipip`).
//!
//! Input: a 5-byte control prefix, then the bytes after a valid outer header addressed to one of
//! our tunnel endpoints: after the outer UDP header for VXLAN/Geneve (so the VXLAN/Geneve header,
//! its options and the inner frame are all fuzzed), after the outer IP header for IP-in-IP.
//!
//! Control prefix:
//! - byte 0 bit 0: IPv6 outer (else IPv4); bit 1: outer source is an unknown peer (multipoint
//!   tunnel, or an unknown endpoint for IP-in-IP) instead of the point-to-point tunnel's remote;
//!   bits 2-3: outer ECN; bit 4: replace the outer IP length with bytes 1-2; bit 5: replace the
//!   UDP length with bytes 3-4; bit 6: IP-in-IP protocol 41 (else 4); bit 7: leave the IPv4
//!   header checksum stale after a length change.
//!
//! Every input runs through the worker's stage list (`assemble::stages`): parse and decap first,
//! checked for a window inside the frame and consistent metadata, then input, route, rewrite and
//! encap, after which the packet must have a final verdict.
//!
//! `DECAP_FUZZ_TRACE=1 cargo fuzz run decap_vxlan seeds/decap_vxlan -- -runs=0` prints what
//! each input became (to check that seeds reach the decapsulator).
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;

use ferroplane_dataplane::assemble;
use ferroplane_pipeline::buf::{PacketBuf, FRAME_SIZE, HEADROOM};
use ferroplane_pipeline::checksum;
use ferroplane_pipeline::flow::addr_from_ip;
use ferroplane_pipeline::meta::L3;
use ferroplane_pipeline::stage::{Context, Stage};
use ferroplane_pipeline::tables::{NextHopSpec, PortInfo, Tables, TablesBuilder};
use ferroplane_pipeline::tunnel::{Tunnel, TunnelKind};
use ferroplane_pipeline::verdict::Verdict;
use ferroplane_tunnels::decap::MAX_NESTING;
use ferroplane_tunnels::LearnQueue;

pub const UNDERLAY_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x99];
pub const LOCAL4: [u8; 4] = [10, 2, 0, 1];
pub const REMOTE4: [u8; 4] = [10, 2, 0, 2];
pub const OTHER4: [u8; 4] = [10, 2, 0, 9];
pub const LOCAL6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const REMOTE6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const OTHER6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
/// The point-to-point tunnels' VNI; the multipoint ones use `MP_VNI`.
pub const VNI: u32 = 100;
pub const MP_VNI: u32 = 200;
/// MACs of the tunnel interfaces: p2p IPv4 outer, p2p IPv6 outer, multipoint v4, multipoint v6.
pub const TUN_MACS: [[u8; 6]; 4] =
    [[2, 0, 0, 0, 1, 0], [2, 0, 0, 0, 2, 0], [2, 0, 0, 0, 3, 0], [2, 0, 0, 0, 4, 0]];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Ports `u` (underlay, 10.2.0.1, 2001:db8:2::1) and `l` (10.1.0.1, 2001:db8:1::1), a
/// point-to-point tunnel of `kind` per outer family, for VXLAN/Geneve a multipoint one per
/// family too, and routes into and out of the tunnels so every later stage has work.
pub fn build_tables(kind: TunnelKind) -> Tables {
    let mut b = TablesBuilder::new(3);
    let u = b.port(PortInfo {
        name: "u".into(),
        mac: UNDERLAY_MAC,
        mtu: 1500,
        addresses: vec![(ip("10.2.0.1"), 24), (ip("2001:db8:2::1"), 64)],
    });
    let l = b.port(PortInfo {
        name: "l".into(),
        mac: [2, 0, 0, 0, 0, 2],
        mtu: 1500,
        addresses: vec![(ip("10.1.0.1"), 24), (ip("2001:db8:1::1"), 64)],
    });
    let port_count = 2;
    // Non-critical Geneve option (class 0x0102, type 0x01, 4 data bytes) sent on encap.
    let options = if kind == TunnelKind::Geneve {
        vec![0x01, 0x02, 0x01, 0x01, 0x0a, 0x0b, 0x0c, 0x0d]
    } else {
        Vec::new()
    };
    let dst_port = match kind {
        TunnelKind::Geneve => 6081,
        _ => 4789,
    };
    // As the config has it: IP-in-IP tunnels have no VNI.
    let tunnel = |name: &str, local: &str, remote: Option<&str>, vni: u32| Tunnel {
        name: name.into(),
        kind,
        iface: 0,
        local: addr_from_ip(ip(local)),
        remote: remote.map(|r| addr_from_ip(ip(r))),
        vni: if kind == TunnelKind::Ipip { 0 } else { vni },
        dst_port,
        ttl: 64,
        udp_checksum6: true,
        options: options.clone(),
    };
    let info = |name: &str, mac: [u8; 6], a4: &str, a6: &str| PortInfo {
        name: name.into(),
        mac,
        mtu: 1400,
        addresses: vec![(ip(a4), 24), (ip(a6), 64)],
    };
    let t4 = b.tunnel(
        info("t4", TUN_MACS[0], "10.100.0.1", "fd00:100::1"),
        tunnel("t4", "10.2.0.1", Some("10.2.0.2"), VNI),
    );
    let t6 = b.tunnel(
        info("t6", TUN_MACS[1], "10.106.0.1", "fd00:106::1"),
        tunnel("t6", "2001:db8:2::1", Some("2001:db8:2::2"), VNI),
    );
    assert_eq!((t4, t6), (port_count, port_count + 1));
    if kind != TunnelKind::Ipip {
        let m4 = b.tunnel(
            info("m4", TUN_MACS[2], "10.101.0.1", "fd00:101::1"),
            tunnel("m4", "10.2.0.1", None, MP_VNI),
        );
        let m6 = b.tunnel(
            info("m6", TUN_MACS[3], "10.107.0.1", "fd00:107::1"),
            tunnel("m6", "2001:db8:2::1", None, MP_VNI),
        );
        b.fdb(m4, [0; 6], ip("10.2.0.9"));
        b.fdb(m4, [2, 0, 0, 0, 0xaa, 1], ip("10.2.0.10"));
        b.fdb(m6, [0; 6], ip("2001:db8:2::9"));
        b.neighbour(m4, ip("10.101.0.2"), [2, 0, 0, 0, 0xaa, 1]);
        b.neighbour(m6, ip("fd00:107::2"), [2, 0, 0, 0, 0xaa, 2]);
        let via = |a: &str| NextHopSpec { via: Some(ip(a)), dev: None, weight: 1 };
        b.route(ip("10.211.0.0"), 16, &[via("10.101.0.2")], false).unwrap();
        b.route(ip("fd00:211::"), 32, &[via("fd00:107::2")], false).unwrap();
    }
    let via = |a: &str| NextHopSpec { via: Some(ip(a)), dev: None, weight: 1 };
    let dev = |d: &str| NextHopSpec { via: None, dev: Some(d.into()), weight: 1 };
    b.route(ip("0.0.0.0"), 0, &[via("10.1.0.2")], false).unwrap();
    b.route(ip("::"), 0, &[via("2001:db8:1::2")], false).unwrap();
    b.route(ip("10.200.0.0"), 16, &[via("10.100.0.2")], false).unwrap();
    b.route(ip("10.206.0.0"), 16, &[dev("t6")], false).unwrap();
    b.route(ip("fd00:200::"), 32, &[via("fd00:100::2")], false).unwrap();
    b.route(ip("fd00:206::"), 32, &[dev("t6")], false).unwrap();
    b.neighbour(l, ip("10.1.0.2"), [2, 0, 0, 0, 1, 2]);
    b.neighbour(l, ip("2001:db8:1::2"), [2, 0, 0, 0, 1, 3]);
    b.neighbour(l, ip("10.1.0.5"), [2, 0, 0, 0, 1, 5]);
    b.neighbour(l, ip("2001:db8:1::5"), [2, 0, 0, 0, 1, 5]);
    b.neighbour(u, ip("10.2.0.2"), [2, 0, 0, 0, 2, 2]);
    b.neighbour(u, ip("2001:db8:2::2"), [2, 0, 0, 0, 2, 3]);
    b.neighbour(u, ip("10.2.0.9"), [2, 0, 0, 0, 2, 9]);
    b.neighbour(u, ip("10.2.0.10"), [2, 0, 0, 0, 2, 10]);
    b.neighbour(u, ip("2001:db8:2::9"), [2, 0, 0, 0, 2, 9]);
    b.neighbour(t4, ip("10.100.0.2"), [2, 0, 0, 0, 0xbb, 1]);
    b.neighbour(t4, ip("fd00:100::2"), [2, 0, 0, 0, 0xbb, 1]);
    b.build().unwrap()
}

/// The control prefix length.
pub const PREFIX: usize = 5;

/// Builds the outer frame for `data` (control prefix + payload) into `out`; `None` when the
/// input is shorter than the prefix.
pub fn outer_frame(kind: TunnelKind, data: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let (ctl, payload) = (data.get(..PREFIX)?, &data[PREFIX..]);
    let payload = &payload[..payload.len().min(FRAME_SIZE - HEADROOM - 62)];
    let flags = ctl[0];
    let v6 = flags & 1 != 0;
    let unknown_peer = flags & 2 != 0;
    let ecn = (flags >> 2) & 3;
    let ip_len_override = (flags & 0x10 != 0).then(|| u16::from_be_bytes([ctl[1], ctl[2]]));
    let udp_len_override = (flags & 0x20 != 0).then(|| u16::from_be_bytes([ctl[3], ctl[4]]));
    let stale_checksum = flags & 0x80 != 0;
    let (proto, l4_len) = match kind {
        TunnelKind::Ipip => (if flags & 0x40 != 0 { 41 } else { 4 }, 0),
        _ => (17u8, 8usize),
    };
    out.clear();
    out.extend_from_slice(&UNDERLAY_MAC);
    out.extend_from_slice(&PEER_MAC);
    let ip_payload = l4_len + payload.len();
    if v6 {
        out.extend_from_slice(&0x86ddu16.to_be_bytes());
        let first = (6u32 << 28) | ((ecn as u32) << 20) | 0x12345;
        out.extend_from_slice(&first.to_be_bytes());
        let len = ip_len_override.unwrap_or(ip_payload as u16);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[proto, 64]);
        out.extend_from_slice(if unknown_peer { &OTHER6 } else { &REMOTE6 });
        out.extend_from_slice(&LOCAL6);
    } else {
        out.extend_from_slice(&0x0800u16.to_be_bytes());
        let len = (20 + ip_payload) as u16;
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[1] = ecn;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        h[6] = 0x40;
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(if unknown_peer { &OTHER4 } else { &REMOTE4 });
        h[16..20].copy_from_slice(&LOCAL4);
        let c = checksum::checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        if let Some(l) = ip_len_override {
            h[2..4].copy_from_slice(&l.to_be_bytes());
            if !stale_checksum {
                h[10..12].fill(0);
                let c = checksum::checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
        }
        out.extend_from_slice(&h);
    }
    if l4_len != 0 {
        let dst_port: u16 = if kind == TunnelKind::Geneve { 6081 } else { 4789 };
        let len = udp_len_override.unwrap_or(ip_payload as u16);
        out.extend_from_slice(&0xc123u16.to_be_bytes());
        out.extend_from_slice(&dst_port.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out.extend_from_slice(payload);
    Some(())
}

/// One harness per fuzz target: its tables, the worker's stage list, one packet buffer.
pub struct Harness {
    kind: TunnelKind,
    tables: Tables,
    stages: Vec<Box<dyn Stage>>,
    learn: Arc<LearnQueue>,
    buf: PacketBuf,
    frame: Vec<u8>,
    now: u64,
    trace: bool,
}

impl Harness {
    pub fn new(kind: TunnelKind, tables: Tables) -> Harness {
        let learn = Arc::new(LearnQueue::new(16));
        Harness {
            kind,
            tables,
            stages: assemble::stages(Some(learn.clone())),
            learn,
            buf: PacketBuf::new(Box::leak(vec![0u8; FRAME_SIZE].into_boxed_slice()), 0),
            frame: Vec::with_capacity(FRAME_SIZE),
            now: 0,
            trace: std::env::var_os("DECAP_FUZZ_TRACE").is_some(),
        }
    }

    pub fn run(&mut self, data: &[u8]) {
        if outer_frame(self.kind, data, &mut self.frame).is_none() {
            return;
        }
        let t = &self.tables;
        self.now += 250_000_000;
        let cx = Context { tables: t, now_ns: self.now };
        let p = &mut self.buf;
        p.fill_from(&self.frame).expect("the outer frame fits");
        p.meta.in_port = 0;
        p.meta.timestamp_ns = self.now;
        let frame_len = self.frame.len();
        let burst = std::slice::from_mut(p);
        let (first, rest) = self.stages.split_at_mut(2);
        assert_eq!([first[0].name(), first[1].name()], ["parse", "decap"]);
        for s in first.iter_mut() {
            s.process(&cx, burst);
        }
        let p = &burst[0];
        let m = p.meta;
        // Decap only strips: the window stays inside what was received.
        assert!(p.head_offset() >= HEADROOM, "head {} before the headroom", p.head_offset());
        assert!(p.head_offset() + p.len() <= HEADROOM + frame_len, "window past the frame");
        // One decapsulation past the limit is how a loop is detected: dropped, as a loop or
        // for what that innermost layer had wrong (e.g. a malformed packet in it).
        if m.tunnel.depth > MAX_NESTING {
            assert_eq!(m.tunnel.depth, MAX_NESTING + 1);
            assert!(
                matches!(m.verdict, Verdict::Drop(_)),
                "depth {}: {:?}",
                m.tunnel.depth,
                m.verdict
            );
        }
        if m.verdict == Verdict::Continue {
            if matches!(m.l3, L3::Ipv4 | L3::Ipv6) {
                assert!(m.l3_offset as usize >= 14 && m.l3_offset <= m.l3_end);
                assert!(m.l3_end as usize <= p.len(), "l3_end {} > len {}", m.l3_end, p.len());
                assert!(m.l4_offset <= m.l3_end);
            }
            if m.tunnel.depth > 0 {
                assert!(t.tunnels.is_tunnel(m.in_port), "in_port {} is no tunnel", m.in_port);
                let tun = t.tunnels.by_iface(m.in_port).unwrap();
                assert_eq!(tun.kind, self.kind);
                if tun.kind == TunnelKind::Ipip {
                    assert_eq!(m.tunnel.vni, 0);
                } else {
                    assert_eq!(m.tunnel.vni, tun.vni);
                }
                if m.tunnel.options_len > 0 {
                    let o =
                        p.before_head(m.tunnel.options_at as usize, m.tunnel.options_len as usize);
                    assert!(o.is_some(), "options not before the head: {m:?}");
                }
            } else {
                assert_eq!(m.in_port, 0);
            }
        }
        let after_decap = (m.verdict, m.tunnel, m.in_port);
        for s in rest.iter_mut() {
            s.process(&cx, burst);
        }
        let p = &burst[0];
        if self.trace {
            eprintln!("decap: {after_decap:?} -> final {:?}", p.meta.verdict);
        }
        match p.meta.verdict {
            Verdict::Continue => panic!("no verdict after the stage list: {:?}", p.meta),
            Verdict::Forward(port) => {
                assert!(port < t.tunnels.first_iface(), "forwarded to tunnel iface {port}");
                assert!(p.len() >= 14);
                assert!(p.head_offset() + p.len() <= p.capacity());
                let mtu = t.port(port).unwrap().mtu as usize;
                assert!(p.len() - 14 <= mtu, "{} bytes out of a {mtu} MTU port", p.len());
            }
            Verdict::Punt(_) | Verdict::Drop(_) => {
                assert!(p.head_offset() + p.len() <= p.capacity());
            }
        }
        while self.learn.queue.pop().is_some() {}
    }
}
