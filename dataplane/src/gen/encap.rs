//! Tunnel outer headers for `ferroplane gen`: VXLAN, Geneve or IP-in-IP around the templates,
//! so that the rig can load a tunnel endpoint.
//!
//! # Frame layout
//!
//! ```text
//! vxlan:  Ethernet | IPv4/IPv6 | UDP | VXLAN (8)            | inner Ethernet | inner IP | L4 | trailer | pad
//! geneve: Ethernet | IPv4/IPv6 | UDP | Geneve (8 + options) | inner Ethernet | inner IP | L4 | trailer | pad
//! ipip:   Ethernet | IPv4/IPv6 |                                               inner IP | L4 | trailer | pad
//! ```
//!
//! The inner frame is the template's own frame (for IP-in-IP, its IP packet: the inner
//! Ethernet header goes). The outer headers are written by the dataplane's own encapsulation
//! ([`ferroplane_tunnels::encap::encapsulate`]), so they are exactly those ferroplane sends on a
//! tunnel: IPv4 outer with DF, ID 0 and a zero UDP checksum (RFC 7348 5); IPv6 outer with the
//! flow label from the inner flow (RFC 6438) and a computed UDP checksum; the UDP source port
//! from the inner flow hash (49152-65535, RFC 7348 5), so every inner flow is its own outer flow
//! for the underlay's ECMP. They are built once per (flow, size) like the rest of the template;
//! per packet, the IPv6 outer UDP checksum is updated incrementally (RFC 1624) from the stamped
//! bytes and the inner checksum's change (see [`super::template::Frames::write`]).
//!
//! # Sizes
//!
//! `--size` is the *inner* frame size, the frame as the overlay carries it (for IP-in-IP: as it
//! would be on Ethernet, so its IP packet is `size - 18` bytes): "64-byte frames through a VXLAN
//! endpoint" means 64-byte inner frames, and an IMIX is an inner IMIX. Every frame on the wire
//! is [`Encap::overhead`] bytes longer (VXLAN 50 over IPv4, 70 over IPv6; Geneve the same plus
//! its options; IP-in-IP 20 or 40), and rates in bps, the report's bit rates and the TX byte
//! counts use that real wire size.

use std::net::IpAddr;
use std::sync::Mutex;

use ferroplane_hugepages::Policy;
use ferroplane_pipeline::flow::addr_from_ip;
use ferroplane_pipeline::meta::Meta;
use ferroplane_pipeline::pool::Pool;
use ferroplane_pipeline::tunnel::{Tunnel, TunnelKind};
use ferroplane_tunnels::{encap, geneve, vxlan};

use crate::config::tunnel::MAX_GENEVE_OPTIONS;

/// Bytes of the Ethernet header (outer, and inner for VXLAN/Geneve).
const ETH: usize = 14;
/// Seed of the inner flow hash that picks the outer UDP source port and IPv6 flow label.
const HASH_SEED: u64 = 0x6765_6e5f_656e_6370;

/// What to wrap the templates in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encap {
    pub kind: TunnelKind,
    /// Outer source (gen's end of the tunnel).
    pub local: IpAddr,
    /// Outer destination: the tunnel endpoint under test.
    pub remote: IpAddr,
    /// VXLAN / Geneve network identifier (24 bits).
    pub vni: u32,
    /// VXLAN / Geneve UDP destination port.
    pub dst_port: u16,
    /// Geneve options, encoded as TLVs (see [`parse_geneve_option`]).
    pub options: Vec<u8>,
    /// Inner Ethernet addresses (VXLAN / Geneve): the destination is the tunnel interface's
    /// MAC at the endpoint under test.
    pub inner_src_mac: [u8; 6],
    pub inner_dst_mac: [u8; 6],
    /// Outer TTL / hop limit.
    pub ttl: u8,
}

impl Encap {
    /// The default UDP destination port of `kind` (IANA: VXLAN 4789, Geneve 6081).
    pub fn default_port(kind: TunnelKind) -> u16 {
        match kind {
            TunnelKind::Vxlan => vxlan::PORT,
            TunnelKind::Geneve => geneve::PORT,
            TunnelKind::Ipip => 0,
        }
    }

