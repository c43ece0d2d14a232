//! Byte vectors for the decapsulators: the header layouts of the RFCs written out byte by byte,
//! frames built by scapy (the independent implementation), RFC 6040 ECN end to end, and bad
//! input, each run through the parse and decap stages as a received frame.

mod common;

use common::*;
use ferroplane_pipeline::buf::HEADROOM;
use ferroplane_pipeline::checksum;
use ferroplane_pipeline::flow::addr_from_ip;
use ferroplane_pipeline::meta::L3;
use ferroplane_pipeline::tables::{PortInfo, TablesBuilder};
use ferroplane_pipeline::tunnel::TunnelKind;
use ferroplane_pipeline::verdict::{DropReason, Verdict};
use ferroplane_tunnels::decap::MAX_NESTING;
use ferroplane_tunnels::{encap, geneve, vxlan, DecapStage, FdbLearn, LearnQueue};

/// The inner frame of the hand-written vectors: Ethernet to the tunnel interface 2 (vx4), IPv4
/// 10.100.0.2 -> 10.1.0.5, UDP 1111 -> 2222, "hi" (checksums from scapy).
const INNER_TO_VX4: &str = "020000000200 02000000bb01 0800
    4500001e 00010000 40116663 0a640002 0a010005
    045708ae 000a7600 6869";

/// RFC 7348 section 5: outer Ethernet, outer IPv4 (protocol 17, DF), outer UDP to port 4789
/// with a zero checksum, then the VXLAN header
///   |R|R|R|R|I|R|R|R|  Reserved (24)  |  VNI (24)  |  Reserved (8) |
/// with only the I flag set, VNI 100, then the inner Ethernet frame.
fn rfc7348_frame() -> Vec<u8> {
    hex(&format!(
        "020000000001 020000000099 0800
         45000050 00004000 40112697 0a020002 0a020001
         c00112b5 003c0000
         08000000 00006400
         {INNER_TO_VX4}"
    ))
}

#[test]
fn vxlan_rfc7348_section5_header_layout() {
    let (t, i) = vector_tables();
    let frame = rfc7348_frame();
    let p = decap(&t, &frame);
    assert_eq!(p.meta.verdict, Verdict::Continue);
    assert_eq!(p.meta.in_port, i.vx4);
    assert_eq!((p.meta.tunnel.depth, p.meta.tunnel.vni, p.meta.tunnel.options_len), (1, 100, 0));
    assert_eq!(p.data(), &hex(INNER_TO_VX4)[..]);
    assert_eq!(p.meta.l3, L3::Ipv4);
    assert_eq!(p.meta.flow.dst, addr_from_ip(ip("10.1.0.5")));
    assert_eq!(p.head_offset(), HEADROOM + 50, "stripped in place, no copy");

    // "R" bits and reserved fields: zero on transmission, ignored on receipt.
    let mut f = frame.clone();
    f[42] = 0xff;
    f[43..46].fill(0xff);
    f[49] = 0xff;
    let p = decap(&t, &f);
    assert_eq!(
        (p.meta.verdict, p.meta.in_port, p.meta.tunnel.vni),
        (Verdict::Continue, i.vx4, 100)
    );
    // The I flag must be 1 for a valid VNI.
    f[42] = 0xf7;
    assert_eq!(verdict(&t, &f), Verdict::Drop(DropReason::TunnelBadHeader));

    // Our encapsulation writes the same outer IPv4, UDP (but the source port) and VXLAN bytes.
    let tun =
        tunnel("e", ferroplane_pipeline::tunnel::TunnelKind::Vxlan, "10.2.0.2", None, 100, vec![]);
    let mut b = buf();
    b.fill_from(&hex(INNER_TO_VX4)).unwrap();
    encap::encapsulate(&mut b, &tun, &addr_from_ip(ip("10.2.0.1")), 0x1234).unwrap();
    let out = b.data();
    assert_eq!(out.len(), frame.len());
    assert_eq!(out[12..34], frame[12..34], "outer IPv4");
    assert_eq!(out[36..], frame[36..], "UDP port, length, zero checksum, VXLAN, inner");
}

#[test]
fn vxlan_ipv6_outer_and_ethernet_padding() {
    let (t, i) = vector_tables();
    let inner = inner_udp4(tun_mac(i.vx6), 0, b"six");
    let mut f = outer(&REMOTE6, 17, 0, &udp(49152, 4789, &vxlan(100, &inner)));
    f.extend_from_slice(&[0xee; 10]); // padding after the IP packet: not part of the inner frame
    let p = decap(&t, &f);
    assert_eq!((p.meta.verdict, p.meta.in_port), (Verdict::Continue, i.vx6));
    assert_eq!(p.data(), &inner[..]);
}

/// RFC 8926 3.4 header (Ver 0, Opt Len 5 = 20 bytes, O 0, C 0, Protocol Type 0x6558 Transparent
/// Ethernet Bridging, VNI 300) with two 3.5 options: class 0x0102 type 0x01 length 1 and class
/// 0xffff type 0x11 length 2 (neither critical).
const GENEVE_OPTIONS: &str = "0102 01 01 0a0b0c0d   ffff 11 02 01020304 05060708";

