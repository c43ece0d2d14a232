//! Per-packet metadata: what the parse stage found and what later stages decided.

use crate::flow::FlowKey;
use crate::verdict::Verdict;

/// Index of a port (or, later, a tunnel interface) in the current tables.
pub type PortId = u16;

/// The network layer the parse stage found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L3 {
    #[default]
    None,
    Arp,
    Ipv4,
    Ipv6,
}

/// An IPv4 or IPv6 address in the compact form the fast path uses: IPv4 in the low 4 bytes of an
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), so one 16-byte type covers both families.
pub type Addr = [u8; 16];

/// What stages know about a packet. Offsets are from the start of the packet's data.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// Port the packet came in on.
    pub in_port: PortId,
    /// Worker that received it: its buffer belongs to that worker's pool, so whatever the slow
    /// path sends back for it must go to that worker.
    pub worker: u8,
    /// Receive time in nanoseconds of the pipeline's clock (wall or virtual, see replay).
    pub timestamp_ns: u64,
    /// 802.1Q VLAN id, when the frame carried a tag.
    pub vlan: Option<u16>,
    /// Offset of the network header.
    pub l3_offset: u16,
    /// Offset of the transport header (0 when there is none or it is not parsed, e.g. a
    /// non-first fragment).
    pub l4_offset: u16,
    /// Offset just past the network packet (IPv4 total length / IPv6 payload length), so that
    /// Ethernet padding after it is not forwarded.
    pub l3_end: u16,
    pub l3: L3,
    /// IP protocol / IPv6 next header after extension headers.
    pub l4_proto: u8,
    /// TTL / hop limit as received: the parse stage's copy, so that the route stage's check
    /// reads no packet bytes (it fits in what was padding).
    pub ttl: u8,
    /// The packet's 5-tuple (valid for IPv4/IPv6).
    pub flow: FlowKey,
    /// Symmetric hash of `flow` (ECMP, tunnel entropy; later Maglev and conntrack). The parse
    /// stage leaves it 0; the route stage sets it for packets whose path depends on it (an
    /// ECMP group), the encap stage for those whose outer header carries it (a UDP source port,
    /// an IPv6 flow label), [`crate::parse::parse`] for everyone else who asks.
    pub flow_hash: u32,
    /// Egress port chosen by routing.
    pub out_port: PortId,
    /// Address whose link-layer address the egress frame needs (the gateway, or the destination
    /// for connected routes).
    pub next_hop: Addr,
    /// What happens to the packet; stages skip packets that are no longer `Continue`.
    pub verdict: Verdict,
    /// Set for packets selected by `trace`: stages record their verdicts for them.
    pub traced: bool,
    /// What decapsulation found, for packets that came out of a tunnel (`in_port` is then the
    /// tunnel's interface).
    pub tunnel: TunnelMeta,
}

impl Meta {
    /// The metadata of a packet nothing has looked at yet. A constant rather than a derived
    /// `Default`: receive builds one per packet, and the derived one was assembled on the stack
    /// with narrow stores and copied out with wide loads that straddled them (a store-forwarding
    /// stall per packet, a quarter of the DPDK receive loop); a constant is copied from memory
    /// no store touched.
    pub const EMPTY: Meta = Meta {
        in_port: 0,
        worker: 0,
        timestamp_ns: 0,
        vlan: None,
        l3_offset: 0,
        l4_offset: 0,
        l3_end: 0,
        l3: L3::None,
        l4_proto: 0,
        ttl: 0,
        flow: FlowKey { src: [0; 16], dst: [0; 16], src_port: 0, dst_port: 0, proto: 0 },
        flow_hash: 0,
        out_port: 0,
        next_hop: [0; 16],
        verdict: Verdict::Continue,
        traced: false,
        tunnel: TunnelMeta { depth: 0, vni: 0, options_at: 0, options_len: 0 },
    };
}

impl Meta {
    /// [`FlowKey::symmetric_hash`] of `flow`. An IPv4 packet's addresses are IPv4-mapped, so
    /// its hash is taken from their last 4 bytes inline, without the general function's check
    /// of both addresses for the mapped prefix and without its call (its IPv6 half keeps it out
    /// of line).
    #[inline(always)]
    pub fn flow_hash_of(&self, seed: u64) -> u32 {
        if self.l3 == L3::Ipv4 {
            self.flow_hash_v4(seed)
        } else {
            self.flow.symmetric_hash(seed)
        }
    }

    /// [`Meta::flow_hash_of`] of a packet known to be IPv4 (`l3` is [`L3::Ipv4`]).
    #[inline(always)]
    pub fn flow_hash_v4(&self, seed: u64) -> u32 {
        let f = &self.flow;
        let v4 = |a: &[u8; 16]| u32::from_ne_bytes([a[12], a[13], a[14], a[15]]);
        crate::flow::symmetric_hash_v4(
            v4(&f.src),
            v4(&f.dst),
            f.src_port,
            f.dst_port,
            f.proto,
            seed,
        )
    }
}

impl Default for Meta {
    fn default() -> Meta {
        Meta::EMPTY
    }
}

/// Tunnel metadata of a decapsulated packet. The Geneve options stay in the buffer's headroom
/// where they arrived (decap only moves the packet's head past them), so a later stage (the ACL)
/// can match on them with [`crate::buf::PacketBuf::before_head`] without a copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelMeta {
    /// Decapsulations so far (0: not from a tunnel). Bounded by the loop guard.
    pub depth: u8,
    /// VNI of the outermost-but-one header removed last (VXLAN, Geneve; 0 for IP-in-IP).
    pub vni: u32,
    /// Frame offset of the received Geneve options, and their length (0: none).
    pub options_at: u16,
    pub options_len: u16,
}
