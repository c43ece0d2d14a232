//! Golden tables, Katran style: {description, config, input frame, expected verdict, expected
//! output frame}. Input frames and expected outputs are built and checked with etherparse, an
//! implementation independent of ours.

use etherparse::{
    EtherType, Ethernet2Header, IcmpEchoHeader, Icmpv4Type, Icmpv6Type, IpNumber, Ipv4Header,
    PacketBuilder, SlicedPacket, TransportSlice,
};
use ferroplane_dataplane::assemble::build_tables;
use ferroplane_dataplane::config;
use ferroplane_dataplane::offline::OfflineRouter;
use ferroplane_pipeline::verdict::DropReason;

const CONFIG: &str = r#"
[dataplane]
workers = [1]

[[port]]
name = "left"
driver = "memory"
mac = "02:00:00:00:00:01"
addresses = ["10.1.0.1/24", "2001:db8:1::1/64"]

[[port]]
name = "right"
driver = "memory"
mac = "02:00:00:00:00:02"
mtu = 1280
addresses = ["10.2.0.1/24", "2001:db8:2::1/64"]

[[route]]
prefix = "198.51.100.0/24"
nexthops = [{ via = "10.2.0.2" }]

[[route]]
prefix = "203.0.113.0/24"
blackhole = true

[[route]]
prefix = "2001:db8:100::/48"
nexthops = [{ via = "2001:db8:2::2" }]

[[neighbor]]
address = "10.1.0.2"
mac = "02:00:00:00:01:02"
port = "left"

[[neighbor]]
address = "10.2.0.2"
mac = "02:00:00:00:02:02"
port = "right"

[[neighbor]]
address = "2001:db8:2::2"
mac = "02:00:00:00:02:02"
port = "right"

[[neighbor]]
address = "2001:db8:1::2"
mac = "02:00:00:00:01:02"
port = "left"
"#;

const LEFT: u16 = 0;
const RIGHT: u16 = 1;
const R_LEFT: [u8; 6] = [2, 0, 0, 0, 0, 1];
const R_RIGHT: [u8; 6] = [2, 0, 0, 0, 0, 2];
const H_LEFT: [u8; 6] = [2, 0, 0, 0, 1, 2];
const H_RIGHT: [u8; 6] = [2, 0, 0, 0, 2, 2];

fn router() -> OfflineRouter {
    let cfg = config::parse_str(CONFIG, "golden.toml").unwrap_or_else(|e| panic!("{e}"));
    OfflineRouter::new(build_tables(&cfg, &|_| None).unwrap()).unwrap()
}

/// Sends frames (one burst per frame, 1 ms apart) and returns what came out: (port, frame).
fn run(r: &mut OfflineRouter, frames: &[(u16, Vec<u8>)]) -> Vec<(u16, Vec<u8>)> {
    for (i, (port, f)) in frames.iter().enumerate() {
        let t = 1_000_000_000 + i as u64 * 1_000_000;
        r.run_burst(t, &[(*port, f, t)]);
    }
    let mut out = Vec::new();
    r.drain_tx(|p, f, _| out.push((p, f.to_vec())));
    out
}

fn drops(r: &OfflineRouter, reason: DropReason) -> u64 {
    r.worker_counters().drops.get(reason) + r.slow_counters().drops.get(reason)
}

fn udp4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac).ipv4(src, dst, ttl).udp(40000, 5001);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn udp6(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    hops: u8,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac).ipv6(src, dst, hops).udp(40000, 5001);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// A frame as a router forwards it: new MACs and TTL - 1 (etherparse recomputes the checksum).
fn forwarded_v4(frame: &[u8], src_mac: [u8; 6], dst_mac: [u8; 6]) -> Vec<u8> {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!() };
    let mut h: Ipv4Header = ip.header().to_header();
    h.time_to_live -= 1;
    h.header_checksum = h.calc_header_checksum();
    let mut v = Vec::new();
    Ethernet2Header { source: src_mac, destination: dst_mac, ether_type: EtherType::IPV4 }
        .write(&mut v)
        .unwrap();
    h.write(&mut v).unwrap();
    v.extend_from_slice(ip.payload().payload);
    v
}

#[test]
fn ipv4_forwarded_to_connected_host_with_ttl_and_checksum_updated() {
    let mut r = router();
    let f = udp4(H_LEFT, R_LEFT, [10, 1, 0, 2], [10, 2, 0, 2], 64, b"hello");
    let out = run(&mut r, &[(LEFT, f.clone())]);
    assert_eq!(out, vec![(RIGHT, forwarded_v4(&f, R_RIGHT, H_RIGHT))]);
}