fn rfc8926_frame() -> Vec<u8> {
    let inner = INNER_TO_VX4.replacen("020000000200", "020000000500", 1); // to gn4
    hex(&format!(
        "020000000001 020000000099 0800
         45000064 00004000 40112683 0a020002 0a020001
         c00117c1 00500000
         05 00 6558 00012c 00
         {GENEVE_OPTIONS}
         {inner}"
    ))
}

#[test]
fn geneve_rfc8926_section3_header_and_options() {
    let (t, i) = vector_tables();
    let frame = rfc8926_frame();
    let p = decap(&t, &frame);
    assert_eq!(p.meta.verdict, Verdict::Continue);
    assert_eq!((p.meta.in_port, p.meta.tunnel.vni, p.meta.tunnel.depth), (i.gn4, 300, 1));
    assert_eq!(p.data(), &frame[14 + 20 + 8 + 8 + 20..]);
    assert_eq!(p.data()[..6], tun_mac(i.gn4));
    let m = p.meta.tunnel;
    assert_eq!(m.options_len, 20);
    assert_eq!(p.before_head(m.options_at as usize, 20), Some(&hex(GENEVE_OPTIONS)[..]));

    let at = 14 + 20 + 8;
    // O bit: a control message, never forwarded (3.4).
    let mut f = frame.clone();
    f[at + 1] |= 0x80;
    assert_eq!(verdict(&t, &f), Verdict::Drop(DropReason::TunnelBadHeader));
    // C bit alone: the options themselves are checked.
    let mut f = frame.clone();
    f[at + 1] |= 0x40;
    assert_eq!(verdict(&t, &f), Verdict::Continue);
    // A critical option we do not understand (type high bit, 3.5.1): dropped.
    let mut f = frame.clone();
    f[at + 8 + 2] |= 0x80;
    f[at + 1] |= 0x40;
    assert_eq!(verdict(&t, &f), Verdict::Drop(DropReason::GeneveCriticalOption));
    // Version 1.
    let mut f = frame.clone();
    f[at] |= 0x40;
    assert_eq!(verdict(&t, &f), Verdict::Drop(DropReason::TunnelBadHeader));
    // The first option claiming 5 data words (24 bytes) in a 20-byte options area.
    let mut f = frame.clone();
    f[at + 8 + 3] = 5;
    assert_eq!(verdict(&t, &f), Verdict::Drop(DropReason::GeneveBadOption));
    // An unknown protocol type.
    let mut f = frame.clone();
    f[at + 2..at + 4].copy_from_slice(&[0x12, 0x34]);
    assert_eq!(verdict(&t, &f), Verdict::Drop(DropReason::TunnelBadHeader));
}

#[test]
fn geneve_carrying_ip_directly_gets_the_interface_mac() {
    let (t, i) = vector_tables();
    let ip4 = ipv4([10, 100, 0, 2], [10, 1, 0, 5], 17, 0, 64, &udp(1, 2, b"ip"));
    let f = outer(&REMOTE4, 17, 0, &udp(49152, 6081, &geneve(300, 0x0800, &[], &ip4)));
    let p = decap(&t, &f);
    assert_eq!((p.meta.verdict, p.meta.in_port), (Verdict::Continue, i.gn4));
    assert_eq!(p.data()[..12], [tun_mac(i.gn4), tun_mac(i.gn4)].concat()[..]);
    assert_eq!(p.data()[12..14], [0x08, 0x00]);
    assert_eq!(p.data()[14..], ip4[..]);
}

const SCAPY_IMPORTS: &str = "from scapy.all import raw, Ether, IP, IPv6, UDP, TCP\n\
     from scapy.contrib.geneve import GENEVE, GeneveOptions";

