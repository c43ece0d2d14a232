//! Encap/decap round trips: random inner IPv4/IPv6 UDP/TCP packets through random tunnel
//! settings (kind, outer family, VNI, Geneve options, IPv6 UDP checksum, point-to-point or
//! multipoint), encapsulated by `encap::encapsulate` as one endpoint sends them and received by
//! the parse and decap stages of the other endpoint, must come back byte for byte with the right
//! tunnel metadata; the outer headers must carry valid checksums.

mod common;

use std::sync::{Arc, OnceLock};

use common::*;
use ferroplane_pipeline::checksum;
use ferroplane_pipeline::flow::addr_from_ip;
use ferroplane_pipeline::meta::L3;
use ferroplane_pipeline::tables::{PortInfo, Tables, TablesBuilder};
use ferroplane_pipeline::tunnel::{Tunnel, TunnelKind, TunnelTable};
use ferroplane_pipeline::verdict::{DropReason, Verdict};
use ferroplane_tunnels::{encap, DecapStage, FdbLearn, LearnQueue};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Inner {
    v6: bool,
    tcp: bool,
    src: [u8; 16],
    dst: [u8; 16],
    ports: (u16, u16),
    ds: u8,
    ttl: u8,
    payload: Vec<u8>,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
}

impl Inner {
    /// The inner Ethernet frame.
    fn frame(&self) -> Vec<u8> {
        let l4 = if self.tcp {
            let mut h = vec![0u8; 20];
            h[0..2].copy_from_slice(&self.ports.0.to_be_bytes());
            h[2..4].copy_from_slice(&self.ports.1.to_be_bytes());
            h[4..8].copy_from_slice(&[1, 2, 3, 4]);
            h[12] = 0x50;
            h[13] = 0x18;
            h[14..16].copy_from_slice(&[0xff, 0xff]);
            h.extend_from_slice(&self.payload);
            h
        } else {
            udp(self.ports.0, self.ports.1, &self.payload)
        };
        let proto = if self.tcp { 6 } else { 17 };
        if self.v6 {
            eth(
                self.dst_mac,
                self.src_mac,
                0x86dd,
                &ipv6(self.src, self.dst, proto, self.ds, self.ttl, &l4),
            )
        } else {
            let (s, d) = (&self.src[..4], &self.dst[..4]);
            let ip = ipv4(
                [s[0], s[1], s[2], s[3]],
                [d[0], d[1], d[2], d[3]],
                proto,
                self.ds,
                self.ttl,
                &l4,
            );
            eth(self.dst_mac, self.src_mac, 0x0800, &ip)
        }
    }
}

#[derive(Debug, Clone)]
struct Settings {
    kind: TunnelKind,
    outer_v6: bool,
    vni: u32,
    /// Geneve options (class, type without the critical bit, data).
    options: Vec<(u16, u8, Vec<u8>)>,
    /// Make the last option critical (the receiver understands none: it must drop).
    critical: bool,
    udp_checksum6: bool,
    multipoint: bool,
    ttl: u8,
    dst_port: u16,
    flow_hash: u32,
}

impl Settings {
    fn encoded_options(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let n = self.options.len();
        for (k, (class, kind, data)) in self.options.iter().enumerate() {
            let kind = if self.critical && k + 1 == n { kind | 0x80 } else { *kind };
            out.extend_from_slice(&class.to_be_bytes());
            out.extend_from_slice(&[kind, (data.len() / 4) as u8]);
            out.extend_from_slice(data);
        }
        out
    }
}

fn inner_strategy() -> impl Strategy<Value = Inner> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<(u16, u16)>(),
        any::<u8>(),
        1u8..=255,
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
    )
        .prop_map(|(v6, tcp, mut src, mut dst, ports, ds, ttl, payload, src_mac, dst_mac)| {
            // Overlay addresses: 10.100/16 -> 172.16/12, fd00::/8; never our underlay ones, so
            // the inner packet is not a tunnel packet for us again.
            if v6 {
                src[0] = 0xfd;
                dst[0] = 0xfd;
            } else {
                src[..2].copy_from_slice(&[10, 100]);
                let hi = 16 | (dst[1] & 15);
                dst[..2].copy_from_slice(&[172, hi]);
            }
            Inner { v6, tcp, src, dst, ports, ds, ttl, payload, src_mac, dst_mac }
        })
}