    /// Checks families, the VNI and the options.
    pub fn validate(&self) -> Result<(), String> {
        if self.local.is_ipv4() != self.remote.is_ipv4() {
            return Err(format!(
                "--encap-local {} and --encap-remote {} are of different address families",
                self.local, self.remote
            ));
        }
        if self.kind != TunnelKind::Ipip && self.vni > vxlan::MAX_VNI {
            return Err(format!(
                "--vni {} does not fit in 24 bits (max {})",
                self.vni,
                vxlan::MAX_VNI
            ));
        }
        if self.kind != TunnelKind::Geneve && !self.options.is_empty() {
            return Err("--geneve-option needs --encap geneve".into());
        }
        if self.options.len() > MAX_GENEVE_OPTIONS {
            return Err(format!(
                "Geneve options take {} bytes; at most {MAX_GENEVE_OPTIONS} fit the packet headroom",
                self.options.len()
            ));
        }
        Ok(())
    }

    fn outer_v6(&self) -> bool {
        self.remote.is_ipv6()
    }

    /// Bytes every frame gains on the wire: outer Ethernet, IP, UDP and VXLAN/Geneve header
    /// (the inner Ethernet header stays); for IP-in-IP the outer IP header alone (the outer
    /// Ethernet header replaces the inner one).
    pub fn overhead(&self) -> usize {
        let ip = if self.outer_v6() { 40 } else { 20 };
        match self.kind {
            TunnelKind::Vxlan => ETH + ip + 8 + vxlan::HEADER_LEN,
            TunnelKind::Geneve => ETH + ip + 8 + geneve::HEADER_LEN + self.options.len(),
            TunnelKind::Ipip => ip,
        }
    }

    /// Offset in the wrapped frame of the outer UDP checksum when it must be kept valid per
    /// packet (IPv6 outer, VXLAN/Geneve), else None (IPv4 outer sends zero, IP-in-IP has none).
    pub(crate) fn outer_udp_checksum(&self) -> Option<usize> {
        (self.outer_v6() && self.kind != TunnelKind::Ipip).then_some(ETH + 40 + 6)
    }

    /// Short description for messages: `vxlan over IPv4 (+50 bytes)`.
    pub fn describe(&self) -> String {
        let ip = if self.outer_v6() { "IPv6" } else { "IPv4" };
        format!("{} over {ip} (+{} bytes of outer headers)", self.kind.name(), self.overhead())
    }

    /// The tunnel the dataplane's encapsulation needs.
    fn tunnel(&self) -> Tunnel {
        Tunnel {
            name: "gen".into(),
            kind: self.kind,
            iface: 0,
            local: addr_from_ip(self.local),
            remote: Some(addr_from_ip(self.remote)),
            vni: self.vni,
            dst_port: self.dst_port,
            ttl: self.ttl,
            udp_checksum6: true,
            options: self.options.clone(),
        }
    }