#[test]
fn geneve_frames_built_by_scapy() {
    let (t, i) = vector_tables();
    let py = format!(
        r#"{SCAPY_IMPORTS}
o1 = GeneveOptions(classid=0x0102, type=0x01, data=b'\x0a\x0b\x0c\x0d')
o2 = GeneveOptions(classid=0x0103, type=0x22, data=b'12345678')
crit = GeneveOptions(classid=0x0104, type=0x81, data=b'abcd')
bad = GeneveOptions(classid=0x0102, type=0x01, length=3, data=b'\x0a\x0b\x0c\x0d')
def inner(mac):
    return Ether(dst=mac, src='02:00:00:00:bb:01')/IP(src='10.100.0.2', dst='10.1.0.5')/UDP(sport=1, dport=2)/b'from scapy'
e = Ether(dst='02:00:00:00:00:01', src='02:00:00:00:00:99')
u4 = e/IP(src='10.2.0.2', dst='10.2.0.1')/UDP(sport=49153, dport=6081)
u6 = e/IPv6(src='2001:db8:2::2', dst='2001:db8:2::1')/UDP(sport=49153, dport=6081)
m4, m6 = '{m4}', '{m6}'
for f in [u4/GENEVE(vni=300, proto=0x6558, options=[o1, o2])/inner(m4), inner(m4), raw(o1) + raw(o2),
          u6/GENEVE(vni=300, proto=0x6558, options=[o2])/inner(m6), inner(m6), raw(o2),
          u4/GENEVE(vni=300, proto=0x6558, options=[o1, crit])/inner(m4),
          u4/GENEVE(vni=300, proto=0x6558, options=[bad])/inner(m4)]:
    print(raw(f).hex())
"#,
        m4 = mac_str(tun_mac(i.gn4)),
        m6 = mac_str(tun_mac(i.gn6)),
    );
    let f = scapy_frames(&py);
    assert_eq!(f.len(), 8);
    for (frame, inner, opts, iface) in [(&f[0], &f[1], &f[2], i.gn4), (&f[3], &f[4], &f[5], i.gn6)]
    {
        let p = decap(&t, frame);
        assert_eq!(p.meta.verdict, Verdict::Continue, "scapy frame {frame:02x?}");
        assert_eq!((p.meta.in_port, p.meta.tunnel.vni), (iface, 300));
        assert_eq!(p.data(), &inner[..]);
        let m = p.meta.tunnel;
        assert_eq!(p.before_head(m.options_at as usize, m.options_len as usize), Some(&opts[..]));
        assert_eq!(p.meta.flow.dst, addr_from_ip(ip("10.1.0.5")));
    }
    assert_eq!(verdict(&t, &f[6]), Verdict::Drop(DropReason::GeneveCriticalOption));
    assert_eq!(verdict(&t, &f[7]), Verdict::Drop(DropReason::GeneveBadOption));
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[test]
fn ip_in_ip_family_built_by_scapy() {
    let (t, i) = vector_tables();
    // RFC 2003 (4 in 4), RFC 4213 (6 in 4), RFC 2473 (4 in 6, 6 in 6).
    let py = format!(
        r#"{SCAPY_IMPORTS}
e = Ether(dst='02:00:00:00:00:01', src='02:00:00:00:00:99')
o4 = IP(src='10.2.0.2', dst='10.2.0.1')
o6 = IPv6(src='2001:db8:2::2', dst='2001:db8:2::1')
i4 = IP(src='10.100.0.2', dst='10.1.0.5', ttl=33)/UDP(sport=7, dport=9)/b'inner v4'
i6 = IPv6(src='fd00::2', dst='2001:db8:1::5', hlim=33)/TCP(sport=7, dport=9)/b'inner v6'
for o, i in [(o4, i4), (o4, i6), (o6, i4), (o6, i6)]:
    print(raw(e/o/i).hex())
    print(raw(i).hex())
"#
    );
    let f = scapy_frames(&py);
    assert_eq!(f.len(), 8);
    let cases = [
        ("4 in 4", i.ip4, 4, L3::Ipv4),
        ("6 in 4", i.ip4, 41, L3::Ipv6),
        ("4 in 6", i.ip6, 4, L3::Ipv4),
        ("6 in 6", i.ip6, 41, L3::Ipv6),
    ];
    for (n, (name, iface, proto, l3)) in cases.into_iter().enumerate() {
        let (frame, inner) = (&f[2 * n], &f[2 * n + 1]);
        let outer_proto = if n < 2 { frame[14 + 9] } else { frame[14 + 6] };
        assert_eq!(outer_proto, proto, "{name}: scapy's outer protocol");
        let p = decap(&t, frame);
        assert_eq!(p.meta.verdict, Verdict::Continue, "{name}");
        assert_eq!(
            (p.meta.in_port, p.meta.tunnel.vni, p.meta.tunnel.depth),
            (iface, 0, 1),
            "{name}"
        );
        let d = p.data();
        assert_eq!(d[..6], tun_mac(iface), "{name}");
        assert_eq!(d[6..12], tun_mac(iface), "{name}");
        let et: [u8; 2] = if l3 == L3::Ipv4 { [8, 0] } else { [0x86, 0xdd] };
        assert_eq!(d[12..14], et, "{name}");
        assert_eq!(d[14..], inner[..], "{name}: the inner packet, unchanged (TTL too)");
        assert_eq!(p.meta.l3, l3, "{name}");
        assert_eq!(
            p.meta.flow.dst,
            addr_from_ip(ip(if l3 == L3::Ipv4 { "10.1.0.5" } else { "2001:db8:1::5" }))
        );
    }
}

// RFC 6040 4.2, end to end through decap.

#[test]
fn ecn_outer_ce_over_ect0_marks_the_inner_packet() {
    let (t, i) = vector_tables();
    // VXLAN, IPv4 inner: the ECN field becomes CE and the header checksum stays valid.
    let f = outer(
        &REMOTE4,
        17,
        0x03,
        &udp(49152, 4789, &vxlan(100, &inner_udp4(tun_mac(i.vx4), 0x02, b"e"))),
    );
    let p = decap(&t, &f);
    assert_eq!(p.meta.verdict, Verdict::Continue);
    let ip = &p.data()[14..34];
    assert_eq!(ip[1], 0x03);
    assert!(checksum::verifies_ipv4_header(ip), "inner checksum after CE: {ip:02x?}");
    // IP-in-IP 4 in 4, with a DSCP kept: AF41 + ECT(0) -> AF41 + CE.
    let inner = ipv4([10, 100, 0, 2], [10, 1, 0, 5], 17, 0x88 | 0x02, 64, &udp(1, 2, b"x"));
    let p = decap(&t, &outer(&REMOTE4, 4, 0x03, &inner));
    assert_eq!((p.meta.verdict, p.meta.in_port), (Verdict::Continue, i.ip4));
    let ip = &p.data()[14..34];
    assert_eq!(ip[1], 0x8b);
    assert!(checksum::verifies_ipv4_header(ip));
    // 6 in 6: outer CE over ECT(1) -> CE in the traffic class.
    let p = decap(&t, &outer(&REMOTE6, 41, 0x03, &inner_ip6(0x01, b"y")));
    assert_eq!(p.meta.verdict, Verdict::Continue);
    assert_eq!(ecn6(p.data()), 0x03);
    // Outer ECT(1) over inner ECT(0) -> ECT(1); outer ECT(0) over not-ECT -> not-ECT.
    let p = decap(&t, &outer(&REMOTE6, 41, 0x01, &inner_ip6(0x02, b"y")));
    assert_eq!(ecn6(p.data()), 0x01);
    let p = decap(&t, &outer(&REMOTE6, 41, 0x02, &inner_ip6(0x00, b"y")));
    assert_eq!((p.meta.verdict, ecn6(p.data())), (Verdict::Continue, 0));
}

fn ecn6(frame: &[u8]) -> u8 {
    (frame[15] >> 4) & 3
}

#[test]
fn ecn_outer_ce_over_not_ect_is_dropped() {
    let (t, i) = vector_tables();
    let f = outer(
        &REMOTE4,
        17,
        0x03,
        &udp(49152, 4789, &vxlan(100, &inner_udp4(tun_mac(i.vx4), 0, b"e"))),
    );
    assert_eq!(verdict(&t, &f), Verdict::Drop(DropReason::TunnelEcnDrop));
    let inner = ipv4([10, 100, 0, 2], [10, 1, 0, 5], 17, 0, 64, &udp(1, 2, b"x"));
    assert_eq!(
        verdict(&t, &outer(&REMOTE6, 4, 0x03, &inner)),
        Verdict::Drop(DropReason::TunnelEcnDrop)
    );
    assert_eq!(
        verdict(&t, &outer(&REMOTE4, 41, 0x03, &inner_ip6(0, b"z"))),
        Verdict::Drop(DropReason::TunnelEcnDrop)
    );
}

#[test]
fn multipoint_vxlan_learns_the_inner_source() {
    let (t, i) = vector_tables();
    let q = std::sync::Arc::new(LearnQueue::new(4));
    let mut stage = DecapStage::new(Some(q.clone()));
    let inner = inner_udp4(tun_mac(i.vxm), 0, b"mp");
    let f = outer(&[10, 2, 0, 7], 17, 0, &udp(49152, 4789, &vxlan(200, &inner)));
    let mut p = buf();
    decap_into(&t, &f, &mut p, &mut stage);
    assert_eq!(
        (p.meta.verdict, p.meta.in_port, p.meta.tunnel.vni),
        (Verdict::Continue, i.vxm, 200)
    );
    let want =
        FdbLearn { iface: i.vxm, mac: [2, 0, 0, 0, 0xbb, 1], remote: addr_from_ip(ip("10.2.0.7")) };
    assert_eq!(q.queue.pop(), Some(want));
    decap_into(&t, &f, &mut p, &mut stage);
    assert_eq!(q.queue.pop(), None, "the same MAC again within a second is not reported twice");
}

/// A multipoint Geneve tunnel carrying IPv4 directly (protocol 0x0800): the synthetic inner
/// Ethernet header holds our own MAC, which must not be learned.
#[test]
fn multipoint_geneve_with_an_ip_payload_learns_nothing() {
    let mut b = TablesBuilder::new(9);
    b.port(PortInfo {
        name: "u".into(),
        mac: UNDERLAY_MAC,
        mtu: 1500,
        addresses: vec![(ip("10.2.0.1"), 24)],
    });
    let g = b.tunnel(
        PortInfo {
            name: "gm".into(),
            mac: tun_mac(1),
            mtu: 1400,
            addresses: vec![(ip("10.107.0.1"), 24)],
        },
        tunnel("gm", TunnelKind::Geneve, "10.2.0.1", None, 7, vec![]),
    );
    let t = b.build().unwrap();
    let q = std::sync::Arc::new(LearnQueue::new(4));
    let mut stage = DecapStage::new(Some(q.clone()));
    let inner = ipv4([10, 107, 0, 2], [10, 107, 0, 1], 17, 0, 64, &udp(1, 2, b"ip"));
    let f = outer(&[10, 2, 0, 7], 17, 0, &udp(49152, 6081, &geneve(7, 0x0800, &[], &inner)));
    let mut p = buf();
    decap_into(&t, &f, &mut p, &mut stage);
    assert_eq!(p.meta.in_port, g);
    assert_ne!(p.meta.verdict, Verdict::Drop(DropReason::TunnelInnerMalformed));
    assert_eq!(q.queue.pop(), None, "learned the synthetic header's MAC");
}

// Bad input: every case is a drop with its own reason, never a panic.

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    /// Offset of the tunnel header (VXLAN/Geneve) or of the inner IP packet (IP-in-IP).
    tun_at: usize,
    /// Bytes from `tun_at` below which the tunnel header itself is incomplete.
    hdr_min: usize,
    udp: bool,
}

