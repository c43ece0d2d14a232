//! Traffic templates of `ferroplane gen`: pre-built Ethernet frames (UDP, TCP SYN or ICMP echo
//! request, over IPv4 or IPv6) cycled per packet, each stamped with a measurement trailer.
//!
//! # Frame layout
//!
//! ```text
//! Ethernet (14) | IPv4 (20) or IPv6 (40) | L4 header | trailer (20) | zero padding | [FCS (4)]
//! ```
//!
//! L4 headers: UDP 8 bytes; TCP 20 bytes (SYN, data offset 5, window 65535, sequence number =
//! low 32 bits of the packet sequence); ICMP/ICMPv6 echo request 8 bytes (identifier from the
//! flow, sequence number = low 16 bits of the packet sequence). The trailer is the first 16
//! bytes of the L4 payload (see [`TRAILER_LEN`]), so a 64-byte UDP or ICMP frame over IPv4
//! carries it (14 + 20 + 8 + 16 + 4 FCS = 62):
//!
//! ```text
//! offset 0  [TRAILER_MAGIC_OFFSET]  2 bytes  0xF5 0x9E          (TRAILER_MAGIC)
//! offset 2  [TRAILER_SEQ_OFFSET]    6 bytes  48-bit sequence    (big-endian)
//! offset 8  [TRAILER_TS_OFFSET]     8 bytes  u64 TX time in ns  (big-endian)
//! ```
//!
//! The magic and the sequence share one 64-bit word: 2^48 packets is 5 years at 1.5 Gpps.
//!
//! Frame sizes are Ethernet frame sizes *including* the 4-byte FCS (the port appends it): size
//! 64 is 60 bytes handed to the port. The smallest size a template can carry is its headers +
//! trailer + FCS ([`Frames::min_size`]), e.g. 62 for UDP over IPv4 (so the classic 64-byte
//! frame works), 74 for TCP over IPv4, 82 for UDP over IPv6; the largest is `mtu + 14 + FCS`.
//!
//! # Flows
//!
//! Flow `i` (0-based) takes its addresses and ports by walking the ranges as a mixed-radix
//! counter: source port fastest, then destination port, then source address, then destination
//! address. `flows` must not exceed the product of the range sizes, so every flow is a distinct
//! 5-tuple. ICMP has no ports: the source port range supplies the echo identifier and the
//! destination port range is ignored (it counts as one value).
//!
//! # Per-packet cost
//!
//! [`Frames::build`] computes every header and checksum once per (flow, distinct size). The TX
//! loop calls [`Frames::write`], which copies the pre-built bytes, zero-fills the padding, stamps
//! the 16 bytes of sequence + timestamp (and the TCP / ICMP sequence field) and updates the L4
//! checksum incrementally (RFC 1624) from the stamped bytes only — no allocation when the output
//! buffer has capacity, and no re-summing of the packet. Pre-built frames carry zeros where the
//! stamp goes, so the update is `HC' = ~(~HC + m')`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ferroplane_pipeline::checksum::{checksum, combine, finish, sum};

use super::encap::{Encap, Unwrap};

/// Bytes of the Ethernet FCS, counted in frame sizes but not handed to the port.
pub const FCS: usize = 4;
/// Bytes of the (untagged) Ethernet header the templates build.
pub const ETH_HEADER_LEN: usize = 14;
/// The magic opening the trailer.
pub const TRAILER_MAGIC: [u8; 2] = [0xf5, 0x9e];
/// Offset of [`TRAILER_MAGIC`] in the trailer (the trailer starts the L4 payload).
pub const TRAILER_MAGIC_OFFSET: usize = 0;
/// Offset in the trailer of the big-endian u64 packet sequence.
pub const TRAILER_SEQ_OFFSET: usize = 2;
/// Offset in the trailer of the big-endian u64 TX timestamp in nanoseconds.
pub const TRAILER_TS_OFFSET: usize = 8;
/// Bytes of the measurement trailer: 4 magic + 8 sequence + 8 timestamp.
pub const TRAILER_LEN: usize = 16;
/// Largest sequence number the trailer holds (48 bits).
pub const MAX_SEQ: u64 = (1 << 48) - 1;
/// TCP window advertised by the SYN template.
pub const TCP_WINDOW: u16 = 65535;
/// Upper bound on the memory of pre-built frames (flows × distinct sizes × header bytes).
pub const MAX_PREBUILT_BYTES: usize = 1 << 30;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6_IN_IP: u8 = 41;
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;

/// The L4 protocol of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// UDP datagrams.
    Udp,
    /// TCP segments with only SYN set (a SYN flood / connection-rate template).
    TcpSyn,
    /// ICMP echo requests (ICMPv6 over IPv6).
    Icmp,
}

impl Proto {
    /// Bytes of the L4 header this template writes before the trailer.
    pub fn l4_header_len(self) -> usize {
        match self {
            Proto::Udp => 8,
            Proto::TcpSyn => 20,
            Proto::Icmp => 8,
        }
    }

    fn ip_number(self, v6: bool) -> u8 {
        match self {
            Proto::Udp => IPPROTO_UDP,
            Proto::TcpSyn => IPPROTO_TCP,
            Proto::Icmp if v6 => IPPROTO_ICMPV6,
            Proto::Icmp => IPPROTO_ICMP,
        }
    }
}

impl FromStr for Proto {
    type Err = String;

    /// "udp", "tcp" (SYN; "tcp-syn" and "syn" are accepted too) or "icmp", any case.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "udp" => Ok(Proto::Udp),
            "tcp" | "tcp-syn" | "syn" => Ok(Proto::TcpSyn),
            "icmp" | "icmpv6" => Ok(Proto::Icmp),
            _ => Err(format!("unknown protocol {s:?}: expected udp, tcp or icmp")),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Udp => "udp",
            Proto::TcpSyn => "tcp",
            Proto::Icmp => "icmp",
        })
    }
}

/// An inclusive range of addresses or ports. Parses from `"FIRST-LAST"` or a single value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Range<T> {
    pub first: T,
    pub last: T,
}

impl<T: Copy> Range<T> {
    /// The range holding only `v`.
    pub fn single(v: T) -> Self {
        Range { first: v, last: v }
    }
}

/// Values that a [`Range`] can walk: a position on a number line, and back.
trait Walk: Copy {
    fn ordinal(self) -> u128;
    fn at(self, ordinal: u128) -> Self;
}

impl Walk for u16 {
    fn ordinal(self) -> u128 {
        self as u128
    }
    fn at(self, ordinal: u128) -> Self {
        ordinal as u16
    }
}

impl Walk for IpAddr {
    fn ordinal(self) -> u128 {
        match self {
            IpAddr::V4(a) => u32::from(a) as u128,
            IpAddr::V6(a) => u128::from(a),
        }
    }
    /// An address of the same family as `self`.
    fn at(self, ordinal: u128) -> Self {
        match self {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(ordinal as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(ordinal)),
        }
    }
}

fn count<T: Walk>(r: &Range<T>) -> u128 {
    let (a, b) = (r.first.ordinal(), r.last.ordinal());
    if a > b {
        0
    } else {
        (b - a).saturating_add(1)
    }
}

