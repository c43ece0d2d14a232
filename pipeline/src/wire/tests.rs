//! Byte vectors from the RFCs and well-known captures, cross-checks against etherparse, and
//! arbitrary input.

use super::*;
use etherparse::PacketBuilder;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The IPv4 header worked through in countless checksum tutorials (checksum 0xb861), with a UDP
/// length of payload behind it.
#[test]
fn ipv4_header_fields_and_checksum() {
    let mut b = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7");
    b.resize(0x73, 0);
    let p = Ipv4Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.header_len(), 20);
    assert_eq!(p.total_len(), 0x73);
    assert!(p.dont_frag() && !p.more_frags());
    assert_eq!((p.ttl(), p.protocol(), p.checksum()), (64, 17, 0xb861));
    assert_eq!((p.src(), p.dst()), ([192, 168, 0, 1], [192, 168, 0, 199]));
    assert!(p.verify_checksum());
    assert_eq!(p.payload().len(), 0x73 - 20);
    let mut c = b.clone();
    let mut m = Ipv4Packet::new_checked(&mut c[..]).unwrap();
    m.set_ttl(63);
    assert!(m.verify_checksum(), "RFC 1624 update keeps the header valid");
    m.fill_checksum();
    assert!(m.verify_checksum());
}

#[test]
fn ipv4_options_and_lying_lengths() {
    // IHL 6: one word of options (a NOP NOP NOP EOL).
    let mut b = hex("4600 0018 0000 0000 4001 0000 0a00 0001 0a00 0002 0101 0100");
    Ipv4Packet::new_checked(&mut b[..]).unwrap().fill_checksum();
    let p = Ipv4Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.options(), &[1, 1, 1, 0]);
    assert!(p.payload().is_empty());
    let mut bad = b.clone();
    bad[0] = 0x44; // IHL 4
    assert_eq!(Ipv4Packet::new_checked(&bad[..]).err(), Some(Error::Malformed));
    bad[0] = 0x4f; // IHL 15: 60 bytes, more than there are
    assert_eq!(Ipv4Packet::new_checked(&bad[..]).err(), Some(Error::Truncated));
    let mut bad = b.clone();
    bad[3] = 0x30; // total length beyond the buffer
    assert_eq!(Ipv4Packet::new_checked(&bad[..]).err(), Some(Error::Truncated));
    bad[3] = 0x10; // total length shorter than the header
    assert_eq!(Ipv4Packet::new_checked(&bad[..]).err(), Some(Error::Malformed));
    bad[0] = 0x65;
    assert_eq!(Ipv4Packet::new_checked(&bad[..]).err(), Some(Error::BadVersion));
}