fn cases(i: &Ifaces) -> Vec<Case> {
    let opts = hex(GENEVE_OPTIONS);
    vec![
        Case {
            name: "vxlan v4",
            frame: outer(
                &REMOTE4,
                17,
                0,
                &udp(49152, 4789, &vxlan(100, &inner_udp4(tun_mac(i.vx4), 0, b"abcd"))),
            ),
            tun_at: 42,
            hdr_min: 8 + 14,
            udp: true,
        },
        Case {
            name: "vxlan v6",
            frame: outer(
                &REMOTE6,
                17,
                0,
                &udp(49152, 4789, &vxlan(100, &inner_udp4(tun_mac(i.vx6), 0, b"abcd"))),
            ),
            tun_at: 62,
            hdr_min: 8 + 14,
            udp: true,
        },
        Case {
            name: "geneve v4 + options",
            frame: outer(
                &REMOTE4,
                17,
                0,
                &udp(
                    49152,
                    6081,
                    &geneve(300, 0x6558, &opts, &inner_udp4(tun_mac(i.gn4), 0, b"abcd")),
                ),
            ),
            tun_at: 42,
            hdr_min: 8 + 20 + 1,
            udp: true,
        },
        Case {
            name: "geneve v6",
            frame: outer(
                &REMOTE6,
                17,
                0,
                &udp(
                    49152,
                    6081,
                    &geneve(300, 0x6558, &[], &inner_udp4(tun_mac(i.gn6), 0, b"abcd")),
                ),
            ),
            tun_at: 62,
            hdr_min: 8 + 1,
            udp: true,
        },
        Case {
            name: "ipip 4 in 4",
            frame: outer(
                &REMOTE4,
                4,
                0,
                &ipv4([10, 100, 0, 2], [10, 1, 0, 5], 17, 0, 64, &udp(1, 2, b"abcd")),
            ),
            tun_at: 34,
            hdr_min: 0,
            udp: false,
        },
        Case {
            name: "ipip 6 in 6",
            frame: outer(&REMOTE6, 41, 0, &inner_ip6(0, b"abcd")),
            tun_at: 54,
            hdr_min: 1,
            udp: false,
        },
    ]
}