    /// Wraps the Ethernet frame `inner` (whole, padding included) into `out`: inner MACs set
    /// (VXLAN/Geneve), outer headers by the dataplane's encapsulation, outer MACs `src_mac` ->
    /// `dst_mac`. Build time only (takes a lock and a scratch buffer).
    pub(crate) fn wrap(
        &self,
        inner: &[u8],
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        static SCRATCH: Mutex<Option<Pool>> = Mutex::new(None);
        let mut guard = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(Pool::new(1, Policy::SmallOnly).map_err(|e| e.to_string())?);
        }
        let pool = guard.as_mut().expect("set above");
        let mut p = pool.alloc().ok_or("scratch buffer in use")?;
        let r = self.wrap_in(&mut p, inner, src_mac, dst_mac, out);
        pool.free(p);
        r
    }

    fn wrap_in(
        &self,
        p: &mut ferroplane_pipeline::buf::PacketBuf,
        inner: &[u8],
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        p.fill_from(inner).map_err(|_| {
            format!(
                "an inner frame of {} bytes plus {} bytes of outer headers does not fit gen's \
                 {}-byte buffers",
                inner.len(),
                self.overhead(),
                ferroplane_pipeline::buf::FRAME_SIZE - ferroplane_pipeline::buf::HEADROOM
            )
        })?;
        if self.kind.l2() {
            let d = p.data_mut();
            d[0..6].copy_from_slice(&self.inner_dst_mac);
            d[6..12].copy_from_slice(&self.inner_src_mac);
        }
        // The inner flow hash, as the dataplane computes it: the outer source port and IPv6
        // flow label follow the inner flow.
        let mut meta = Meta::default();
        ferroplane_pipeline::parse::parse(p.data(), &mut meta, HASH_SEED)
            .map_err(|e| format!("inner frame does not parse: {e:?}"))?;
        encap::encapsulate(p, &self.tunnel(), &addr_from_ip(self.remote), meta.flow_hash)
            .map_err(|e| format!("encapsulation failed: {e:?}"))?;
        out.clear();
        out.extend_from_slice(p.data());
        out[0..6].copy_from_slice(&dst_mac);
        out[6..12].copy_from_slice(&src_mac);
        Ok(())
    }
}

/// Parses `--encap`: vxlan, geneve or ipip.
pub fn parse_kind(s: &str) -> Result<TunnelKind, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "vxlan" => Ok(TunnelKind::Vxlan),
        "geneve" => Ok(TunnelKind::Geneve),
        "ipip" | "ip-in-ip" => Ok(TunnelKind::Ipip),
        _ => Err(format!("--encap {s:?}: expected vxlan, geneve or ipip")),
    }
}

/// Parses one `--geneve-option CLASS:TYPE:HEX` (class and type decimal or 0x-hex; data hex, a
/// multiple of 4 bytes, at most 124, may be empty) and appends its TLV to `out`.
pub fn parse_geneve_option(s: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let bad = |why: &str| {
        format!("--geneve-option {s:?}: {why} (expected CLASS:TYPE:HEX, e.g. 0x0102:0x80:0a0b0c0d)")
    };
    let mut it = s.split(':');
    let (Some(c), Some(t), Some(d), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(bad("three fields separated by `:`"));
    };
    let num = |v: &str| -> Option<u32> {
        let v = v.trim();
        match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        }
    };
    let class = num(c).filter(|&c| c <= 0xffff).ok_or_else(|| bad("class is 0..=65535"))?;
    let kind = num(t).filter(|&t| t <= 0xff).ok_or_else(|| bad("type is 0..=255"))?;
    let d = d.trim();
    let d = d.strip_prefix("0x").unwrap_or(d);
    let data: Option<Vec<u8>> = if d.len() % 2 != 0 {
        None
    } else {
        (0..d.len()).step_by(2).map(|i| u8::from_str_radix(d.get(i..i + 2)?, 16).ok()).collect()
    };
    let data = data
        .filter(|b| b.len() % 4 == 0 && b.len() <= 31 * 4)
        .ok_or_else(|| bad("data is hex, a multiple of 4 bytes, at most 124 bytes"))?;
    let opt = geneve::Opt { class: class as u16, kind: kind as u8, data: &data };
    // The dataplane's Geneve encoder writes the TLV: take the options part of its header.
    let mut h = vec![0u8; geneve::HEADER_LEN + 4 + data.len()];
    let n = geneve::emit(&mut h, 0, geneve::PROTO_ETHERNET, &[opt])
        .ok_or_else(|| bad("does not encode"))?;
    out.extend_from_slice(&h[geneve::HEADER_LEN..n]);
    Ok(())
}

/// Where [`read_trailer`](super::template::read_trailer) looks into tunnels: the UDP ports of
/// VXLAN and Geneve (IP-in-IP needs none: protocols 4 and 41).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unwrap {
    pub vxlan_port: u16,
    pub geneve_port: u16,
}

impl Default for Unwrap {
    fn default() -> Self {
        Unwrap { vxlan_port: vxlan::PORT, geneve_port: geneve::PORT }
    }
}