/// An ARP request as Wireshark's sample captures show it: who has 10.0.0.2? tell 10.0.0.1.
#[test]
fn arp_request() {
    let f = hex("ffff ffff ffff 0011 2233 4455 0806
         0001 0800 0604 0001 0011 2233 4455 0a00 0001 0000 0000 0000 0a00 0002");
    let e = EthernetFrame::new_checked(&f[..]).unwrap();
    assert_eq!((e.dst(), e.ethertype()), ([0xff; 6], 0x0806));
    let a = ArpPacket::new_checked(e.payload()).unwrap();
    assert_eq!((a.htype(), a.ptype(), a.hlen(), a.plen(), a.op()), (1, 0x0800, 6, 4, 1));
    assert_eq!(
        (a.sha(), a.spa(), a.tpa()),
        ([0, 0x11, 0x22, 0x33, 0x44, 0x55], [10, 0, 0, 1], [10, 0, 0, 2])
    );
    let mut out = [0u8; 28];
    ArpPacket::emit(&mut out[..], 1, a.sha(), a.spa(), a.tha(), a.tpa()).unwrap();
    assert_eq!(&out[..], e.payload());
    let mut bad = e.payload().to_vec();
    bad[4] = 8;
    assert_eq!(ArpPacket::new_checked(&bad[..]).err(), Some(Error::Malformed));
}

/// A TCP SYN with MSS, SACK-permitted, timestamps, NOP and window scale options, checksum
/// computed by hand over the RFC 793 pseudo-header.
#[test]
fn tcp_syn_with_options() {
    let ip = hex("4500 003c 1c46 4000 4006 0000 c0a8 0068 c0a8 0001");
    let tcp = hex("d431 0050 6b2f 3a29 0000 0000 a002 faf0 0000 0000
         0204 05b4 0402 080a 0013 d8e7 0000 0000 0103 0307");
    let ph = PseudoHeader::V4 { src: [192, 168, 0, 104], dst: [192, 168, 0, 1] };
    let mut seg = tcp.clone();
    TcpPacket::new_checked(&mut seg[..]).unwrap().fill_checksum(&ph);
    let t = TcpPacket::new_checked(&seg[..]).unwrap();
    assert_eq!((t.src_port(), t.dst_port(), t.seq(), t.ack()), (54321, 80, 0x6b2f3a29, 0));
    assert_eq!((t.header_len(), t.flags(), t.window()), (40, tcp::SYN, 0xfaf0));
    assert_eq!(&t.options()[..4], &[2, 4, 5, 0xb4]);
    assert!(t.verify_checksum(&ph));
    // The same sum the kernel would compute over the whole datagram.
    let mut whole = ip.clone();
    whole.extend_from_slice(&seg);
    let ours = etherparse::Ipv4HeaderSlice::from_slice(&whole).unwrap().to_header();
    let theirs = etherparse::TcpHeaderSlice::from_slice(&seg).unwrap().to_header();
    assert_eq!(theirs.calc_checksum_ipv4(&ours, &[]).unwrap(), t.checksum());
    let mut bad = seg.clone();
    bad[12] = 0x40;
    assert_eq!(TcpPacket::new_checked(&bad[..]).err(), Some(Error::Malformed));
}

/// An ICMPv6 echo request from fe80::1 to ff02::1, checksum per RFC 4443 2.3.
#[test]
fn icmpv6_echo_checksum() {
    let src: [u8; 16] = hex("fe80 0000 0000 0000 0000 0000 0000 0001").try_into().unwrap();
    let dst: [u8; 16] = hex("ff02 0000 0000 0000 0000 0000 0000 0001").try_into().unwrap();
    let mut m = hex("8000 0000 1234 0001 6162 6364");
    Icmpv6Packet::new_checked(&mut m[..]).unwrap().fill_checksum(src, dst);
    let p = Icmpv6Packet::new_checked(&m[..]).unwrap();
    assert_eq!((p.msg_type(), p.code(), p.rest()), (128, 0, 0x1234_0001));
    assert!(p.verify_checksum(src, dst));
    let e = etherparse::Icmpv6Header::with_checksum(
        etherparse::Icmpv6Type::EchoRequest(etherparse::IcmpEchoHeader { id: 0x1234, seq: 1 }),
        src,
        dst,
        p.payload(),
    )
    .unwrap();
    assert_eq!(e.checksum, p.checksum());
    let mut bad = m.clone();
    bad[8] ^= 1;
    assert!(!Icmpv6Packet::new_checked(&bad[..]).unwrap().verify_checksum(src, dst));
}

#[test]
fn ipv6_extension_chains() {
    // Hop-by-hop (8 bytes) -> fragment (offset 0) -> destination options (16) -> UDP.
    let mut p = hex("6000 0000 0000 0011 2001 0db8 0000 0000 0000 0000 0000 0001 2001 0db8 0000 0000 0000 0000 0000 0002");
    let ext =
        hex("2c00 0000 0000 0000  3c00 0000 0000 0001  1101 0000 0000 0000 0000 0000 0000 0000");
    p.extend_from_slice(&ext);
    p.extend_from_slice(&hex("0400 0035 0008 0000"));
    let plen = (p.len() - 40) as u16;
    p[4..6].copy_from_slice(&plen.to_be_bytes());
    p[6] = 0;
    let v = Ipv6Packet::new_checked(&p[..]).unwrap();
    let ul = v.upper_layer().unwrap();
    assert_eq!(ul, UpperLayer { protocol: 17, offset: 40 + 32, later_fragment: false });
    // A chain that never ends: hop-by-hop headers pointing at each other.
    let mut l = p[..40].to_vec();
    for _ in 0..10 {
        l.extend_from_slice(&hex("0000 0000 0000 0000"));
    }
    let plen = (l.len() - 40) as u16;
    l[4..6].copy_from_slice(&plen.to_be_bytes());
    let v = Ipv6Packet::new_checked(&l[..]).unwrap();
    assert_eq!(v.upper_layer().err(), Some(Error::TooManyExtensions));
    // A header whose length runs past the payload.
    let mut t = p[..48].to_vec();
    t[41] = 9;
    t[4..6].copy_from_slice(&8u16.to_be_bytes());
    assert_eq!(
        Ipv6Packet::new_checked(&t[..]).unwrap().upper_layer().err(),
        Some(Error::Truncated)
    );
}

#[test]
fn vlan_tags() {
    let f = hex("0200 0000 0001 0200 0000 0002 88a8 0064 8100 a0c8 0800 4500");
    assert_eq!(skip_vlan_tags(&f).unwrap(), (0x0800, 22, Some(200)));
    let t = VlanTag::new_checked(&f[18..]).unwrap();
    assert_eq!((t.pcp(), t.dei(), t.vid(), t.ethertype()), (5, false, 200, 0x0800));
    let three = hex("0200 0000 0001 0200 0000 0002 8100 0001 8100 0002 8100 0003 0800");
    assert_eq!(skip_vlan_tags(&three).err(), Some(Error::Malformed));
    assert_eq!(skip_vlan_tags(&f[..20]).err(), Some(Error::Truncated));
}

/// Calls every getter a view has, to prove none can panic once `new_checked` said yes.
fn touch_all(b: &[u8]) {
    if let Ok(e) = EthernetFrame::new_checked(b) {
        let _ = (e.dst(), e.src(), e.ethertype(), e.payload());
    }
    let _ = skip_vlan_tags(b);
    if let Ok(v) = VlanTag::new_checked(b) {
        let _ = (v.pcp(), v.dei(), v.vid(), v.ethertype(), v.payload());
    }
    if let Ok(a) = ArpPacket::new_checked(b) {
        let _ = (a.htype(), a.ptype(), a.op(), a.sha(), a.spa(), a.tha(), a.tpa());
    }
    if let Ok(p) = Ipv4Packet::new_checked(b) {
        let _ = (p.dscp(), p.ecn(), p.ident(), p.frag_offset(), p.ttl(), p.src(), p.dst());
        let _ = (p.options(), p.payload(), p.verify_checksum());
    }
    if let Ok(p) = Ipv6Packet::new_checked(b) {
        let _ = (p.traffic_class(), p.flow_label(), p.hop_limit(), p.src(), p.dst());
        let _ = (p.payload(), p.upper_layer());
    }
    let ph = PseudoHeader::V4 { src: [1, 2, 3, 4], dst: [5, 6, 7, 8] };
    if let Ok(u) = UdpPacket::new_checked(b) {
        let _ = (u.src_port(), u.dst_port(), u.payload(), u.verify_checksum(&ph));
    }
    if let Ok(t) = TcpPacket::new_checked(b) {
        let _ = (t.seq(), t.ack(), t.flags(), t.urgent(), t.options(), t.payload());
        let _ = t.verify_checksum(&ph);
    }
    if let Ok(i) = Icmpv4Packet::new_checked(b) {
        let _ = (i.msg_type(), i.code(), i.rest(), i.payload(), i.verify_checksum());
    }
    if let Ok(i) = Icmpv6Packet::new_checked(b) {
        let _ = i.verify_checksum([0; 16], [0; 16]);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        touch_all(&b);
    }

    /// Every field our views read equals what etherparse reads, and our checksums equal the
    /// ones etherparse writes, for IPv4/UDP and IPv6/TCP built from random fields.
    #[test]
    fn agrees_with_etherparse(
        src4 in any::<[u8; 4]>(), dst4 in any::<[u8; 4]>(), ttl in 1u8..,
        src6 in any::<[u8; 16]>(), dst6 in any::<[u8; 16]>(),
        sp in any::<u16>(), dp in any::<u16>(), seq in any::<u32>(), win in any::<u16>(),
        payload in proptest::collection::vec(any::<u8>(), 0..100),
        v6 in any::<bool>(),
    ) {
        let mut f = Vec::new();
        if v6 {
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv6(src6, dst6, ttl)
                .tcp(sp, dp, seq, win)
                .write(&mut f, &payload)
                .unwrap();
        } else {
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4(src4, dst4, ttl)
                .udp(sp, dp)
                .write(&mut f, &payload)
                .unwrap();
        }
        let theirs = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        prop_assert_eq!(e.src(), [2, 0, 0, 0, 0, 1]);
        if v6 {
            let ip = Ipv6Packet::new_checked(e.payload()).unwrap();
            let Some(etherparse::NetSlice::Ipv6(t)) = &theirs.net else { panic!() };
            prop_assert_eq!(ip.src(), t.header().source());
            prop_assert_eq!(ip.dst(), t.header().destination());
            prop_assert_eq!(ip.hop_limit(), t.header().hop_limit());
            let ul = ip.upper_layer().unwrap();
            prop_assert_eq!(ul.protocol, 6);
            let ph = PseudoHeader::V6 { src: ip.src(), dst: ip.dst() };
            let tcp = TcpPacket::new_checked(&e.payload()[ul.offset..]).unwrap();
            let Some(etherparse::TransportSlice::Tcp(tt)) = &theirs.transport else { panic!() };
            prop_assert_eq!((tcp.src_port(), tcp.dst_port()), (tt.source_port(), tt.destination_port()));
            prop_assert_eq!((tcp.seq(), tcp.window()), (tt.sequence_number(), tt.window_size()));
            prop_assert_eq!(tcp.checksum(), tt.checksum());
            prop_assert!(tcp.verify_checksum(&ph));
            prop_assert_eq!(tcp.payload(), &payload[..]);
        } else {
            let ip = Ipv4Packet::new_checked(e.payload()).unwrap();
            let Some(etherparse::NetSlice::Ipv4(t)) = &theirs.net else { panic!() };
            prop_assert_eq!((ip.src(), ip.dst()), (t.header().source(), t.header().destination()));
            prop_assert_eq!((ip.ttl(), ip.protocol()), (t.header().ttl(), 17));
            prop_assert_eq!(ip.checksum(), t.header().header_checksum());
            prop_assert!(ip.verify_checksum());
            let ph = PseudoHeader::V4 { src: ip.src(), dst: ip.dst() };
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            let Some(etherparse::TransportSlice::Udp(u)) = &theirs.transport else { panic!() };
            prop_assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (u.source_port(), u.destination_port(), u.length()));
            prop_assert_eq!(udp.checksum(), u.checksum());
            prop_assert!(udp.verify_checksum(&ph));
            // Ours written from scratch equals theirs.
            let mut copy = ip.payload().to_vec();
            UdpPacket::new_checked(&mut copy[..]).unwrap().fill_checksum(&ph);
            prop_assert_eq!(&copy[..], ip.payload());
        }
    }

    /// Every well-formed header cut short anywhere inside its header is an error.
    #[test]
    fn truncated_headers_are_errors(payload in proptest::collection::vec(any::<u8>(), 0..40)) {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([1, 2, 3, 4], [5, 6, 7, 8], 9).udp(1, 2)
            .write(&mut f, &payload).unwrap();
        let ip = &f[14..];
        for cut in 0..ip.len() {
            prop_assert!(Ipv4Packet::new_checked(&ip[..cut]).is_err(), "ipv4 cut at {}", cut);
        }
        let udp = &ip[20..];
        for cut in 0..udp.len() {
            prop_assert!(UdpPacket::new_checked(&udp[..cut]).is_err(), "udp cut at {}", cut);
        }
        let mut t = Vec::new();
        PacketBuilder::ipv6([1; 16], [2; 16], 9).tcp(1, 2, 3, 4).write(&mut t, &payload).unwrap();
        for cut in 0..t.len() {
            prop_assert!(Ipv6Packet::new_checked(&t[..cut]).is_err(), "ipv6 cut at {}", cut);
        }
        for cut in 0..20 {
            prop_assert!(TcpPacket::new_checked(&t[40..40 + cut]).is_err(), "tcp cut at {}", cut);
        }
    }
}