/// `frame` cut to `len` bytes with the outer IP (and UDP) lengths rewritten to match, so the
/// cut reaches the stage that owns the truncated header.
fn cut_consistently(frame: &[u8], len: usize, udp: bool) -> Vec<u8> {
    let mut f = frame[..len].to_vec();
    let v6 = f.len() >= 14 && f[12..14] == [0x86, 0xdd];
    let (l3, l4) = if v6 { (14, 54) } else { (14, 34) };
    if f.len() >= l4 {
        if v6 {
            f[l3 + 4..l3 + 6].copy_from_slice(&((len - l4) as u16).to_be_bytes());
        } else {
            f[l3 + 2..l3 + 4].copy_from_slice(&((len - l3) as u16).to_be_bytes());
            fix_ipv4_checksum(&mut f[l3..l4]);
        }
    }
    if udp && f.len() >= l4 + 8 {
        f[l4 + 4..l4 + 6].copy_from_slice(&((len - l4) as u16).to_be_bytes());
    }
    f
}

#[test]
fn truncated_frames_at_every_length() {
    let (t, i) = vector_tables();
    for c in cases(&i) {
        let full = c.frame.len();
        assert_eq!(verdict(&t, &c.frame), Verdict::Continue, "{}: the whole frame", c.name);
        for len in 0..full {
            // Cut as received: the outer lengths no longer match, parse refuses it.
            let v = verdict(&t, &c.frame[..len]);
            assert!(matches!(v, Verdict::Drop(_)), "{} cut at {len}: {v:?}", c.name);
            // Cut with the outer lengths rewritten.
            let f = cut_consistently(&c.frame, len, c.udp);
            let v = verdict(&t, &f);
            let want = if len < c.tun_at {
                None // an outer header is incomplete: parse's reasons
            } else if len < c.tun_at + c.hdr_min {
                Some(DropReason::TunnelTruncated)
            } else {
                Some(DropReason::TunnelInnerMalformed)
            };
            match (want, v) {
                (None, Verdict::Drop(r)) => assert!(
                    !r.name().starts_with("tunnel") && !r.name().starts_with("geneve"),
                    "{} cut at {len}: outer header incomplete but {r}",
                    c.name
                ),
                (Some(w), Verdict::Drop(r)) if w == r => {}
                // An IPv6 outer with no payload at all is a jumbogram to parse.
                (Some(_), Verdict::Drop(DropReason::Ipv6BadLength)) if len == c.tun_at => {}
                _ => panic!("{} cut at {len} (of {full}): {v:?}, expected {want:?}", c.name),
            }
        }
    }
}

#[test]
fn lying_udp_length() {
    let (t, i) = vector_tables();
    for c in cases(&i).into_iter().filter(|c| c.udp) {
        let l4 = c.tun_at - 8;
        let real = c.frame.len() - l4;
        for lie in [0, 1, 7, 8, real - 1, real + 1, real + 100, 0xffff] {
            let mut f = c.frame.clone();
            f[l4 + 4..l4 + 6].copy_from_slice(&(lie as u16).to_be_bytes());
            assert_eq!(
                verdict(&t, &f),
                Verdict::Drop(DropReason::TunnelTruncated),
                "{}: UDP length {lie} of {real}",
                c.name
            );
        }
    }
}