impl Unwrap {
    /// The standard ports, with `encap`'s port for its kind.
    pub fn for_encap(encap: Option<&Encap>) -> Unwrap {
        let mut u = Unwrap::default();
        match encap.map(|e| (e.kind, e.dst_port)) {
            Some((TunnelKind::Vxlan, p)) => u.vxlan_port = p,
            Some((TunnelKind::Geneve, p)) => u.geneve_port = p,
            _ => {}
        }
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::template::{read_trailer, Frames, Proto, TemplateSpec, FCS};
    use ferroplane_pipeline::checksum;

    const OUTER_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const OUTER_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    const INNER_SRC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x0a];
    const INNER_DST: [u8; 6] = [0x02, 0, 0, 0, 1, 0x0b];

    fn options() -> Vec<u8> {
        let mut o = Vec::new();
        parse_geneve_option("0x0102:0x01:0a0b0c0d", &mut o).unwrap();
        parse_geneve_option("258:3:", &mut o).unwrap();
        parse_geneve_option("0xffff:0x11:0102030405060708", &mut o).unwrap();
        o
    }

    fn encap(kind: TunnelKind, v6: bool) -> Encap {
        let (local, remote) =
            if v6 { ("fd00:1::2", "fd00:1::1") } else { ("192.0.2.2", "192.0.2.1") };
        Encap {
            kind,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            vni: if kind == TunnelKind::Ipip { 0 } else { 0xab_cdef },
            dst_port: Encap::default_port(kind),
            options: if kind == TunnelKind::Geneve { options() } else { Vec::new() },
            inner_src_mac: INNER_SRC,
            inner_dst_mac: INNER_DST,
            ttl: 33,
        }
    }

    fn all_encaps() -> Vec<Encap> {
        let mut v = Vec::new();
        for kind in [TunnelKind::Vxlan, TunnelKind::Geneve, TunnelKind::Ipip] {
            for v6 in [false, true] {
                v.push(encap(kind, v6));
            }
        }
        v
    }

    fn spec(proto: Proto, inner_v6: bool, flows: u32, e: Option<Encap>) -> TemplateSpec {
        let (src, dst) = if inner_v6 {
            ("fd10::1-fd10::4", "fd11::1-fd11::3")
        } else {
            ("10.0.0.1-10.0.0.4", "10.1.0.1-10.1.0.3")
        };
        TemplateSpec {
            proto,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: "1024-1027".parse().unwrap(),
            dst_port: "9-10".parse().unwrap(),
            flows,
            src_mac: OUTER_SRC,
            dst_mac: OUTER_DST,
            ttl: 64,
            encap: e,
        }
    }

    #[test]
    fn geneve_options_parse_to_tlvs_and_bad_ones_are_refused() {
        let mut o = Vec::new();
        parse_geneve_option("0x0102:0x80:0a0b0c0d", &mut o).unwrap();
        assert_eq!(o, [0x01, 0x02, 0x80, 0x01, 0x0a, 0x0b, 0x0c, 0x0d]);
        parse_geneve_option("7:1:", &mut o).unwrap();
        assert_eq!(o[8..], [0, 7, 1, 0]);
        for bad in ["1:2", "1:2:3:4", "0x10000:1:", "1:256:", "1:1:0a0b0c", "1:1:zz", "x:1:"] {
            let e = parse_geneve_option(bad, &mut Vec::new()).unwrap_err();
            assert!(e.contains("CLASS:TYPE:HEX"), "{bad}: {e}");
        }
        assert!(parse_geneve_option(&format!("1:1:{}", "00".repeat(128)), &mut o).is_err());
        assert_eq!(parse_kind("VXLAN").unwrap(), TunnelKind::Vxlan);
        assert_eq!(parse_kind("geneve").unwrap(), TunnelKind::Geneve);
        assert_eq!(parse_kind("ipip").unwrap(), TunnelKind::Ipip);
        assert!(parse_kind("gre").unwrap_err().contains("vxlan, geneve or ipip"));
    }