#[test]
fn ipv4_routed_via_gateway_and_padding_stripped() {
    let mut r = router();
    let f = udp4(H_LEFT, R_LEFT, [10, 1, 0, 2], [198, 51, 100, 7], 9, b"x");
    let mut padded = f.clone();
    padded.resize(60, 0); // Ethernet minimum frame padding
    let out = run(&mut r, &[(LEFT, padded)]);
    assert_eq!(out, vec![(RIGHT, forwarded_v4(&f, R_RIGHT, H_RIGHT))]);
}

#[test]
fn ipv6_routed_with_hop_limit_decremented() {
    let mut r = router();
    let f = udp6(H_LEFT, R_LEFT, v6("2001:db8:1::2"), v6("2001:db8:100::5"), 64, b"six");
    let out = run(&mut r, &[(LEFT, f)]);
    let expected = udp6(R_RIGHT, H_RIGHT, v6("2001:db8:1::2"), v6("2001:db8:100::5"), 63, b"six");
    assert_eq!(out, vec![(RIGHT, expected)]);
}

#[test]
fn drops_are_named() {
    let good = udp4(H_LEFT, R_LEFT, [10, 1, 0, 2], [10, 2, 0, 2], 64, b"hello");
    let mut bad_sum = good.clone();
    bad_sum[14 + 10] ^= 0xff;
    let mut vlan = good[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    vlan.extend_from_slice(&good[12..]);
    let mut other_mac = good.clone();
    other_mac[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
    let mut unknown = good.clone();
    unknown[12..14].copy_from_slice(&[0x88, 0xb5]);
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("header checksum corrupted", bad_sum, DropReason::Ipv4BadChecksum),
        ("802.1Q tag on an untagged port", vlan, DropReason::VlanNotConfigured),
        ("unicast to another MAC", other_mac, DropReason::NotOurMac),
        ("local experimental EtherType", unknown, DropReason::UnknownEthertype),
        ("truncated IPv4 header", good[..14 + 12].to_vec(), DropReason::Ipv4Truncated),
        ("shorter than Ethernet", good[..10].to_vec(), DropReason::EthTruncated),
        (
            "blackhole route",
            udp4(H_LEFT, R_LEFT, [10, 1, 0, 2], [203, 0, 113, 1], 64, b""),
            DropReason::NextHopDrop,
        ),
        (
            "multicast source",
            udp4(H_LEFT, R_LEFT, [224, 0, 0, 1], [10, 2, 0, 2], 64, b""),
            DropReason::Ipv4BadSource,
        ),
        (
            "limited broadcast",
            udp4(H_LEFT, R_LEFT, [10, 1, 0, 2], [255, 255, 255, 255], 64, b""),
            DropReason::Ipv4NotRoutable,
        ),
        (
            "link-local IPv6 destination",
            udp6(H_LEFT, R_LEFT, v6("2001:db8:1::2"), v6("fe80::9"), 64, b""),
            DropReason::Ipv6NotRoutable,
        ),
    ];
    for (what, frame, reason) in cases {
        let mut r = router();
        let out = run(&mut r, &[(LEFT, frame)]);
        assert!(out.is_empty(), "{what}: expected a drop, got {out:?}");
        assert_eq!(drops(&r, reason), 1, "{what}: expected one {reason} drop");
        assert_eq!(
            r.pool_available(),
            ferroplane_dataplane::offline::POOL_FRAMES,
            "{what}: buffer leaked"
        );
    }
}

fn parse_icmp4(frame: &[u8]) -> (Ipv4Header, Icmpv4Type, Vec<u8>) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { panic!("not IPv4: {p:?}") };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else { panic!("not ICMP") };
    let payload = icmp.payload().to_vec();
    // The ICMP checksum covers header and payload.
    let mut sum = 0u32;
    for c in icmp.slice().chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    assert_eq!(sum, 0xffff, "ICMP checksum");
    (h, icmp.icmp_type(), payload)
}

#[test]
fn ttl_one_gets_time_exceeded_quoting_the_original() {
    let mut r = router();
    let f = udp4(H_LEFT, R_LEFT, [10, 1, 0, 2], [10, 2, 0, 2], 1, b"probe");
    let out = run(&mut r, &[(LEFT, f.clone())]);
    assert_eq!(out.len(), 1);
    let (port, frame) = &out[0];
    assert_eq!(*port, LEFT);
    assert_eq!(&frame[0..6], &H_LEFT);
    assert_eq!(&frame[6..12], &R_LEFT);
    let (ip, ty, quoted) = parse_icmp4(frame);
    assert_eq!(ip.source, [10, 1, 0, 1]);
    assert_eq!(ip.destination, [10, 1, 0, 2]);
    assert!(matches!(
        ty,
        Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit)
    ));
    assert_eq!(quoted, f[14..].to_vec());
    assert_eq!(drops(&r, DropReason::TtlExpired), 1);
}