fn settings_strategy() -> impl Strategy<Value = Settings> {
    let option = (any::<u16>(), 0u8..0x80, 0usize..=4).prop_flat_map(|(c, t, words)| {
        proptest::collection::vec(any::<u8>(), words * 4).prop_map(move |d| (c, t, d))
    });
    (
        prop_oneof![Just(TunnelKind::Vxlan), Just(TunnelKind::Geneve), Just(TunnelKind::Ipip)],
        any::<bool>(),
        0u32..(1 << 24),
        proptest::collection::vec(option, 0..=5),
        proptest::bool::weighted(0.1),
        any::<bool>(),
        any::<bool>(),
        1u8..=255,
        prop_oneof![Just(0u16), any::<u16>()],
        any::<u32>(),
    )
        .prop_map(
            |(
                kind,
                outer_v6,
                vni,
                options,
                critical,
                udp_checksum6,
                multipoint,
                ttl,
                port,
                flow_hash,
            )| {
                let geneve = kind == TunnelKind::Geneve;
                let options = if geneve { options } else { Vec::new() };
                let dst_port = match (kind, port) {
                    (TunnelKind::Geneve, 0) => 6081,
                    (_, 0) => 4789,
                    (_, p) => p.max(1),
                };
                Settings {
                    kind,
                    outer_v6,
                    vni: if kind == TunnelKind::Ipip { 0 } else { vni },
                    critical: critical && !options.is_empty(),
                    options,
                    udp_checksum6,
                    multipoint: multipoint && kind.l2(),
                    ttl,
                    dst_port,
                    flow_hash,
                }
            },
        )
}

/// The receiving endpoint's ports (10.2.0.1 / 2001:db8:2::1 on port 0), built once; each case
/// adds its tunnel to a clone.
fn base() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut b = TablesBuilder::new(5);
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
            addresses: vec![(ip("10.1.0.1"), 24)],
        });
        b.build().unwrap()
    })
}

const TUN_IFACE: u16 = 2;
const TUN_IFACE_MAC: [u8; 6] = [2, 0, 0, 0, 0x77, 0];

fn endpoints(outer_v6: bool) -> (&'static str, &'static str) {
    if outer_v6 {
        ("2001:db8:2::2", "2001:db8:2::1")
    } else {
        ("10.2.0.2", "10.2.0.1")
    }
}

/// (sender's tunnel, receiver's tables)
fn tunnel_pair(s: &Settings) -> (Tunnel, Tables) {
    let (a, b) = endpoints(s.outer_v6);
    let mk = |local: &str, remote: Option<&str>| Tunnel {
        name: "t".into(),
        kind: s.kind,
        iface: TUN_IFACE,
        local: addr_from_ip(ip(local)),
        remote: remote.map(|r| addr_from_ip(ip(r))),
        vni: s.vni,
        dst_port: s.dst_port,
        ttl: s.ttl,
        udp_checksum6: s.udp_checksum6,
        options: s.encoded_options(),
    };
    let sender = mk(a, Some(b));
    let receiver = mk(b, if s.multipoint { None } else { Some(a) });
    let mut t = base().clone();
    t.ports.push(PortInfo {
        name: "t".into(),
        mac: TUN_IFACE_MAC,
        mtu: 1400,
        addresses: vec![(ip("10.100.0.1"), 16)],
    });
    let mut tt = TunnelTable::new(2);
    tt.insert(receiver).unwrap();
    t.tunnels = Arc::new(tt);
    (sender, t)
}