/// The `k`-th value of `r` (`k < count(r)`).
fn nth<T: Walk>(r: &Range<T>, k: u128) -> T {
    r.first.at(r.first.ordinal() + k)
}

macro_rules! range_len {
    ($t:ty) => {
        impl Range<$t> {
            /// Values in the range (saturating at `u128::MAX` for the whole IPv6 space; 0 when
            /// `first > last`).
            pub fn len(&self) -> u128 {
                count(self)
            }

            /// True when `first > last` (never for a parsed or validated range).
            pub fn is_empty(&self) -> bool {
                count(self) == 0
            }
        }
    };
}
range_len!(u16);
range_len!(IpAddr);

impl Range<IpAddr> {
    /// True when both ends are IPv6 addresses.
    pub fn is_ipv6(&self) -> bool {
        self.first.is_ipv6() && self.last.is_ipv6()
    }

    fn validate(&self, what: &str) -> Result<(), String> {
        if self.first.is_ipv4() != self.last.is_ipv4() {
            return Err(format!("{what} range {self}: both ends must be the same address family"));
        }
        if self.first.ordinal() > self.last.ordinal() {
            return Err(format!("{what} range {self}: first address is above the last"));
        }
        Ok(())
    }
}

impl Range<u16> {
    fn validate(&self, what: &str) -> Result<(), String> {
        if self.first > self.last {
            return Err(format!("{what} range {self}: first port is above the last"));
        }
        Ok(())
    }
}

fn split_range(s: &str) -> (&str, Option<&str>) {
    match s.split_once('-') {
        Some((a, b)) => (a.trim(), Some(b.trim())),
        None => (s.trim(), None),
    }
}

impl FromStr for Range<IpAddr> {
    type Err = String;

    /// `"10.0.0.1-10.0.0.9"`, `"fd00::1-fd00::ff"` or one address.
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |v: &str| {
            v.parse::<IpAddr>().map_err(|_| {
                format!("bad address range {s:?}: {v:?} is not an IPv4 or IPv6 address (expected ADDR or FIRST-LAST)")
            })
        };
        let (a, b) = split_range(s);
        let first = parse(a)?;
        let last = match b {
            Some(b) => parse(b)?,
            None => first,
        };
        let r = Range { first, last };
        r.validate("address")?;
        Ok(r)
    }
}

impl FromStr for Range<u16> {
    type Err = String;

    /// `"1024-2047"` or one port.
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |v: &str| {
            v.parse::<u16>().map_err(|_| {
                format!("bad port range {s:?}: {v:?} is not a port 0-65535 (expected PORT or FIRST-LAST)")
            })
        };
        let (a, b) = split_range(s);
        let first = parse(a)?;
        let last = match b {
            Some(b) => parse(b)?,
            None => first,
        };
        let r = Range { first, last };
        r.validate("port")?;
        Ok(r)
    }
}

impl<T: fmt::Display + PartialEq> fmt::Display for Range<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// What `ferroplane gen` sends: protocol, address and port ranges, flow count, MACs and TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    pub proto: Proto,
    pub src: Range<IpAddr>,
    pub dst: Range<IpAddr>,
    pub src_port: Range<u16>,
    pub dst_port: Range<u16>,
    /// Distinct 5-tuples cycled through (>= 1).
    pub flows: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// Outer tunnel headers around every frame (see [`super::encap`]); `src_mac` and
    /// `dst_mac` are then the outer Ethernet addresses.
    pub encap: Option<Encap>,
}

impl TemplateSpec {
    fn validate(&self) -> Result<(), String> {
        self.src.validate("source address")?;
        self.dst.validate("destination address")?;
        self.src_port.validate("source port")?;
        self.dst_port.validate("destination port")?;
        if self.src.first.is_ipv4() != self.dst.first.is_ipv4() {
            return Err(format!(
                "source addresses {} and destination addresses {} are of different address families",
                self.src, self.dst
            ));
        }
        if self.flows == 0 {
            return Err("flows must be at least 1".to_string());
        }
        if let Some(e) = &self.encap {
            e.validate()?;
        }
        let (sp, dp, sa, da) = self.radices();
        let tuples = sp.saturating_mul(dp).saturating_mul(sa).saturating_mul(da);
        if self.flows as u128 > tuples {
            let ports = if self.proto == Proto::Icmp {
                format!("{sp} ICMP identifiers (source ports)")
            } else {
                format!("{sp} source ports × {dp} destination ports")
            };
            return Err(format!(
                "{} flows requested but the ranges produce only {tuples} distinct 5-tuples \
                 ({ports} × {sa} source addresses × {da} destination addresses)",
                self.flows
            ));
        }
        Ok(())
    }

    /// Sizes of the mixed-radix digits: src port, dst port, src address, dst address.
    fn radices(&self) -> (u128, u128, u128, u128) {
        let dp = if self.proto == Proto::Icmp { 1 } else { self.dst_port.len() };
        (self.src_port.len(), dp, self.src.len(), self.dst.len())
    }