#[test]
fn echo_request_to_us_is_answered() {
    let mut r = router();
    let b = PacketBuilder::ethernet2(H_LEFT, R_LEFT)
        .ipv4([10, 1, 0, 2], [10, 1, 0, 1], 64)
        .icmpv4_echo_request(0x1234, 7);
    let mut f = Vec::new();
    b.write(&mut f, b"abcdefgh").unwrap();
    let out = run(&mut r, &[(LEFT, f)]);
    assert_eq!(out.len(), 1);
    let (ip, ty, payload) = parse_icmp4(&out[0].1);
    assert_eq!((ip.source, ip.destination), ([10, 1, 0, 1], [10, 1, 0, 2]));
    assert_eq!(ty, Icmpv4Type::EchoReply(IcmpEchoHeader { id: 0x1234, seq: 7 }));
    assert_eq!(payload, b"abcdefgh");
    assert_eq!(&out[0].1[0..6], &H_LEFT);
}

#[test]
fn echo_request_v6_is_answered() {
    let mut r = router();
    let b = PacketBuilder::ethernet2(H_LEFT, R_LEFT)
        .ipv6(v6("2001:db8:1::2"), v6("2001:db8:1::1"), 64)
        .icmpv6_echo_request(9, 1);
    let mut f = Vec::new();
    b.write(&mut f, b"ping6").unwrap();
    let out = run(&mut r, &[(LEFT, f)]);
    assert_eq!(out.len(), 1);
    let p = SlicedPacket::from_ethernet(&out[0].1).unwrap();
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else { panic!() };
    assert_eq!(icmp.icmp_type(), Icmpv6Type::EchoReply(IcmpEchoHeader { id: 9, seq: 1 }));
    let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else { panic!() };
    let h = ip.header();
    assert_eq!(
        icmp.checksum(),
        icmp.icmp_type().calc_checksum(h.source(), h.destination(), icmp.payload()).unwrap()
    );
}

#[test]
fn no_route_gets_net_unreachable() {
    let mut r = router();
    let f = udp4(H_LEFT, R_LEFT, [10, 1, 0, 2], [192, 0, 2, 1], 64, b"lost");
    let out = run(&mut r, &[(LEFT, f)]);
    assert_eq!(out.len(), 1);
    let (_, ty, _) = parse_icmp4(&out[0].1);
    assert!(matches!(
        ty,
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Network)
    ));
    assert_eq!(drops(&r, DropReason::NoRoute), 1);
}

#[test]
fn arp_request_for_us_is_answered_and_sender_learned() {
    let mut r = router();
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 1, 9]);
    f.extend_from_slice(&[
        0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 1, 9, 10, 1, 0, 9, 0, 0, 0, 0, 0, 0, 10, 1,
        0, 1,
    ]);
    let out = run(&mut r, &[(LEFT, f)]);
    assert_eq!(out.len(), 1);
    let reply = &out[0].1;
    assert_eq!(&reply[0..6], &[2, 0, 0, 0, 1, 9]);
    assert_eq!(&reply[12..14], &[0x08, 0x06]);
    assert_eq!(&reply[20..22], &[0, 2], "op = reply");
    assert_eq!(&reply[22..28], &R_LEFT, "sender hardware address");
    assert_eq!(&reply[28..32], &[10, 1, 0, 1]);
    assert_eq!(&reply[38..42], &[10, 1, 0, 9]);
    // The requester is now a neighbour: traffic to it leaves without another ARP.
    let f = udp4(H_RIGHT, R_RIGHT, [10, 2, 0, 2], [10, 1, 0, 9], 64, b"back");
    let out = run(&mut r, &[(RIGHT, f)]);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].1[0..6], &[2, 0, 0, 0, 1, 9]);
}