#[test]
fn unknown_vni_or_endpoint() {
    let (t, i) = vector_tables();
    let inner = inner_udp4(tun_mac(i.vx4), 0, b"u");
    let tun = |src: &[u8], port, hdr: Vec<u8>| outer(src, 17, 0, &udp(49152, port, &hdr));
    let unknown = Verdict::Drop(DropReason::TunnelUnknown);
    assert_eq!(verdict(&t, &tun(&REMOTE4, 4789, vxlan(101, &inner))), unknown);
    assert_eq!(
        verdict(&t, &tun(&REMOTE6, 4789, vxlan(200, &inner))),
        unknown,
        "multipoint is v4 only"
    );
    assert_eq!(verdict(&t, &tun(&REMOTE4, 6081, geneve(301, 0x6558, &[], &inner))), unknown);
    // A point-to-point tunnel only takes its remote.
    let other6 = addr_from_ip(ip("2001:db8:2::9"));
    assert_eq!(verdict(&t, &tun(&other6, 4789, vxlan(100, &inner))), unknown);
    assert_eq!(verdict(&t, &tun(&[10, 2, 0, 9], 6081, geneve(300, 0x6558, &[], &inner))), unknown);
    let i4 = ipv4([10, 100, 0, 2], [10, 1, 0, 5], 17, 0, 64, &udp(1, 2, b"x"));
    assert_eq!(verdict(&t, &outer(&[10, 2, 0, 9], 4, 0, &i4)), unknown);
    // The multipoint VXLAN takes any source on its VNI.
    assert_eq!(verdict(&t, &tun(&[10, 2, 0, 9], 4789, vxlan(200, &inner))), Verdict::Continue);
    // Not a tunnel port: no tunnel drop, the input stage decides.
    assert_eq!(verdict(&t, &tun(&REMOTE4, 4790, vxlan(100, &inner))), Verdict::Continue);
    assert_eq!(decap(&t, &tun(&REMOTE4, 4790, vxlan(100, &inner))).meta.tunnel.depth, 0);
}

#[test]
fn vxlan_i_flag_clear() {
    let (t, i) = vector_tables();
    let mut h = vxlan(100, &inner_udp4(tun_mac(i.vx4), 0, b"i"));
    h[0] = 0;
    let f = outer(&REMOTE4, 17, 0, &udp(49152, 4789, &h));
    assert_eq!(verdict(&t, &f), Verdict::Drop(DropReason::TunnelBadHeader));
}

#[test]
fn geneve_option_lengths_past_the_packet() {
    let (t, i) = vector_tables();
    let inner = inner_udp4(tun_mac(i.gn4), 0, b"o");
    let opts = hex(GENEVE_OPTIONS);
    let g = |h: Vec<u8>| outer(&REMOTE4, 17, 0, &udp(49152, 6081, &h));
    // The header's Opt Len runs past the datagram: 63 words of options in a short packet.
    let mut h = geneve(300, 0x6558, &[], &inner[..20]);
    h[0] = 63;
    assert_eq!(verdict(&t, &g(h)), Verdict::Drop(DropReason::TunnelTruncated));
    // An option's own length runs past the options area (last option, by one word and by 31).
    for (at, len) in [(8, 3), (8, 31), (0, 5)] {
        let mut o = opts.clone();
        o[at + 3] = len;
        assert_eq!(
            verdict(&t, &g(geneve(300, 0x6558, &o, &inner))),
            Verdict::Drop(DropReason::GeneveBadOption),
            "option at {at} claiming {len} words"
        );
    }
}

#[test]
fn malformed_inner_packets() {
    let (t, i) = vector_tables();
    let bad = Verdict::Drop(DropReason::TunnelInnerMalformed);
    let vx = |inner: &[u8]| outer(&REMOTE4, 17, 0, &udp(49152, 4789, &vxlan(100, inner)));
    let good = inner_udp4(tun_mac(i.vx4), 0, b"inner");
    let mut f = good.clone();
    f[14 + 10] ^= 0xff; // IPv4 header checksum
    assert_eq!(verdict(&t, &vx(&f)), bad);
    let mut f = good.clone();
    f[14] = 0x55; // version 5
    assert_eq!(verdict(&t, &vx(&f)), bad);
    let mut f = good.clone();
    f[14 + 3] += 40; // total length past the frame
    fix_ipv4_checksum(&mut f[14..34]);
    assert_eq!(verdict(&t, &vx(&f)), bad);
    let mut f = good.clone();
    f[12..14].copy_from_slice(&[0x88, 0xb5]); // unknown ethertype
    assert_eq!(verdict(&t, &vx(&f)), bad);
    // IP-in-IP: protocol 41 carrying IPv4, protocol 4 carrying a truncated header.
    let i4 = ipv4([10, 100, 0, 2], [10, 1, 0, 5], 17, 0, 64, &udp(1, 2, b"x"));
    assert_eq!(verdict(&t, &outer(&REMOTE4, 41, 0, &i4)), bad);
    assert_eq!(verdict(&t, &outer(&REMOTE4, 4, 0, &i4[..19])), bad);
    let mut i6 = inner_ip6(0, b"x");
    i6[5] += 1; // payload length past the packet
    assert_eq!(verdict(&t, &outer(&REMOTE6, 41, 0, &i6)), bad);
}