    /// The 5-tuple of flow `i`: the ranges walked as a mixed-radix counter.
    fn tuple(&self, i: u32) -> Tuple {
        let (nsp, ndp, nsa, nda) = self.radices();
        let mut k = i as u128;
        let sp = k % nsp;
        k /= nsp;
        let dp = k % ndp;
        k /= ndp;
        let sa = k % nsa;
        k /= nsa;
        let da = k % nda;
        Tuple {
            src: nth(&self.src, sa),
            dst: nth(&self.dst, da),
            src_port: nth(&self.src_port, sp),
            dst_port: nth(&self.dst_port, dp),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Tuple {
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
}

/// Offsets of one template's fields in its frames.
#[derive(Debug, Clone, Copy)]
struct Layout {
    proto: Proto,
    v6: bool,
    /// Start of the L4 header.
    l4: usize,
    /// Start of the trailer (the L4 payload).
    trailer: usize,
    /// Bytes of headers + trailer: the pre-built part of every frame; the rest is zeros.
    head_len: usize,
    /// Offset of the L4 checksum field.
    csum: usize,
    /// Bytes of outer tunnel headers in front of the template's frame (0: no tunnel); every
    /// offset above includes it.
    shift: usize,
    /// Offset of an outer UDP checksum kept valid per packet (IPv6 outer), 0 for none.
    outer_csum: usize,
}

impl Layout {
    fn new(proto: Proto, v6: bool) -> Layout {
        let l4 = ETH_HEADER_LEN + if v6 { IPV6_HEADER_LEN } else { IPV4_HEADER_LEN };
        let trailer = l4 + proto.l4_header_len();
        let csum = l4
            + match proto {
                Proto::Udp => 6,
                Proto::TcpSyn => 16,
                Proto::Icmp => 2,
            };
        Layout {
            proto,
            v6,
            l4,
            trailer,
            head_len: trailer + TRAILER_LEN,
            csum,
            shift: 0,
            outer_csum: 0,
        }
    }

    /// The layout of the same template inside `encap`'s outer headers.
    fn wrapped(self, encap: &Encap) -> Layout {
        let shift = encap.overhead();
        Layout {
            l4: self.l4 + shift,
            trailer: self.trailer + shift,
            head_len: self.head_len + shift,
            csum: self.csum + shift,
            shift,
            outer_csum: encap.outer_udp_checksum().unwrap_or(0),
            ..self
        }
    }

    fn min_size(&self) -> usize {
        self.head_len + FCS
    }

    fn describe(&self) -> String {
        let (ip, ip_len) = if self.v6 { ("IPv6", 40) } else { ("IPv4", 20) };
        let l4 = match (self.proto, self.v6) {
            (Proto::Udp, _) => "UDP",
            (Proto::TcpSyn, _) => "TCP",
            (Proto::Icmp, false) => "ICMP echo",
            (Proto::Icmp, true) => "ICMPv6 echo",
        };
        format!(
            "{} over {ip} ({ETH_HEADER_LEN} Ethernet + {ip_len} {ip} + {} {l4} + {TRAILER_LEN} trailer + {FCS} FCS)",
            self.proto,
            self.proto.l4_header_len()
        )
    }

    /// Writes the headers and trailer (sequence and timestamp zero) of a frame of `wire_len`
    /// bytes (without FCS) into `h` (`head_len` bytes), checksums included.
    fn build_head(&self, spec: &TemplateSpec, t: &Tuple, wire_len: usize, h: &mut [u8]) {
        debug_assert_eq!(h.len(), self.head_len);
        h.fill(0);
        h[0..6].copy_from_slice(&spec.dst_mac);
        h[6..12].copy_from_slice(&spec.src_mac);
        let ip = ETH_HEADER_LEN;
        let l4_len = wire_len - self.l4;
        let proto = self.proto.ip_number(self.v6);
        let pseudo = match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                h[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                let v4 = &mut h[ip..ip + IPV4_HEADER_LEN];
                v4[0] = 0x45;
                v4[2..4].copy_from_slice(&((wire_len - ip) as u16).to_be_bytes());
                v4[6] = 0x40; // DF; identification 0 (RFC 6864: atomic datagram)
                v4[8] = spec.ttl;
                v4[9] = proto;
                v4[12..16].copy_from_slice(&s.octets());
                v4[16..20].copy_from_slice(&d.octets());
                let c = checksum(v4);
                v4[10..12].copy_from_slice(&c.to_be_bytes());
                ferroplane_pipeline::checksum::pseudo_header_v4(
                    s.octets(),
                    d.octets(),
                    proto,
                    l4_len as u16,
                )
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                h[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
                let v6 = &mut h[ip..ip + IPV6_HEADER_LEN];
                v6[0] = 0x60;
                v6[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                v6[6] = proto;
                v6[7] = spec.ttl;
                v6[8..24].copy_from_slice(&s.octets());
                v6[24..40].copy_from_slice(&d.octets());
                ferroplane_pipeline::checksum::pseudo_header_v6(
                    &s.octets(),
                    &d.octets(),
                    proto,
                    l4_len as u32,
                )
            }
            _ => unreachable!("address families checked by TemplateSpec::validate"),
        };
        let l4 = self.l4;
        match self.proto {
            Proto::Udp => {
                h[l4..l4 + 2].copy_from_slice(&t.src_port.to_be_bytes());
                h[l4 + 2..l4 + 4].copy_from_slice(&t.dst_port.to_be_bytes());
                h[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            }
            Proto::TcpSyn => {
                h[l4..l4 + 2].copy_from_slice(&t.src_port.to_be_bytes());
                h[l4 + 2..l4 + 4].copy_from_slice(&t.dst_port.to_be_bytes());
                // sequence (l4+4) stamped per packet, ack 0
                h[l4 + 12] = 5 << 4; // data offset 5 words
                h[l4 + 13] = 0x02; // SYN
                h[l4 + 14..l4 + 16].copy_from_slice(&TCP_WINDOW.to_be_bytes());
            }
            Proto::Icmp => {
                h[l4] = if self.v6 { 128 } else { 8 }; // echo request, code 0
                h[l4 + 4..l4 + 6].copy_from_slice(&t.src_port.to_be_bytes()); // identifier
                                                                              // sequence number (l4+6) stamped per packet
            }
        }
        let tr = self.trailer + TRAILER_MAGIC_OFFSET;
        h[tr..tr + 2].copy_from_slice(&TRAILER_MAGIC);
        // The zero padding after the head adds nothing to the sum; the length is in the pseudo
        // header (and the L4 segment starts at an even offset, so word alignment holds).
        let body = sum(&h[l4..]);
        let acc = if self.proto == Proto::Icmp && !self.v6 { body } else { combine(pseudo, body) };
        let mut c = finish(acc);
        if self.proto == Proto::Udp && c == 0 {
            c = 0xffff; // RFC 768: zero means "no checksum"
        }
        h[self.csum..self.csum + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Every frame of a template pre-built: one per (flow, distinct size).
///
/// Packet `n` is flow `n % flows` with size `sizes[(n / flows) % sizes.len()]`: flows cycle
/// fastest, then the size list in its order (so an IMIX list that repeats sizes is honoured).
#[derive(Debug, Clone)]
pub struct Frames {
    layout: Layout,
    flows: u32,
    /// Distinct wire lengths (without FCS).
    wire_lens: Vec<usize>,
    /// Each entry of the size list as an index into `wire_lens`.
    order: Vec<u32>,
    /// `head_len` bytes per (flow, distinct size), flow-major: headers + trailer; the rest of
    /// each frame is zero padding.
    heads: Vec<u8>,
}

impl Frames {
    /// Builds one frame per (flow, size). `sizes` are Ethernet frame sizes including the FCS.
    pub fn build(spec: &TemplateSpec, sizes: &[usize], mtu: u16) -> Result<Frames, String> {
        spec.validate()?;
        // `inner`: the template's own frame; `layout`: where its fields are on the wire.
        let inner = Layout::new(spec.proto, spec.src.first.is_ipv6());
        let layout = match &spec.encap {
            Some(e) => inner.wrapped(e),
            None => inner,
        };
        if sizes.is_empty() {
            return Err("no frame sizes given".to_string());
        }
        let min = inner.min_size();
        // The outer IP packet must fit the MTU: sizes are inner sizes (see `super::encap`).
        let max = (mtu as usize + ETH_HEADER_LEN + FCS).saturating_sub(layout.shift);
        let mut wire_lens: Vec<usize> = Vec::new();
        let mut order = Vec::with_capacity(sizes.len());
        for &size in sizes {
            if size < min {
                return Err(format!(
                    "frame size {size} is below the minimum {min} for {} (sizes include the FCS)",
                    inner.describe()
                ));
            }
            if size > max {
                return Err(match &spec.encap {
                    None => format!(
                        "frame size {size} is above the maximum {max} for MTU {mtu} \
                         ({mtu} + {ETH_HEADER_LEN} Ethernet + {FCS} FCS)"
                    ),
                    Some(e) => format!(
                        "frame size {size} is above the maximum {max} for MTU {mtu} with {} \
                         (sizes are inner frame sizes: {mtu} + {ETH_HEADER_LEN} Ethernet + {FCS} \
                         FCS - {} of outer headers)",
                        e.describe(),
                        layout.shift
                    ),
                });
            }
            // On the wire (without FCS): the inner frame plus the outer headers.
            let wire = size - FCS + layout.shift;
            let d = match wire_lens.iter().position(|&w| w == wire) {
                Some(d) => d,
                None => {
                    wire_lens.push(wire);
                    wire_lens.len() - 1
                }
            };
            order.push(d as u32);
        }
        let bytes = spec.flows as u128 * wire_lens.len() as u128 * layout.head_len as u128;
        if bytes > MAX_PREBUILT_BYTES as u128 {
            return Err(format!(
                "{} flows × {} distinct sizes need {bytes} bytes of pre-built frames, \
                 more than the limit of {MAX_PREBUILT_BYTES}; use fewer flows or sizes",
                spec.flows,
                wire_lens.len()
            ));
        }
        let mut heads = vec![0u8; bytes as usize];
        let mut chunks = heads.chunks_exact_mut(layout.head_len);
        let (mut frame, mut wrapped) = (Vec::new(), Vec::new());
        for flow in 0..spec.flows {
            let t = spec.tuple(flow);
            for &wire in &wire_lens {
                let h = chunks.next().expect("sized above");
                let inner_len = wire - layout.shift;
                match &spec.encap {
                    None => inner.build_head(spec, &t, inner_len, h),
                    Some(e) => {
                        // The whole inner frame (lengths and the IPv6 outer checksum cover
                        // the padding), wrapped, then its head kept.
                        frame.clear();
                        frame.resize(inner_len, 0);
                        inner.build_head(spec, &t, inner_len, &mut frame[..inner.head_len]);
                        e.wrap(&frame, spec.src_mac, spec.dst_mac, &mut wrapped)?;
                        debug_assert_eq!(wrapped.len(), wire);
                        h.copy_from_slice(&wrapped[..layout.head_len]);
                    }
                }
            }
        }
        Ok(Frames { layout, flows: spec.flows, wire_lens, order, heads })
    }

    /// Bytes of outer tunnel headers on every frame (0 without `--encap`): the wire size of a
    /// frame is its `--size` plus this.
    pub fn overhead(&self) -> usize {
        self.layout.shift
    }

    /// The smallest frame size (including FCS) the template can carry: headers + trailer + FCS.
    pub fn min_size(spec: &TemplateSpec) -> usize {
        Layout::new(spec.proto, spec.src.first.is_ipv6()).min_size()
    }

    /// (flow, index into `wire_lens`) of packet `n`.
    #[inline(always)]
    fn slot(&self, n: u64) -> (usize, usize) {
        let flows = self.flows as u64;
        let flow = (n % flows) as usize;
        let s = ((n / flows) % self.order.len() as u64) as usize;
        (flow, self.order[s] as usize)
    }

    /// Writes packet `n` into `out` (cleared first): the pre-built frame of its flow and size,
    /// trailer stamped with `seq` and `ts_ns`, TCP/ICMP sequence field = low bits of `seq`, and
    /// the L4 checksum updated incrementally (RFC 1624). Does not allocate when `out` has the
    /// capacity of [`Frames::len_of`]`(n)`.
    #[inline]
    pub fn write(&self, n: u64, seq: u64, ts_ns: u64, out: &mut Vec<u8>) {
        let (flow, d) = self.slot(n);
        let ly = &self.layout;
        let at = (flow * self.wire_lens.len() + d) * ly.head_len;
        out.clear();
        out.extend_from_slice(&self.heads[at..at + ly.head_len]);
        out.resize(self.wire_lens[d], 0);

        // The pre-built frame has zeros in every stamped field, so each adds only its new value.
        let t = ly.trailer;
        out[t + TRAILER_SEQ_OFFSET..t + TRAILER_SEQ_OFFSET + 6]
            .copy_from_slice(&(seq & MAX_SEQ).to_be_bytes()[2..]);
        out[t + TRAILER_TS_OFFSET..t + TRAILER_TS_OFFSET + 8].copy_from_slice(&ts_ns.to_be_bytes());
        let mut acc = sum(&out[t + TRAILER_SEQ_OFFSET..t + TRAILER_TS_OFFSET + 8]);
        match ly.proto {
            Proto::Udp => {}
            Proto::TcpSyn => {
                let s = (seq as u32).to_be_bytes();
                out[ly.l4 + 4..ly.l4 + 8].copy_from_slice(&s);
                acc = combine(acc, sum(&s));
            }
            Proto::Icmp => {
                let s = (seq as u16).to_be_bytes();
                out[ly.l4 + 6..ly.l4 + 8].copy_from_slice(&s);
                acc = combine(acc, sum(&s));
            }
        }
        let c = ly.csum;
        let old = u16::from_be_bytes([out[c], out[c + 1]]);
        // RFC 1624 eqn. 3 with m = 0: HC' = ~(~HC + m'). For TCP/ICMP the full sum is never
        // zero (type/protocol words are non-zero), so this yields the same representation as a
        // recomputation; UDP's 0 -> 0xFFFF substitution is re-applied.
        let mut new = finish(combine(!old as u32, acc));
        if ly.proto == Proto::Udp && new == 0 {
            new = 0xffff;
        }
        out[c..c + 2].copy_from_slice(&new.to_be_bytes());
        if ly.outer_csum != 0 {
            // The IPv6 outer UDP checksum covers the inner frame: the same stamped words, plus
            // the inner checksum going from `old` to `new` (RFC 1624 eqn. 3). Every field sits
            // at an even offset from the outer UDP header (the inner frame starts 16 bytes +
            // a multiple of 4 of Geneve options after it), so the word sums line up.
            let oc = ly.outer_csum;
            let outer = u16::from_be_bytes([out[oc], out[oc + 1]]);
            let delta = combine(acc, combine(!old as u32, new as u32));
            let mut o = finish(combine(!outer as u32, delta));
            if o == 0 {
                o = 0xffff;
            }
            out[oc..oc + 2].copy_from_slice(&o.to_be_bytes());
        }
    }

    /// Length handed to the port (without FCS) of packet `n`.
    #[inline]
    pub fn len_of(&self, n: u64) -> usize {
        self.wire_lens[self.slot(n).1]
    }

    /// Number of flows cycled through.
    pub fn flows(&self) -> u32 {
        self.flows
    }

    /// Packets in one full cycle: flows × entries of the size list.
    pub fn cycle_len(&self) -> u64 {
        self.flows as u64 * self.order.len() as u64
    }

    /// The largest [`Frames::len_of`]: the capacity to give `write`'s buffer.
    pub fn max_len(&self) -> usize {
        self.wire_lens.iter().copied().max().unwrap_or(0)
    }
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at.checked_add(1)?)?]))
}

/// Reads the trailer of a received frame: `Some((seq, ts_ns))` when it is one of ours (UDP,
/// TCP, ICMP/ICMPv6 echo request, over IPv4 or IPv6, up to two VLAN tags, with
/// [`TRAILER_MAGIC`] at the start of the L4 payload), `None` otherwise. TTL, MACs and checksums
/// are not looked at, so frames that crossed a router still match. An echo *reply* carrying
/// our trailer (a host answering the ICMP template) is not one of ours: counting it would
/// duplicate the sequence. Frames still in tunnel headers are looked into (VXLAN and Geneve on
/// their IANA ports, IP-in-IP, up to [`MAX_UNWRAP`] levels): see [`Unwrap::read`]. Never
/// panics.
pub fn read_trailer(frame: &[u8]) -> Option<(u64, u64)> {
    Unwrap::default().read(frame)
}

/// Tunnel levels [`Unwrap::read`] looks through (as the dataplane's decap nesting limit).
pub const MAX_UNWRAP: u8 = 4;

impl Unwrap {
    /// [`read_trailer`] with these UDP ports for VXLAN and Geneve: a frame that comes back
    /// from the device under test still encapsulated (or decapsulated: the template alone) is
    /// found either way.
    pub fn read(&self, frame: &[u8]) -> Option<(u64, u64)> {
        self.read_eth(frame, 0)
    }

    fn read_eth(&self, frame: &[u8], depth: u8) -> Option<(u64, u64)> {
        let mut off = 12;
        let mut ethertype = be16(frame, off)?;
        for _ in 0..2 {
            if !matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
                break;
            }
            off += 4;
            ethertype = be16(frame, off)?;
        }
        self.read_ip(frame, off + 2, ethertype, depth)
    }

    /// The IP packet at `l3` of `frame`, of `ethertype`.
    fn read_ip(&self, frame: &[u8], l3: usize, ethertype: u16, depth: u8) -> Option<(u64, u64)> {
        let (l4, proto, end, v6) = match ethertype {
            ETHERTYPE_IPV4 => {
                let vihl = *frame.get(l3)?;
                let ihl = (vihl & 0x0f) as usize * 4;
                if vihl >> 4 != 4 || ihl < IPV4_HEADER_LEN {
                    return None;
                }
                let total = be16(frame, l3 + 2)? as usize;
                if be16(frame, l3 + 6)? & 0x1fff != 0 {
                    return None; // a non-first fragment
                }
                (l3 + ihl, *frame.get(l3 + 9)?, l3 + total, false)
            }
            ETHERTYPE_IPV6 => {
                if *frame.get(l3)? >> 4 != 6 {
                    return None;
                }
                let plen = be16(frame, l3 + 4)? as usize;
                (l3 + IPV6_HEADER_LEN, *frame.get(l3 + 6)?, l3 + IPV6_HEADER_LEN + plen, true)
            }
            _ => return None,
        };
        // What a tunnel carries ends where the outer IP packet does (not at Ethernet padding).
        let inner = |at: usize| frame.get(at..end.min(frame.len()));
        let deeper = depth < MAX_UNWRAP;
        let payload = match (proto, v6) {
            (IPPROTO_UDP, _) => {
                let payload = l4 + 8;
                if frame.get(payload..payload + 2) != Some(&TRAILER_MAGIC[..]) && deeper {
                    let port = be16(frame, l4 + 2)?;
                    let body = inner(payload)?;
                    if port == self.vxlan_port {
                        let v = ferroplane_tunnels::vxlan::VxlanPacket::new_checked(body).ok()?;
                        return self.read_eth(v.inner(), depth + 1);
                    }
                    if port == self.geneve_port {
                        use ferroplane_tunnels::geneve;
                        let g = geneve::GenevePacket::new_checked(body).ok()?;
                        return match g.protocol() {
                            geneve::PROTO_ETHERNET => self.read_eth(g.payload(), depth + 1),
                            p @ (ETHERTYPE_IPV4 | ETHERTYPE_IPV6) => {
                                self.read_ip(g.payload(), 0, p, depth + 1)
                            }
                            _ => None,
                        };
                    }
                }
                payload
            }
            (IPPROTO_IPIP, _) if deeper => {
                return self.read_ip(inner(l4)?, 0, ETHERTYPE_IPV4, depth + 1)
            }
            (IPPROTO_IPV6_IN_IP, _) if deeper => {
                return self.read_ip(inner(l4)?, 0, ETHERTYPE_IPV6, depth + 1)
            }
            (IPPROTO_TCP, _) => {
                let doff = (*frame.get(l4 + 12)? >> 4) as usize * 4;
                if doff < 20 {
                    return None;
                }
                l4 + doff
            }
            (IPPROTO_ICMP, false) if *frame.get(l4)? == 8 => l4 + 8,
            (IPPROTO_ICMPV6, true) if *frame.get(l4)? == 128 => l4 + 8,
            _ => return None,
        };
        let t_end = payload + TRAILER_LEN;
        if t_end > end {
            return None; // the IP length says the trailer is not there
        }
        let t = frame.get(payload..t_end)?;
        if t[TRAILER_MAGIC_OFFSET..TRAILER_MAGIC_OFFSET + 2] != TRAILER_MAGIC {
            return None;
        }
        let mut seq = [0u8; 8];
        seq[2..].copy_from_slice(&t[TRAILER_SEQ_OFFSET..TRAILER_SEQ_OFFSET + 6]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&t[TRAILER_TS_OFFSET..TRAILER_TS_OFFSET + 8]);
        Some((u64::from_be_bytes(seq), u64::from_be_bytes(ts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetHeaders, PacketHeaders, PayloadSlice, TransportHeader};
    use proptest::prelude::*;
    use std::collections::HashSet;

    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    const PROTOS: [Proto; 3] = [Proto::Udp, Proto::TcpSyn, Proto::Icmp];

    fn spec(proto: Proto, v6: bool, flows: u32) -> TemplateSpec {
        let (src, dst) = if v6 {
            ("fd00::1-fd00::4", "fd01::1-fd01::3")
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
            src_mac: MAC_A,
            dst_mac: MAC_B,
            ttl: 64,
            encap: None,
        }
    }

    fn all_specs(flows: u32) -> Vec<TemplateSpec> {
        let mut v = Vec::new();
        for v6 in [false, true] {
            for p in PROTOS {
                v.push(spec(p, v6, flows));
            }
        }
        v
    }

    /// (src, dst, proto, src port or ICMP id, dst port) of a frame whose checksums all verify
    /// by etherparse recomputation; Err describes the first mismatch.
    fn verify(frame: &[u8]) -> Result<(IpAddr, IpAddr, u8, u16, u16), String> {
        let p = PacketHeaders::from_ethernet_slice(frame).map_err(|e| format!("parse: {e}"))?;
        let payload = match &p.payload {
            PayloadSlice::Udp(s) | PayloadSlice::Tcp(s) => *s,
            PayloadSlice::Icmpv4(s) | PayloadSlice::Icmpv6(s) => *s,
            other => return Err(format!("unexpected payload {other:?}")),
        };
        let (src, dst, proto, v4, v6) = match p.net.as_ref().ok_or("no IP header")? {
            NetHeaders::Ipv4(h, _) => {
                let want = h.calc_header_checksum();
                if h.header_checksum != want {
                    return Err(format!("IPv4 checksum {:#06x} != {want:#06x}", h.header_checksum));
                }
                if h.total_len as usize != frame.len() - ETH_HEADER_LEN {
                    return Err(format!("IPv4 total length {}", h.total_len));
                }
                let (s, d) = (IpAddr::from(h.source), IpAddr::from(h.destination));
                (s, d, h.protocol.0, Some(h.clone()), None)
            }
            NetHeaders::Ipv6(h, _) => {
                if h.payload_length as usize != frame.len() - ETH_HEADER_LEN - IPV6_HEADER_LEN {
                    return Err(format!("IPv6 payload length {}", h.payload_length));
                }
                let (s, d) = (IpAddr::from(h.source), IpAddr::from(h.destination));
                (s, d, h.next_header.0, None, Some(h.clone()))
            }
        };
        let (got, want, sp, dp) = match p.transport.as_ref().ok_or("no L4 header")? {
            TransportHeader::Udp(u) => {
                let want = match (&v4, &v6) {
                    (Some(h), _) => u.calc_checksum_ipv4(h, payload).unwrap(),
                    (_, Some(h)) => u.calc_checksum_ipv6(h, payload).unwrap(),
                    _ => unreachable!(),
                };
                if u.length as usize != payload.len() + 8 {
                    return Err(format!("UDP length {}", u.length));
                }
                (u.checksum, want, u.source_port, u.destination_port)
            }
            TransportHeader::Tcp(t) => {
                let want = match (&v4, &v6) {
                    (Some(h), _) => t.calc_checksum_ipv4(h, payload).unwrap(),
                    (_, Some(h)) => t.calc_checksum_ipv6(h, payload).unwrap(),
                    _ => unreachable!(),
                };
                if !t.syn || t.ack || t.rst || t.fin || t.data_offset() != 5 || t.window_size == 0 {
                    return Err(format!("not a plain SYN: {t:?}"));
                }
                (t.checksum, want, t.source_port, t.destination_port)
            }
            TransportHeader::Icmpv4(i) => {
                let etherparse::Icmpv4Type::EchoRequest(e) = i.icmp_type else {
                    return Err(format!("not an echo request: {:?}", i.icmp_type));
                };
                (i.checksum, i.icmp_type.calc_checksum(payload), e.id, 0)
            }
            TransportHeader::Icmpv6(i) => {
                let etherparse::Icmpv6Type::EchoRequest(e) = i.icmp_type else {
                    return Err(format!("not an echo request: {:?}", i.icmp_type));
                };
                let h = v6.as_ref().ok_or("ICMPv6 over IPv4")?;
                let want = i.icmp_type.calc_checksum(h.source, h.destination, payload).unwrap();
                (i.checksum, want, e.id, 0)
            }
        };
        if got != want {
            return Err(format!("L4 checksum {got:#06x} != {want:#06x}"));
        }
        if payload.len() < TRAILER_LEN || payload[..2] != TRAILER_MAGIC {
            return Err("no trailer at the start of the payload".to_string());
        }
        Ok((src, dst, proto, sp, dp))
    }

    #[test]
    fn parse_proto_and_ranges() {
        assert_eq!("udp".parse::<Proto>().unwrap(), Proto::Udp);
        assert_eq!("TCP".parse::<Proto>().unwrap(), Proto::TcpSyn);
        assert_eq!("icmp".parse::<Proto>().unwrap(), Proto::Icmp);
        assert!("sctp".parse::<Proto>().is_err());

        let r: Range<IpAddr> = "10.0.0.1-10.0.0.9".parse().unwrap();
        assert_eq!(r.len(), 9);
        assert_eq!(r.to_string(), "10.0.0.1-10.0.0.9");
        let r: Range<IpAddr> = " 192.0.2.7 ".parse().unwrap();
        assert_eq!((r.first, r.len()), ("192.0.2.7".parse().unwrap(), 1));
        let r: Range<IpAddr> = "fd00::1-fd00::1:0".parse().unwrap();
        assert!(r.is_ipv6());
        assert_eq!(r.len(), 0x10000);
        let r: Range<IpAddr> = "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(r.len(), u128::MAX);
        let r: Range<u16> = "1024-2047".parse().unwrap();
        assert_eq!((r.first, r.last, r.len()), (1024, 2047, 1024));
        assert_eq!("53".parse::<Range<u16>>().unwrap(), Range::single(53));

        assert!("10.0.0.9-10.0.0.1".parse::<Range<IpAddr>>().unwrap_err().contains("above"));
        assert!("10.0.0.1-fd00::1".parse::<Range<IpAddr>>().unwrap_err().contains("family"));
        assert!("10.0.0.300".parse::<Range<IpAddr>>().is_err());
        assert!("2047-1024".parse::<Range<u16>>().is_err());
        assert!("1-65536".parse::<Range<u16>>().is_err());
        assert!("".parse::<Range<u16>>().is_err());
    }

    #[test]
    fn every_template_builds_valid_frames_of_exact_size() {
        for s in all_specs(24) {
            let min = Frames::min_size(&s);
            let sizes = [min, min + 1, 128, 571, 1518];
            let f = Frames::build(&s, &sizes, 1500).unwrap();
            let mut out = Vec::new();
            for n in 0..f.cycle_len() * 2 {
                f.write(n, n * 7 + 1, 1_000_000 + n, &mut out);
                let size = sizes[((n / 24) % sizes.len() as u64) as usize];
                assert_eq!(out.len(), size - FCS, "{s:?} n={n}");
                assert_eq!(f.len_of(n), size - FCS);
                verify(&out)
                    .unwrap_or_else(|e| panic!("{:?} v6={} n={n}: {e}", s.proto, s.src.is_ipv6()));
                let p = PacketHeaders::from_ethernet_slice(&out).unwrap();
                match p.net.unwrap() {
                    NetHeaders::Ipv4(h, _) => assert_eq!(h.time_to_live, 64),
                    NetHeaders::Ipv6(h, _) => assert_eq!(h.hop_limit, 64),
                }
                assert_eq!(&out[0..6], &MAC_B);
                assert_eq!(&out[6..12], &MAC_A);
                assert_eq!(read_trailer(&out), Some((n * 7 + 1, 1_000_000 + n)));
            }
        }
    }

    #[test]
    fn min_and_max_sizes() {
        let expect = [
            (Proto::Udp, false, 62),
            (Proto::TcpSyn, false, 74),
            (Proto::Icmp, false, 62),
            (Proto::Udp, true, 82),
            (Proto::TcpSyn, true, 94),
            (Proto::Icmp, true, 82),
        ];
        for (p, v6, min) in expect {
            let s = spec(p, v6, 1);
            assert_eq!(Frames::min_size(&s), min);
            let e = Frames::build(&s, &[min - 1], 1500).unwrap_err();
            assert!(e.contains(&format!("below the minimum {min}")), "{e}");
            if min > 64 {
                let e = Frames::build(&s, &[64, 64], 1500).unwrap_err();
                assert!(e.contains("64"), "{e}");
            } else {
                Frames::build(&s, &[64], 1500).unwrap();
            }
            Frames::build(&s, &[min], 1500).unwrap();
            Frames::build(&s, &[1518], 1500).unwrap();
            let e = Frames::build(&s, &[min, 1519], 1500).unwrap_err();
            assert!(e.contains("maximum 1518"), "{e}");
            Frames::build(&s, &[9018], 9000).unwrap();
            assert!(Frames::build(&s, &[9019], 9000).unwrap_err().contains("maximum 9018"));
        }
        assert!(Frames::build(&spec(Proto::Udp, false, 1), &[], 1500).is_err());
    }

    #[test]
    fn spec_errors() {
        let mut s = spec(Proto::Udp, false, 1);
        s.dst = "fd00::1".parse().unwrap();
        assert!(Frames::build(&s, &[128], 1500).unwrap_err().contains("address families"));
        let mut s = spec(Proto::Udp, false, 1);
        s.src = Range { first: "10.0.0.1".parse().unwrap(), last: "fd00::1".parse().unwrap() };
        assert!(Frames::build(&s, &[128], 1500).unwrap_err().contains("family"));
        let mut s = spec(Proto::Udp, false, 1);
        s.src_port = Range { first: 9, last: 8 };
        assert!(Frames::build(&s, &[128], 1500).is_err());
        let mut s = spec(Proto::Udp, false, 0);
        assert!(Frames::build(&s, &[128], 1500).unwrap_err().contains("at least 1"));
        s.flows = 4 * 2 * 4 * 3 + 1;
        let e = Frames::build(&s, &[128], 1500).unwrap_err();
        assert!(e.contains("only 96 distinct 5-tuples"), "{e}");
        let mut s = spec(Proto::Icmp, false, 4 * 4 * 3 + 1);
        let e = Frames::build(&s, &[128], 1500).unwrap_err();
        assert!(e.contains("only 48 distinct"), "{e}");
        s.flows = 48;
        Frames::build(&s, &[128], 1500).unwrap();
        // Memory cap rather than an abort on huge flow counts.
        let mut s = spec(Proto::Udp, true, u32::MAX);
        s.src = "fd00::-fd00::ffff:ffff".parse().unwrap();
        assert!(Frames::build(&s, &[128], 1500).unwrap_err().contains("limit"));
    }

    fn tuples(f: &Frames, packets: u64) -> Vec<(IpAddr, IpAddr, u8, u16, u16)> {
        let mut out = Vec::new();
        (0..packets)
            .map(|n| {
                f.write(n, n, 0, &mut out);
                verify(&out).unwrap()
            })
            .collect()
    }

    #[test]
    fn flows_are_distinct_five_tuples() {
        for s in all_specs(1) {
            let max: u32 = if s.proto == Proto::Icmp { 4 * 4 * 3 } else { 4 * 2 * 4 * 3 };
            for flows in [1, 2, 5, 31, max] {
                let f =
                    Frames::build(&TemplateSpec { flows, ..s.clone() }, &[200, 300], 1500).unwrap();
                assert_eq!(f.flows(), flows);
                let t = tuples(&f, flows as u64 * 4);
                let distinct: HashSet<_> = t.iter().collect();
                assert_eq!(distinct.len(), flows as usize, "{:?} flows={flows}", s.proto);
                for n in 0..t.len() - flows as usize {
                    assert_eq!(t[n], t[n + flows as usize]);
                }
            }
        }
    }

    #[test]
    fn mixed_radix_order() {
        let s = spec(Proto::Udp, false, 96);
        let f = Frames::build(&s, &[100], 1500).unwrap();
        let t = tuples(&f, 96);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(t[0], (ip("10.0.0.1"), ip("10.1.0.1"), 17, 1024, 9));
        assert_eq!(t[1], (ip("10.0.0.1"), ip("10.1.0.1"), 17, 1025, 9));
        assert_eq!(t[4], (ip("10.0.0.1"), ip("10.1.0.1"), 17, 1024, 10));
        assert_eq!(t[8], (ip("10.0.0.2"), ip("10.1.0.1"), 17, 1024, 9));
        assert_eq!(t[32], (ip("10.0.0.1"), ip("10.1.0.2"), 17, 1024, 9));
        assert_eq!(t[95], (ip("10.0.0.4"), ip("10.1.0.3"), 17, 1027, 10));
        // IPv6 addresses walk the low bits; the ICMP identifier comes from the source port.
        let s = spec(Proto::Icmp, true, 48);
        let f = Frames::build(&s, &[100], 1500).unwrap();
        let t = tuples(&f, 48);
        assert_eq!(t[5], (ip("fd00::2"), ip("fd01::1"), 58, 1025, 0));
        assert_eq!(t[47], (ip("fd00::4"), ip("fd01::3"), 58, 1027, 0));
    }

    #[test]
    fn sizes_follow_list_order_imix() {
        // IMIX proportions (7:4:1) interleaved, 128 standing in for 64 (below the UDP minimum)
        let sizes = [128, 570, 128, 1518, 128, 570, 128, 570, 128, 570, 128, 128];
        let f = Frames::build(&spec(Proto::Udp, false, 3), &sizes, 1500).unwrap();
        assert_eq!(f.cycle_len(), 36);
        assert_eq!(f.max_len(), 1514);
        for n in 0..100u64 {
            assert_eq!(f.len_of(n) + FCS, sizes[((n / 3) % 12) as usize]);
        }
    }

    /// Frames whose stamp cancels the rest of the L4 sum, so the checksum is zero: packet 0 of
    /// `f`, and packet 0 stamped with (0, prebuilt checksum) in the timestamp's last word.
    fn zero_sum_frames(f: &Frames) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        f.write(0, 0, 0, &mut out);
        let c = u16::from_be_bytes([out[f.layout.csum], out[f.layout.csum + 1]]);
        let first = out.clone();
        f.write(0, 0, c as u64, &mut out);
        vec![first, out]
    }

    #[test]
    fn zero_checksum_representation() {
        for s in all_specs(3) {
            let f = Frames::build(&s, &[300], 1500).unwrap();
            let frames = zero_sum_frames(&f);
            let out = &frames[1];
            let c = u16::from_be_bytes([out[f.layout.csum], out[f.layout.csum + 1]]);
            let want = if s.proto == Proto::Udp { 0xffff } else { 0 };
            assert_eq!(c, want, "{:?} v6={}", s.proto, s.src.is_ipv6());
            for out in &frames {
                verify(out).unwrap();
            }
        }
    }

    #[test]
    fn write_reuses_capacity() {
        let f = Frames::build(&spec(Proto::TcpSyn, true, 8), &[98, 1518, 300], 1500).unwrap();
        let mut out = Vec::with_capacity(f.max_len());
        let (ptr, cap) = (out.as_ptr(), out.capacity());
        for n in 0..100 {
            f.write(n, u64::MAX - n, n, &mut out);
            assert_eq!((out.as_ptr(), out.capacity()), (ptr, cap));
        }
    }

    #[test]
    fn read_trailer_after_a_router_and_vlan() {
        for s in all_specs(4) {
            let f = Frames::build(&s, &[Frames::min_size(&s), 700], 1500).unwrap();
            let mut out = Vec::new();
            for n in 0..8 {
                f.write(n, 0xdead_beef_0000 + n, 42 + n, &mut out);
                let want = Some((0xdead_beef_0000 + n, 42 + n));
                // router: new MACs, TTL - 1 (checksum not even fixed: read_trailer ignores it)
                let mut r = out.clone();
                r[0..12].copy_from_slice(&[7; 12]);
                r[if s.src.is_ipv6() { 21 } else { 22 }] -= 1;
                assert_eq!(read_trailer(&r), want);
                // VLAN-tagged, and Ethernet padding/FCS after it
                let mut v = out[..12].to_vec();
                v.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
                v.extend_from_slice(&out[12..]);
                v.extend_from_slice(&[0xaa; 4]);
                assert_eq!(read_trailer(&v), want);
                // truncated anywhere before the end of the trailer
                for cut in 0..f.layout.head_len {
                    assert_eq!(read_trailer(&out[..cut]), None, "cut at {cut}");
                }
                // an echo reply to our request is not ours
                if s.proto == Proto::Icmp {
                    let mut c = out.clone();
                    c[f.layout.l4] = if s.src.is_ipv6() { 129 } else { 0 };
                    assert_eq!(read_trailer(&c), None);
                }
                // a corrupted magic
                for i in 0..TRAILER_MAGIC.len() {
                    let mut c = out.clone();
                    c[f.layout.trailer + i] ^= 0x20;
                    assert_eq!(read_trailer(&c), None);
                }
            }
        }
        assert_eq!(read_trailer(&[]), None);
        assert_eq!(read_trailer(&[0u8; 1500]), None);
    }

    /// Writes `frames` to a pcap and returns tshark's per-frame fields: frame.len, ip, udp, tcp,
    /// icmp, icmpv6 checksum status (1 = good), protocols.
    fn tshark(frames: &[Vec<u8>], name: &str) -> Vec<Vec<String>> {
        use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
        let path = std::env::temp_dir()
            .join(format!("ferroplane-gen-template-{name}-{}.pcap", std::process::id()));
        {
            let file = std::fs::File::create(&path).unwrap();
            let header =
                PcapHeader { datalink: pcap_file::DataLink::ETHERNET, ..Default::default() };
            let mut w = PcapWriter::with_header(file, header).unwrap();
            for (i, f) in frames.iter().enumerate() {
                let ts = std::time::Duration::from_micros(i as u64);
                w.write_packet(&PcapPacket::new(ts, f.len() as u32, f)).unwrap();
            }
        }
        let out = std::process::Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args(["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"])
            .args(["-o", "tcp.check_checksum:TRUE", "-T", "fields", "-E", "separator=;"])
            .args(["-e", "frame.len", "-e", "ip.checksum.status", "-e", "udp.checksum.status"])
            .args(["-e", "tcp.checksum.status", "-e", "icmp.checksum.status"])
            .args(["-e", "icmpv6.checksum.status", "-e", "frame.protocols"])
            .output()
            .expect("tshark must be installed to verify generated frames (apt-get install tshark)");
        let _ = std::fs::remove_file(&path);
        assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<Vec<String>> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split(';').map(str::to_string).collect())
            .collect();
        assert_eq!(lines.len(), frames.len(), "tshark read a different number of frames");
        lines
    }

    #[test]
    fn tshark_agrees_checksums_and_lengths() {
        let mut frames = Vec::new();
        let mut expect = Vec::new();
        for s in all_specs(6) {
            let min = Frames::min_size(&s);
            let sizes = [min, min + 1, 64 + 511, 1518];
            let f = Frames::build(&s, &sizes, 1500).unwrap();
            for n in 0..f.cycle_len() {
                let mut out = Vec::new();
                let seq = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                f.write(n, seq, !seq, &mut out);
                expect.push((s.proto, s.src.is_ipv6(), f.len_of(n)));
                frames.push(out);
            }
            // a stamp that makes the L4 sum zero: UDP sends 0xFFFF, TCP/ICMP 0x0000
            for out in zero_sum_frames(&f) {
                expect.push((s.proto, s.src.is_ipv6(), out.len()));
                frames.push(out);
            }
        }
        let rows = tshark(&frames, "all");
        for (row, (proto, v6, len)) in rows.iter().zip(&expect) {
            let ctx = format!("{proto:?} v6={v6}: {row:?}");
            assert_eq!(row.len(), 7, "{ctx}");
            assert_eq!(row[0], len.to_string(), "{ctx}");
            assert_eq!(row[1], if *v6 { "" } else { "1" }, "ip {ctx}");
            let want = |p: Proto, six: Option<bool>| {
                if *proto == p && six != Some(!*v6) {
                    "1"
                } else {
                    ""
                }
            };
            assert_eq!(row[2], want(Proto::Udp, None), "udp {ctx}");
            assert_eq!(row[3], want(Proto::TcpSyn, None), "tcp {ctx}");
            assert_eq!(row[4], want(Proto::Icmp, Some(false)), "icmp {ctx}");
            assert_eq!(row[5], want(Proto::Icmp, Some(true)), "icmpv6 {ctx}");
            let l4 = match (proto, v6) {
                (Proto::Udp, _) => "udp",
                (Proto::TcpSyn, _) => "tcp",
                (Proto::Icmp, false) => "icmp",
                (Proto::Icmp, true) => "icmpv6",
            };
            let ip = if *v6 { "ipv6" } else { "ip" };
            // (":data" follows unless tshark's TCP analysis calls a repeated seq a retransmission)
            assert!(row[6].starts_with(&format!("eth:ethertype:{ip}:{l4}")), "{ctx}");
        }
        // tshark does flag a bad checksum: corrupt one byte of the trailer in each frame.
        let bad: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| {
                let mut f = f.clone();
                let at = f.len() - 1;
                f[at] ^= 1;
                f
            })
            .collect();
        for row in tshark(&bad, "bad") {
            assert!(row[2..6].iter().any(|s| s == "0"), "corruption not detected: {row:?}");
        }
    }

    fn any_spec() -> impl Strategy<Value = TemplateSpec> {
        (0usize..3, any::<bool>(), 1u32..40, any::<u8>())
            .prop_map(|(p, v6, flows, ttl)| TemplateSpec { ttl, ..spec(PROTOS[p], v6, flows) })
    }

    proptest! {
        #[test]
        fn stamped_frames_verify(
            s in any_spec(),
            extra in proptest::collection::vec(0usize..1400, 1..4),
            n in any::<u64>(),
            seq in any::<u64>(),
            ts in any::<u64>(),
        ) {
            let min = Frames::min_size(&s);
            let sizes: Vec<usize> = extra.iter().map(|e| (min + e).min(1518)).collect();
            let f = Frames::build(&s, &sizes, 1500).unwrap();
            let mut out = Vec::new();
            f.write(n, seq, ts, &mut out);
            prop_assert_eq!(out.len(), f.len_of(n));
            if let Err(e) = verify(&out) {
                prop_assert!(false, "{:?}", e);
            }
            prop_assert_eq!(read_trailer(&out), Some((seq & MAX_SEQ, ts)));
            // the same packet re-stamped with other values still verifies (no state carried)
            f.write(n, !seq, ts ^ seq, &mut out);
            prop_assert!(verify(&out).is_ok());
            prop_assert_eq!(read_trailer(&out), Some((!seq & MAX_SEQ, ts ^ seq)));
        }

        #[test]
        fn read_trailer_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(read_trailer(&bytes), None);
        }

        #[test]
        fn read_trailer_on_mutated_frames(
            s in any_spec(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let f = Frames::build(&s, &[300], 1500).unwrap();
            let mut out = Vec::new();
            f.write(3, 11, 22, &mut out);
            let i = at.index(out.len());
            out[i] = byte;
            let _ = read_trailer(&out);
            let c = cut.index(out.len());
            let r = read_trailer(&out[..c]);
            if c < f.layout.head_len {
                prop_assert_eq!(r, None);
            }
        }
    }
}