fn check_outer(s: &Settings, inner: &Inner, d: &[u8]) -> Result<(), TestCaseError> {
    let (a, b) = endpoints(s.outer_v6);
    let (src, dst) = (addr_from_ip(ip(a)), addr_from_ip(ip(b)));
    let ds = inner.ds;
    let udp_kind = s.kind.l2();
    let l4 = if s.outer_v6 { 54 } else { 34 };
    if s.outer_v6 {
        prop_assert_eq!(&d[12..14], &[0x86, 0xdd][..]);
        prop_assert_eq!(d[14] >> 4, 6);
        prop_assert_eq!((d[14] << 4) | (d[15] >> 4), ds, "traffic class copied from the inner");
        prop_assert_eq!(u16::from_be_bytes([d[18], d[19]]) as usize, d.len() - 54);
        prop_assert_eq!(d[21], s.ttl);
        prop_assert_eq!(&d[22..38], &src[..]);
        prop_assert_eq!(&d[38..54], &dst[..]);
    } else {
        prop_assert_eq!(&d[12..14], &[0x08, 0x00][..]);
        prop_assert!(checksum::verifies_ipv4_header(&d[14..34]), "outer IPv4 checksum");
        prop_assert_eq!(d[15], ds, "DS field copied from the inner");
        prop_assert_eq!(u16::from_be_bytes([d[16], d[17]]) as usize, d.len() - 14);
        prop_assert_eq!(d[20] & 0x40, 0x40, "DF");
        prop_assert_eq!(d[22], s.ttl);
        prop_assert_eq!(&d[26..30], &src[12..]);
        prop_assert_eq!(&d[30..34], &dst[12..]);
    }
    if !udp_kind {
        return Ok(());
    }
    let u = &d[l4..];
    prop_assert_eq!(u16::from_be_bytes([u[0], u[1]]), encap::source_port(s.flow_hash));
    prop_assert!(u16::from_be_bytes([u[0], u[1]]) >= 0xc000);
    prop_assert_eq!(u16::from_be_bytes([u[2], u[3]]), s.dst_port);
    prop_assert_eq!(u16::from_be_bytes([u[4], u[5]]) as usize, u.len());
    let csum = u16::from_be_bytes([u[6], u[7]]);
    if s.outer_v6 && s.udp_checksum6 {
        prop_assert_ne!(csum, 0);
        let ph = checksum::pseudo_header_v6(&src, &dst, 17, u.len() as u32);
        prop_assert_eq!(
            checksum::finish(checksum::combine(ph, checksum::sum(u))),
            0,
            "IPv6 outer UDP checksum"
        );
    } else {
        prop_assert_eq!(csum, 0, "zero UDP checksum (IPv4 outer, or disabled on IPv6)");
    }
    Ok(())
}

fn round_trip(s: Settings, inner: Inner) -> Result<(), TestCaseError> {
    let (sender, t) = tunnel_pair(&s);
    let frame = inner.frame();
    let mut p = buf();
    p.fill_from(&frame).unwrap();
    let (_, b) = endpoints(s.outer_v6);
    encap::encapsulate(&mut p, &sender, &addr_from_ip(ip(b)), s.flow_hash).unwrap();
    {
        let d = p.data_mut();
        d[0..6].copy_from_slice(&UNDERLAY_MAC);
        d[6..12].copy_from_slice(&PEER_MAC);
    }
    let wire = p.data().to_vec();
    check_outer(&s, &inner, &wire)?;

    let q = Arc::new(LearnQueue::new(4));
    let mut stage = DecapStage::new(Some(q.clone()));
    let mut r = buf();
    decap_into(&t, &wire, &mut r, &mut stage);
    if s.critical {
        prop_assert_eq!(r.meta.verdict, Verdict::Drop(DropReason::GeneveCriticalOption));
        return Ok(());
    }
    prop_assert_eq!(r.meta.verdict, Verdict::Continue);
    let m = r.meta;
    prop_assert_eq!((m.in_port, m.tunnel.depth, m.tunnel.vni), (TUN_IFACE, 1, s.vni));
    prop_assert_eq!(m.l3, if inner.v6 { L3::Ipv6 } else { L3::Ipv4 });
    if s.kind.l2() {
        prop_assert_eq!(r.data(), &frame[..], "the inner Ethernet frame, byte for byte");
    } else {
        let d = r.data();
        prop_assert_eq!(&d[..6], &TUN_IFACE_MAC[..]);
        prop_assert_eq!(&d[6..12], &TUN_IFACE_MAC[..]);
        prop_assert_eq!(&d[12..], &frame[12..], "ethertype and the inner IP packet");
    }
    let opts = s.encoded_options();
    prop_assert_eq!(m.tunnel.options_len as usize, opts.len());
    if !opts.is_empty() {
        prop_assert_eq!(r.before_head(m.tunnel.options_at as usize, opts.len()), Some(&opts[..]));
    }
    let learned = q.queue.pop();
    let unicast = inner.src_mac[0] & 1 == 0 && inner.src_mac != [0; 6];
    if s.multipoint && unicast {
        let (a, _) = endpoints(s.outer_v6);
        let want = FdbLearn { iface: TUN_IFACE, mac: inner.src_mac, remote: addr_from_ip(ip(a)) };
        prop_assert_eq!(learned, Some(want));
    } else {
        prop_assert_eq!(learned, None);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encap_then_decap_gives_back_the_inner_packet(s in settings_strategy(), inner in inner_strategy()) {
        round_trip(s, inner)?;
    }
}