/// `layers` VXLAN headers around one packet: every layer to vx4 again.
fn nested_vxlan(i: &Ifaces, layers: usize) -> Vec<u8> {
    let mut f = inner_udp4(tun_mac(i.vx4), 0, b"core");
    for n in 0..layers {
        let hdr = udp(49152, 4789, &vxlan(100, &f));
        let ip = ipv4(REMOTE4, LOCAL4, 17, 0, 64, &hdr);
        let dst = if n + 1 == layers { UNDERLAY_MAC } else { tun_mac(i.vx4) };
        f = eth(dst, PEER_MAC, 0x0800, &ip);
    }
    f
}

#[test]
fn nesting_beyond_max_nesting_is_a_loop() {
    let (t, i) = vector_tables();
    assert_eq!(MAX_NESTING, 4);
    for layers in 1..=MAX_NESTING as usize {
        let p = decap(&t, &nested_vxlan(&i, layers));
        assert_eq!(p.meta.verdict, Verdict::Continue, "{layers} layers");
        assert_eq!((p.meta.tunnel.depth as usize, p.meta.in_port), (layers, i.vx4));
        assert_eq!(p.data(), &inner_udp4(tun_mac(i.vx4), 0, b"core")[..]);
    }
    let five = nested_vxlan(&i, 5);
    assert_eq!(verdict(&t, &five), Verdict::Drop(DropReason::TunnelLoop));
    // Five IP-in-IP layers, and five mixed ones (IPIP around Geneve around VXLAN ...).
    let mut f = ipv4([10, 100, 0, 2], [10, 1, 0, 5], 17, 0, 64, &udp(1, 2, b"x"));
    for _ in 0..5 {
        f = ipv4(REMOTE4, LOCAL4, 4, 0, 64, &f);
    }
    let f = eth(UNDERLAY_MAC, PEER_MAC, 0x0800, &f);
    assert_eq!(verdict(&t, &f), Verdict::Drop(DropReason::TunnelLoop));
    let mut f = inner_udp4(tun_mac(i.vx4), 0, b"core");
    let v4 = |l4: Vec<u8>, proto| ipv4(REMOTE4, LOCAL4, proto, 0, 64, &l4);
    f = eth(tun_mac(i.gn4), PEER_MAC, 0x0800, &v4(udp(1, 4789, &vxlan(100, &f)), 17));
    f = eth(tun_mac(i.ip4), PEER_MAC, 0x0800, &v4(udp(1, 6081, &geneve(300, 0x6558, &[], &f)), 17));
    let ip = v4(f[14..].to_vec(), 4);
    f = eth(tun_mac(i.vx4), PEER_MAC, 0x0800, &ip);
    f = eth(tun_mac(i.vx4), PEER_MAC, 0x0800, &v4(udp(1, 4789, &vxlan(100, &f)), 17));
    let four = eth(UNDERLAY_MAC, PEER_MAC, 0x0800, &v4(udp(1, 4789, &vxlan(100, &f)), 17));
    // vxlan -> vxlan -> ipip -> geneve -> vxlan: 5 layers.
    assert_eq!(verdict(&t, &four), Verdict::Drop(DropReason::TunnelLoop));
}

/// Cross-check with scapy's VXLAN layer (a real peer's encoder, not ours). scapy's default
/// flags are VXLAN-GPE's (I plus P, next protocol 3); plain RFC 7348 is flags=0x08.
#[test]
fn vxlan_header_matches_scapy() {
    let py = "from scapy.all import raw, Ether\nfrom scapy.layers.vxlan import VXLAN\nprint(raw(VXLAN(flags=0x08, vni=0xabcdef)/Ether(dst='02:00:00:00:00:01', src='02:00:00:00:00:02', type=0x0800)).hex())";
    let bytes = scapy_hex(py);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut ours = vec![0u8; vxlan::HEADER_LEN];
    assert!(vxlan::emit(&mut ours, 0xab_cdef));
    assert_eq!(bytes[..vxlan::HEADER_LEN], ours[..], "scapy: {hex}");
    assert_eq!(vxlan::VxlanPacket::new_checked(&bytes[..]).unwrap().vni(), 0xab_cdef);
}

/// Cross-check with scapy's Geneve layer (with a TLV option), both directions.
#[test]
fn geneve_header_matches_scapy() {
    let b = scapy_hex(
        "from scapy.all import raw, Ether\nfrom scapy.contrib.geneve import GENEVE, GeneveOptions\n\
         g = GENEVE(vni=0x123456, proto=0x6558, options=[GeneveOptions(classid=0x0102, type=0x85, data=b'\\x0a\\x0b\\x0c\\x0d')])\n\
         print(raw(g/Ether(dst='02:00:00:00:00:01', src='02:00:00:00:00:02', type=0x0800)).hex())",
    );
    let p = geneve::GenevePacket::new_checked(&b[..]).unwrap();
    assert_eq!((p.vni(), p.protocol(), p.options_len()), (0x12_3456, geneve::PROTO_ETHERNET, 8));
    let o: Vec<geneve::Opt> = p.options().collect();
    assert_eq!(o, [geneve::Opt { class: 0x0102, kind: 0x85, data: &[0x0a, 0x0b, 0x0c, 0x0d] }]);
    assert!(o[0].critical());
    assert_eq!(&p.payload()[..6], &[2, 0, 0, 0, 0, 1]);
    // Our encoding of the same header equals scapy's, apart from the C bit, which scapy
    // leaves to the caller and RFC 8926 3.4 requires when a critical option is present.
    let mut ours = [0u8; 16];
    let n = geneve::emit(&mut ours, 0x12_3456, geneve::PROTO_ETHERNET, &o).unwrap();
    let mut theirs = b[..n].to_vec();
    theirs[1] |= 0x40;
    assert_eq!(ours[..n], theirs[..]);
}