    #[test]
    fn bad_encap_specs_are_errors() {
        let mut e = encap(TunnelKind::Vxlan, false);
        e.remote = "fd00::1".parse().unwrap();
        assert!(e.validate().unwrap_err().contains("address families"));
        let mut e = encap(TunnelKind::Vxlan, false);
        e.vni = 1 << 24;
        assert!(e.validate().unwrap_err().contains("24 bits"));
        let mut e = encap(TunnelKind::Vxlan, false);
        e.options = options();
        assert!(e.validate().unwrap_err().contains("--encap geneve"));
        let mut e = encap(TunnelKind::Geneve, true);
        e.options = vec![0; 128];
        assert!(e.validate().unwrap_err().contains("headroom"));
        // Through Frames::build too, before anything is built.
        let s = spec(Proto::Udp, false, 1, Some(e));
        assert!(Frames::build(&s, &[128], 1500).unwrap_err().contains("headroom"));
    }

    /// `--size` is the inner frame size; the wire carries the outer headers on top, and the
    /// MTU bounds the outer packet.
    #[test]
    fn sizes_are_inner_sizes_and_the_wire_adds_the_overhead() {
        let expect = [
            (TunnelKind::Vxlan, false, 50),
            (TunnelKind::Vxlan, true, 70),
            (TunnelKind::Geneve, false, 50 + 24),
            (TunnelKind::Geneve, true, 70 + 24),
            (TunnelKind::Ipip, false, 20),
            (TunnelKind::Ipip, true, 40),
        ];
        for (kind, v6, overhead) in expect {
            let e = encap(kind, v6);
            assert_eq!(e.overhead(), overhead, "{}", e.describe());
            let s = spec(Proto::Udp, false, 2, Some(e.clone()));
            let f = Frames::build(&s, &[64, 512], 1500).unwrap();
            assert_eq!(f.overhead(), overhead);
            assert_eq!(f.len_of(0), 64 - FCS + overhead);
            assert_eq!(f.len_of(2), 512 - FCS + overhead);
            // Largest inner size: the outer IP packet is exactly the MTU.
            let max = 1500 + 14 + FCS - overhead;
            let f = Frames::build(&s, &[max], 1500).unwrap();
            let mut out = Vec::new();
            f.write(0, 1, 2, &mut out);
            assert_eq!(out.len() - 14, 1500, "{}", e.describe());
            let err = Frames::build(&s, &[max + 1], 1500).unwrap_err();
            assert!(err.contains(&format!("maximum {max}")) && err.contains(kind.name()), "{err}");
            // The minimum stays the template's own.
            let err = Frames::build(&s, &[61], 1500).unwrap_err();
            assert!(err.contains("minimum 62"), "{err}");
            // gen's buffers bound the wire frame (no jumbo tunnel frames beyond them).
            let err = Frames::build(&s, &[8000], 9000).unwrap_err();
            assert!(err.contains("buffers"), "{err}");
        }
    }