#[test]
fn unresolved_next_hop_is_resolved_then_released_in_order() {
    let mut r = router();
    let a = udp4(H_LEFT, R_LEFT, [10, 1, 0, 2], [10, 2, 0, 9], 64, b"first");
    let b = udp4(H_LEFT, R_LEFT, [10, 1, 0, 2], [10, 2, 0, 9], 64, b"second");
    let out = run(&mut r, &[(LEFT, a.clone()), (LEFT, b.clone())]);
    // One ARP request, broadcast, asking for 10.2.0.9 from 10.2.0.1.
    assert_eq!(out.len(), 1, "{out:?}");
    let req = &out[0].1;
    assert_eq!((out[0].0, &req[0..6], &req[20..22]), (RIGHT, &[0xff; 6][..], &[0, 1][..]));
    assert_eq!((&req[28..32], &req[38..42]), (&[10, 2, 0, 1][..], &[10, 2, 0, 9][..]));
    // The answer releases both, in order, to the learned MAC.
    let mac = [2, 0, 0, 0, 2, 9];
    let mut reply = R_RIGHT.to_vec();
    reply.extend_from_slice(&mac);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
    reply.extend_from_slice(&mac);
    reply.extend_from_slice(&[10, 2, 0, 9]);
    reply.extend_from_slice(&R_RIGHT);
    reply.extend_from_slice(&[10, 2, 0, 1]);
    let out = run(&mut r, &[(RIGHT, reply)]);
    assert_eq!(
        out,
        vec![(RIGHT, forwarded_v4(&a, R_RIGHT, mac)), (RIGHT, forwarded_v4(&b, R_RIGHT, mac))]
    );
    assert_eq!(r.pool_available(), ferroplane_dataplane::offline::POOL_FRAMES);
}

#[test]
fn unanswered_resolution_gives_up_after_three_probes() {
    let mut r = router();
    let a = udp4(H_LEFT, R_LEFT, [10, 1, 0, 2], [10, 2, 0, 77], 64, b"void");
    r.run_burst(0, &[(LEFT, &a, 0)]);
    r.advance_to(10_000_000_000);
    let mut arps = 0;
    r.drain_tx(|_, f, _| arps += (f[12..14] == [8, 6]) as usize);
    assert_eq!(arps, 3);
    assert_eq!(drops(&r, DropReason::NeighbourUnresolved), 1);
    assert_eq!(r.pool_available(), ferroplane_dataplane::offline::POOL_FRAMES);
}

#[test]
fn too_big_with_df_gets_frag_needed_and_without_df_is_fragmented() {
    let mut r = router();
    let payload = vec![0xab; 1400];
    let mut df = udp4(H_LEFT, R_LEFT, [10, 1, 0, 2], [10, 2, 0, 2], 64, &payload);
    // etherparse sets DF by default? make it explicit: byte 6 bit 0x40.
    df[14 + 6] |= 0x40;
    let c = {
        df[24] = 0;
        df[25] = 0;
        let mut s = 0u32;
        for ch in df[14..34].chunks(2) {
            s += u16::from_be_bytes([ch[0], ch[1]]) as u32;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    };
    df[24..26].copy_from_slice(&c.to_be_bytes());
    let out = run(&mut r, &[(LEFT, df)]);
    assert_eq!(out.len(), 1);
    let (_, ty, _) = parse_icmp4(&out[0].1);
    assert!(
        matches!(
            ty,
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1280
                }
            )
        ),
        "{ty:?}"
    );

    let mut r = router();
    let mut nodf = udp4(H_LEFT, R_LEFT, [10, 1, 0, 2], [10, 2, 0, 2], 64, &payload);
    nodf[14 + 6] &= !0x40;
    nodf[24] = 0;
    nodf[25] = 0;
    let h = Ipv4Header::from_slice(&nodf[14..]).unwrap().0;
    nodf[24..26].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
    let out = run(&mut r, &[(LEFT, nodf.clone())]);
    assert_eq!(out.len(), 2, "1428-byte packet into MTU 1280: two fragments");
    let mut body = Vec::new();
    for (port, f) in &out {
        assert_eq!(*port, RIGHT);
        assert!(f.len() - 14 <= 1280);
        let (ip, _) = Ipv4Header::from_slice(&f[14..]).unwrap();
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        assert_eq!(ip.time_to_live, 63);
        body.extend_from_slice(&f[14 + ip.header_len()..]);
    }
    assert_eq!(body, nodf[34..].to_vec());
}