/// The decap stage compares each packet's UDP port against the first few listening ports in a
/// fixed array (`LISTENER_SLOTS`); with more tunnel ports than that it asks the table, so a
/// tunnel on any of them still receives, and a port nobody listens on still passes.
#[test]
fn more_listening_ports_than_listener_slots() {
    use ferroplane_pipeline::tunnel::LISTENER_SLOTS;
    let mut b = TablesBuilder::new(9);
    b.port(PortInfo {
        name: "u".into(),
        mac: UNDERLAY_MAC,
        mtu: 1500,
        addresses: vec![(ip("10.2.0.1"), 24)],
    });
    let n = LISTENER_SLOTS as u16 + 2;
    let mut ifaces = Vec::new();
    for k in 0..n {
        let mut t = tunnel(&format!("v{k}"), TunnelKind::Vxlan, "10.2.0.1", None, 100, vec![]);
        t.dst_port = 4789 + k;
        let info = PortInfo {
            name: format!("v{k}"),
            mac: tun_mac(1 + k),
            mtu: 1400,
            addresses: vec![(ip(&format!("10.10{k}.0.1")), 24)],
        };
        ifaces.push(b.tunnel(info, t));
    }
    let t = b.build().unwrap();
    for k in 0..n {
        let inner = inner_udp4(tun_mac(1 + k), 0, b"s");
        let p = decap(&t, &outer(&REMOTE4, 17, 0, &udp(49152, 4789 + k, &vxlan(100, &inner))));
        assert_eq!((p.meta.verdict, p.meta.in_port), (Verdict::Continue, ifaces[k as usize]));
        assert_eq!(p.meta.tunnel.depth, 1);
    }
    let inner = inner_udp4(tun_mac(1), 0, b"s");
    let p = decap(&t, &outer(&REMOTE4, 17, 0, &udp(49152, 4789 + n, &vxlan(100, &inner))));
    assert_eq!((p.meta.verdict, p.meta.tunnel.depth), (Verdict::Continue, 0));
}

/// One burst of tunnel packets for different tunnels, remotes and VNIs, runs of the same and
/// alternations (the stage remembers the burst's last decap key): every packet comes out as it
/// does decapsulated alone.
#[test]
fn a_mixed_burst_decapsulates_as_each_packet_alone() {
    use ferroplane_pipeline::stage::{Context, Stage};
    let (t, i) = vector_tables();
    let vx = |src: &[u8], vni: u32, dst: ferroplane_pipeline::meta::PortId| {
        outer(src, 17, 0, &udp(49152, 4789, &vxlan(vni, &inner_udp4(tun_mac(dst), 0, b"v"))))
    };
    let gn = outer(
        &REMOTE4,
        17,
        0,
        &udp(49152, 6081, &geneve(300, 0x6558, &[], &inner_udp4(tun_mac(i.gn4), 0, b"g"))),
    );
    let i4 = outer(&REMOTE4, 4, 0, &ipv4([10, 100, 0, 2], [10, 1, 0, 5], 17, 0, 64, b"xyz"));
    let frames = [
        vx(&REMOTE4, 100, i.vx4),
        vx(&REMOTE4, 100, i.vx4),
        vx(&[10, 2, 0, 9], 200, i.vxm),
        vx(&[10, 2, 0, 8], 200, i.vxm),
        vx(&REMOTE4, 101, i.vx4),
        vx(&REMOTE4, 100, i.vx4),
        gn.clone(),
        i4.clone(),
        vx(&REMOTE6, 100, i.vx6),
        vx(&REMOTE4, 100, i.vx4),
        i4,
        gn,
    ];
    let mut burst: Vec<_> = frames
        .iter()
        .map(|f| {
            let mut p = buf();
            p.fill_from(f).unwrap();
            p.meta.in_port = 0;
            p
        })
        .collect();
    let cx = Context { tables: &t, now_ns: 1 };
    ferroplane_pipeline::l3::ParseStage.process(&cx, &mut burst);
    DecapStage::new(None).process(&cx, &mut burst);
    for (k, (p, f)) in burst.iter().zip(&frames).enumerate() {
        let alone = decap(&t, f);
        assert_eq!(p.meta.verdict, alone.meta.verdict, "packet {k}");
        assert_eq!(p.meta.in_port, alone.meta.in_port, "packet {k}");
        assert_eq!(p.meta.tunnel, alone.meta.tunnel, "packet {k}");
        assert_eq!(p.data(), alone.data(), "packet {k}");
    }
    assert_eq!(burst[4].meta.verdict, Verdict::Drop(DropReason::TunnelUnknown));
    assert_eq!((burst[2].meta.in_port, burst[3].meta.in_port), (i.vxm, i.vxm));
    assert_eq!(burst[8].meta.in_port, i.vx6);
}