    /// Frames of every kind x outer family x inner family x protocol x a few sizes, each
    /// stamped with a different sequence and timestamp.
    fn corpus() -> Vec<(Encap, Proto, bool, Vec<u8>, u64, u64)> {
        let mut v = Vec::new();
        for e in all_encaps() {
            for inner_v6 in [false, true] {
                for proto in [Proto::Udp, Proto::TcpSyn, Proto::Icmp] {
                    let s = spec(proto, inner_v6, 3, Some(e.clone()));
                    let min = Frames::min_size(&s);
                    let f = Frames::build(&s, &[min, 300, 1400], 1500).unwrap();
                    for n in 0..f.cycle_len() {
                        let seq = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) & template_max_seq();
                        let ts = !n.wrapping_mul(0x1234_5678_9abc_def1);
                        let mut out = Vec::new();
                        f.write(n, seq, ts, &mut out);
                        assert_eq!(out.len(), f.len_of(n));
                        v.push((e.clone(), proto, inner_v6, out, seq, ts));
                    }
                }
            }
        }
        v
    }

    fn template_max_seq() -> u64 {
        crate::gen::template::MAX_SEQ
    }

    /// The outer UDP checksum of an IPv6-outer VXLAN/Geneve frame verifies by recomputation.
    fn outer_udp6_verifies(frame: &[u8]) -> bool {
        let ip = &frame[14..54];
        let (src, dst): ([u8; 16], [u8; 16]) =
            (ip[8..24].try_into().unwrap(), ip[24..40].try_into().unwrap());
        let seg = &frame[54..];
        let ph = checksum::pseudo_header_v6(&src, &dst, 17, seg.len() as u32);
        checksum::finish(checksum::combine(ph, checksum::sum(seg))) == 0 && frame[60..62] != [0, 0]
    }

    #[test]
    fn trailer_found_wrapped_and_unwrapped_and_outer_checksums_hold() {
        for (e, proto, inner_v6, out, seq, ts) in corpus() {
            let ctx = format!("{} {proto:?} inner_v6={inner_v6}", e.describe());
            assert_eq!(read_trailer(&out), Some((seq, ts)), "{ctx}");
            assert_eq!(Unwrap::for_encap(Some(&e)).read(&out), Some((seq, ts)), "{ctx}");
            assert_eq!(&out[0..6], &OUTER_DST, "{ctx}");
            assert_eq!(&out[6..12], &OUTER_SRC, "{ctx}");
            let oh = e.overhead();
            // Decapsulated by the device under test: the template alone.
            let inner = if e.kind.l2() {
                out[oh..].to_vec()
            } else {
                let mut f = vec![0u8; 12];
                f.extend_from_slice(if inner_v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
                f.extend_from_slice(&out[oh + 14..]);
                f
            };
            assert_eq!(read_trailer(&inner), Some((seq, ts)), "{ctx}");
            if e.kind.l2() {
                assert_eq!(&inner[0..6], &INNER_DST, "{ctx}");
                assert_eq!(&inner[6..12], &INNER_SRC, "{ctx}");
            }
            if e.outer_v6() && e.kind.l2() {
                assert!(outer_udp6_verifies(&out), "{ctx}");
            }
            if !e.outer_v6() {
                assert!(checksum::verifies_ipv4_header(&out[14..34]), "{ctx}");
            }
        }
    }

    #[test]
    fn non_standard_ports_need_the_unwrap_for_them() {
        let mut e = encap(TunnelKind::Vxlan, false);
        e.dst_port = 8472;
        let f = Frames::build(&spec(Proto::Udp, false, 1, Some(e.clone())), &[128], 1500).unwrap();
        let mut out = Vec::new();
        f.write(0, 77, 88, &mut out);
        assert_eq!(read_trailer(&out), None);
        assert_eq!(Unwrap::for_encap(Some(&e)).read(&out), Some((77, 88)));
        let mut e = encap(TunnelKind::Geneve, true);
        e.dst_port = 7000;
        let f = Frames::build(&spec(Proto::Udp, true, 1, Some(e.clone())), &[128], 1500).unwrap();
        f.write(0, 5, 6, &mut out);
        assert_eq!(read_trailer(&out), None);
        assert_eq!(Unwrap::for_encap(Some(&e)).read(&out), Some((5, 6)));
        // Truncated anywhere inside the headers: not ours, no panic.
        for cut in 0..out.len() - 100 {
            assert_eq!(Unwrap::for_encap(Some(&e)).read(&out[..cut]), None, "cut {cut}");
        }
    }

    #[test]
    fn outer_source_port_follows_the_inner_flow() {
        for kind in [TunnelKind::Vxlan, TunnelKind::Geneve] {
            let s = spec(Proto::Udp, false, 32, Some(encap(kind, false)));
            let f = Frames::build(&s, &[128, 256], 1500).unwrap();
            let mut ports = Vec::new();
            let mut out = Vec::new();
            for n in 0..64 {
                f.write(n, n, n, &mut out);
                let p = u16::from_be_bytes([out[34], out[35]]);
                assert!(p >= 0xc000, "source port {p} outside the dynamic range");
                ports.push(p);
            }
            // same flow, other size: same port
            assert_eq!(ports[..32], ports[32..]);
            let distinct: std::collections::HashSet<_> = ports.iter().collect();
            assert!(distinct.len() >= 24, "{} distinct ports for 32 flows", distinct.len());
        }
    }

    /// The IPv6 outer checksum stays valid for stamps that make the sums wrap or cancel.
    #[test]
    fn ipv6_outer_checksum_for_awkward_stamps() {
        for kind in [TunnelKind::Vxlan, TunnelKind::Geneve] {
            for proto in [Proto::Udp, Proto::TcpSyn, Proto::Icmp] {
                for inner_v6 in [false, true] {
                    let s = spec(proto, inner_v6, 1, Some(encap(kind, true)));
                    let f = Frames::build(&s, &[200], 1500).unwrap();
                    let mut out = Vec::new();
                    let stamps = [0, 1, u64::MAX, 0xffff, 0xffff_0000_ffff, 0x8000_8000_8000_8000];
                    for seq in stamps {
                        for ts in stamps {
                            f.write(0, seq, ts, &mut out);
                            assert!(outer_udp6_verifies(&out), "{kind:?} {proto:?} {seq} {ts}");
                        }
                    }
                }
            }
        }
    }

    /// Feeds hex frames to scapy on stdin, one per line; returns scapy's JSON line per frame.
    fn scapy(frames: &[Vec<u8>]) -> Vec<serde_json::Value> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        const PY: &str = r#"
import sys, json
from scapy.all import Ether, raw, IP, UDP, NoPayload, Raw
from scapy.layers.inet6 import IPv6
from scapy.layers.vxlan import VXLAN
from scapy.contrib.geneve import GENEVE
for line in sys.stdin:
    p = Ether(bytes.fromhex(line.strip()))
    ls, l = [], p
    while l is not None and not isinstance(l, NoPayload):
        ls.append(l); l = l.payload
    names = [type(x).__name__ for x in ls]
    # every checksum recomputed by scapy: clear them in a copy and rebuild (the IPv4-outer
    # UDP zero checksum is kept: it means "none")
    q = p.copy(); ql, l = [], q
    while l is not None and not isinstance(l, NoPayload):
        ql.append(l); l = l.payload
    sums = []
    for i, x in enumerate(ql):
        for f in ('chksum', 'cksum'):
            if f in x.fields and not (isinstance(x, UDP) and x.fields[f] == 0):
                sums.append((i, f, x.fields[f])); setattr(x, f, None)
    r = Ether(raw(q)); rl, l = [], r
    while l is not None and not isinstance(l, NoPayload):
        rl.append(l); l = l.payload
    bad = [(names[i], f, v, getattr(rl[i], f)) for (i, f, v) in sums if getattr(rl[i], f) != v]
    tun = next((x for x in ls if isinstance(x, (VXLAN, GENEVE))), None)
    opts = [[o.classid, o.type, bytes(o.data).hex()] for o in tun.options] if isinstance(tun, GENEVE) else []
    last = ls[-1]
    load = bytes(last.load) if isinstance(last, Raw) else bytes(getattr(last, 'data', b''))
    outer = ls[1]
    udp = ls[2] if isinstance(ls[2], UDP) else None
    print(json.dumps({
        'layers': names, 'bad': bad, 'len_ok': len(raw(p)) == len(bytes.fromhex(line.strip())),
        'vni': tun.vni if tun is not None else None, 'options': opts,
        'geneve_proto': tun.proto if isinstance(tun, GENEVE) else None,
        'vxlan_flags': int(tun.flags) if isinstance(tun, VXLAN) else None,
        'outer_udp_sum': udp.chksum if udp else None,
        'outer_dport': udp.dport if udp else None,
        'outer_ip_len': (outer.len if isinstance(outer, IP) else outer.plen + 40),
        'df': bool(outer.flags.DF) if isinstance(outer, IP) else None,
        'ttl': outer.ttl if isinstance(outer, IP) else outer.hlim,
        'magic': load[:2].hex(), 'seq': int.from_bytes(load[2:8], 'big'),
        'ts': int.from_bytes(load[8:16], 'big'),
    }))
"#;
        let mut child = Command::new("python3")
            .args(["-c", PY])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 is required by this test");
        let mut input = String::new();
        for f in frames {
            for b in f {
                input += &format!("{b:02x}");
            }
            input.push('\n');
        }
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(
            out.status.success(),
            "python3 with scapy is required by this test (pip install scapy): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), frames.len(), "scapy read a different number of frames");
        rows
    }

    #[test]
    fn scapy_parses_the_wrapped_frames_with_valid_checksums() {
        let corpus = corpus();
        let frames: Vec<Vec<u8>> = corpus.iter().map(|c| c.3.clone()).collect();
        let rows = scapy(&frames);
        for ((e, proto, inner_v6, out, seq, ts), row) in corpus.iter().zip(&rows) {
            let ctx = format!("{} {proto:?} inner_v6={inner_v6}: {row}", e.describe());
            let layers: Vec<&str> =
                row["layers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            let (oip, iip) =
                (if e.outer_v6() { "IPv6" } else { "IP" }, if *inner_v6 { "IPv6" } else { "IP" });
            let l4 = match (proto, inner_v6) {
                (Proto::Udp, _) => "UDP",
                (Proto::TcpSyn, _) => "TCP",
                (Proto::Icmp, false) => "ICMP",
                (Proto::Icmp, true) => "ICMPv6EchoRequest",
            };
            let want: Vec<&str> = match e.kind {
                TunnelKind::Vxlan => vec!["Ether", oip, "UDP", "VXLAN", "Ether", iip, l4],
                TunnelKind::Geneve => vec!["Ether", oip, "UDP", "GENEVE", "Ether", iip, l4],
                TunnelKind::Ipip => vec!["Ether", oip, iip, l4],
            };
            assert_eq!(layers[..want.len()], want[..], "{ctx}");
            assert_eq!(row["bad"].as_array().unwrap().len(), 0, "checksums: {ctx}");
            assert_eq!(row["magic"], "f59e", "{ctx}");
            assert_eq!(row["seq"].as_u64(), Some(*seq), "{ctx}");
            assert_eq!(row["ts"].as_u64(), Some(*ts), "{ctx}");
            assert_eq!(row["outer_ip_len"].as_u64(), Some(out.len() as u64 - 14), "{ctx}");
            assert_eq!(row["ttl"].as_u64(), Some(33), "{ctx}");
            if !e.outer_v6() {
                assert_eq!(row["df"], true, "{ctx}");
            }
            match e.kind {
                TunnelKind::Ipip => assert!(row["vni"].is_null(), "{ctx}"),
                _ => {
                    assert_eq!(row["vni"].as_u64(), Some(0xab_cdef), "{ctx}");
                    assert_eq!(row["outer_dport"].as_u64(), Some(e.dst_port as u64), "{ctx}");
                    let sum = row["outer_udp_sum"].as_u64().unwrap();
                    // IPv4 outer: zero (RFC 7348); IPv6: computed (and checked above).
                    assert_eq!(sum == 0, !e.outer_v6(), "{ctx}");
                }
            }
            if e.kind == TunnelKind::Vxlan {
                assert_eq!(row["vxlan_flags"].as_u64(), Some(0x08), "{ctx}");
            }
            if e.kind == TunnelKind::Geneve {
                assert_eq!(row["geneve_proto"].as_u64(), Some(0x6558), "{ctx}");
                let opts = serde_json::json!([
                    [0x0102, 0x01, "0a0b0c0d"],
                    [258, 3, ""],
                    [0xffff, 0x11, "0102030405060708"]
                ]);
                assert_eq!(row["options"], opts, "{ctx}");
            }
        }
        // scapy does flag a bad checksum: corrupt the last byte of a few frames.
        let bad: Vec<Vec<u8>> = frames
            .iter()
            .step_by(7)
            .map(|f| {
                let mut f = f.clone();
                let at = f.len() - 1;
                f[at] ^= 1;
                f
            })
            .collect();
        for row in scapy(&bad) {
            assert!(!row["bad"].as_array().unwrap().is_empty(), "corruption not detected: {row}");
        }
    }
}