#[test]
fn neighbour_solicitation_for_us_is_advertised() {
    let mut r = router();
    // NS from 2001:db8:1::2 for 2001:db8:1::1 with its link-layer address option.
    let target = v6("2001:db8:1::1");
    let src = v6("2001:db8:1::2");
    let mut group = v6("ff02::1:ff00:1");
    group[13..16].copy_from_slice(&target[13..16]);
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target);
    icmp.extend_from_slice(&[1, 1]);
    icmp.extend_from_slice(&H_LEFT);
    let b = PacketBuilder::ethernet2(H_LEFT, [0x33, 0x33, 0xff, 0, 0, 1])
        .ipv6(src, group, 255)
        .icmpv6(Icmpv6Type::Unknown { type_u8: 135, code_u8: 0, bytes5to8: [0; 4] });
    let mut f = Vec::new();
    b.write(&mut f, &icmp[8..]).unwrap();
    let out = run(&mut r, &[(LEFT, f)]);
    assert_eq!(out.len(), 1, "{out:?}");
    let p = SlicedPacket::from_ethernet(&out[0].1).unwrap();
    let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else { panic!() };
    assert_eq!(ip.header().hop_limit(), 255);
    assert_eq!(ip.header().source(), target);
    assert_eq!(ip.header().destination(), src);
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else { panic!() };
    let na = icmp.slice();
    assert_eq!(na[0], 136);
    assert_eq!(na[4] & 0xe0, 0xe0, "router, solicited, override");
    assert_eq!(&na[8..24], &target);
    assert_eq!(&na[24..32], &[2, 1, 2, 0, 0, 0, 0, 1]);
    let h = ip.header();
    assert_eq!(
        icmp.checksum(),
        icmp.icmp_type().calc_checksum(h.source(), h.destination(), icmp.payload()).unwrap()
    );
    let _ = IpNumber::UDP;
}

#[test]
fn a_frame_bigger_than_a_buffer_is_a_counted_drop() {
    let mut r = router();
    let big = udp4(H_LEFT, R_LEFT, [10, 1, 0, 2], [10, 2, 0, 2], 64, &[0u8; 2000]);
    let ok = udp4(H_LEFT, R_LEFT, [10, 1, 0, 2], [10, 2, 0, 2], 64, &[0u8; 100]);
    let out = run(&mut r, &[(LEFT, big), (LEFT, ok)]);
    assert_eq!(out.len(), 1, "the small frame still goes through");
    assert_eq!(drops(&r, DropReason::FrameTooBig), 1);
}

/// A packet routed into a tunnel takes its inner flow's hash to the outer header (the VXLAN
/// source port, RFC 7348 5), though neither the parse stage nor (for a single-path route) the
/// route stage computes it: the encap stage does for the outer headers that carry it.
#[test]
fn tunnel_bound_packets_carry_their_flow_hash_into_the_outer_source_port() {
    let text = format!(
        "{CONFIG}{}",
        r#"
[[tunnel]]
name = "vx0"
kind = "vxlan"
local = "10.2.0.1"
remote = "10.2.0.9"
vni = 100
addresses = ["10.100.0.1/24"]

[[neighbor]]
address = "10.100.0.2"
mac = "02:00:00:00:09:02"
port = "vx0"

[[neighbor]]
address = "10.2.0.9"
mac = "02:00:00:00:02:09"
port = "right"

[[route]]
prefix = "198.18.0.0/16"
nexthops = [{ via = "10.100.0.2" }]
"#
    );
    let cfg = config::parse_str(&text, "golden.toml").unwrap_or_else(|e| panic!("{e}"));
    let mut r = OfflineRouter::new(build_tables(&cfg, &|_| None).unwrap()).unwrap();
    let frame = |sport: u16| {
        let b = PacketBuilder::ethernet2(H_LEFT, R_LEFT)
            .ipv4([10, 1, 0, 2], [198, 18, 0, 5], 64)
            .udp(sport, 5001);
        let mut v = Vec::new();
        b.write(&mut v, b"entropy").unwrap();
        v
    };
    let out = run(&mut r, &[(LEFT, frame(40000)), (LEFT, frame(40001))]);
    assert_eq!(out.len(), 2, "{out:?}");
    let mut ports = Vec::new();
    for ((port, f), sport) in out.iter().zip([40000u16, 40001]) {
        assert_eq!(*port, RIGHT);
        let outer = SlicedPacket::from_ethernet(f).unwrap();
        let Some(TransportSlice::Udp(u)) = outer.transport else { panic!("{outer:?}") };
        assert_eq!(u.destination_port(), 4789);
        let key = ferroplane_pipeline::flow::FlowKey {
            src: ferroplane_pipeline::flow::v4_mapped([10, 1, 0, 2]),
            dst: ferroplane_pipeline::flow::v4_mapped([198, 18, 0, 5]),
            src_port: sport,
            dst_port: 5001,
            proto: 17,
        };
        let hash = key.symmetric_hash(cfg.dataplane.hash_seed);
        assert_eq!(u.source_port(), ferroplane_tunnels::encap::source_port(hash));
        ports.push(u.source_port());
    }
    assert_ne!(ports[0], ports[1], "two flows, two outer source ports");
}
