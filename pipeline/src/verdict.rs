//! Verdicts and the named reasons behind drops and punts.
//!
//! Every packet leaves the pipeline with exactly one verdict. A drop or a punt names its reason,
//! and each reason is a counter (`fpctl stats` shows them by these names), so nothing disappears
//! without a trace, as VPP's per-node error tables do.

use crate::meta::PortId;

/// What happens to a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Still in flight: the next stage looks at it.
    #[default]
    Continue,
    /// Transmit on this port.
    Forward(PortId),
    /// Hand to the control thread's slow path.
    Punt(PuntReason),
    /// Free the buffer and count the reason.
    Drop(DropReason),
}

macro_rules! reasons {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every reason, in counter order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            /// Number of reasons (the length of a counter array).
            pub const COUNT: usize = $name::ALL.len();

            /// The counter's name, as `fpctl stats` and the metrics endpoint print it.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// Index into a counter array.
            #[inline]
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

reasons! {
    /// Why a packet was dropped.
    DropReason {
        /// Shorter than an Ethernet header.
        EthTruncated => "eth_truncated",
        /// 802.1Q tag cut short.
        VlanTruncated => "vlan_truncated",
        /// A VLAN-tagged frame on a port with no VLAN sub-interfaces.
        VlanNotConfigured => "vlan_not_configured",
        /// An EtherType the dataplane does not route.
        UnknownEthertype => "unknown_ethertype",
        /// Unicast to another station's MAC.
        NotOurMac => "not_our_mac",
        /// Shorter than its IPv4 header, or IHL below 5.
        Ipv4Truncated => "ipv4_truncated",
        /// Version field not 4 under EtherType 0x0800.
        Ipv4BadVersion => "ipv4_bad_version",
        /// Total length smaller than the header or larger than the frame.
        Ipv4BadLength => "ipv4_bad_length",
        /// Header checksum wrong (RFC 1812 5.2.2: a router must verify it).
        Ipv4BadChecksum => "ipv4_bad_checksum",
        /// Source is multicast, broadcast or loopback (RFC 1812 5.3.7 martians).
        Ipv4BadSource => "ipv4_bad_source",
        /// Destination is limited broadcast / multicast / loopback: not routed.
        Ipv4NotRoutable => "ipv4_not_routable",
        /// Shorter than the fixed IPv6 header.
        Ipv6Truncated => "ipv6_truncated",
        /// Version field not 6 under EtherType 0x86DD.
        Ipv6BadVersion => "ipv6_bad_version",
        /// Payload length larger than the frame.
        Ipv6BadLength => "ipv6_bad_length",
        /// An extension header runs past the packet, or the chain is longer than we walk.
        Ipv6BadExtHeader => "ipv6_bad_ext_header",
        /// Source is multicast or loopback (RFC 4291 2.7).
        Ipv6BadSource => "ipv6_bad_source",
        /// Destination multicast / link-local / loopback: not forwarded.
        Ipv6NotRoutable => "ipv6_not_routable",
        /// TCP/UDP/ICMP header cut short.
        L4Truncated => "l4_truncated",
        /// No route matches the destination.
        NoRoute => "no_route",
        /// The route is a blackhole / the next hop is unusable.
        NextHopDrop => "nexthop_drop",
        /// Packet for us that the dataplane does not serve (e.g. TCP to a router address).
        LocalUnhandled => "local_unhandled",
        /// The punt queue to the control thread was full.
        PuntQueueFull => "punt_queue_full",
        /// The egress port's transmit ring was full.
        TxFull => "tx_full",
        /// The egress port has no output (replay: no `--out` for it).
        NoTxPort => "no_tx_port",
        /// No free buffer to receive into.
        NoBuffer => "no_buffer",
        /// A frame longer than a packet buffer holds (replay input from a jumbo capture).
        FrameTooBig => "frame_too_big",
        /// Slow path: the neighbour did not answer; queued packets are dropped.
        NeighbourUnresolved => "neighbour_unresolved",
        /// Slow path: too many packets already waiting for neighbours.
        NeighbourQueueFull => "neighbour_queue_full",
        /// Slow path: frames still waiting for a neighbour when replay ended.
        NeighbourPendingAtEnd => "neighbour_pending_at_end",
        /// Slow path: an ICMP error was due but the rate limit held it back.
        IcmpRateLimited => "icmp_rate_limited",
        /// Slow path: TTL/hop limit expired (an ICMP time exceeded was sent or rate limited).
        TtlExpired => "ttl_expired",
        /// Slow path: bigger than the egress MTU (ICMP frag-needed / packet-too-big sent).
        MtuExceeded => "mtu_exceeded",
        /// Slow path: a punted packet it does not answer (ARP for others, unknown ICMP type...).
        SlowPathIgnored => "slow_path_ignored",
        /// Slow path: a punted packet that failed its checks (bad ARP, bad ICMP checksum...).
        SlowPathMalformed => "slow_path_malformed",
        /// Slow path: the queue back to the worker was full.
        ReplyQueueFull => "reply_queue_full",
        /// Outer UDP or tunnel header cut short, or its length fields disagree with the packet.
        TunnelTruncated => "tunnel_truncated",
        /// A tunnel header we cannot process (VXLAN I flag clear, Geneve version not 0, an
        /// inner protocol we do not carry).
        TunnelBadHeader => "tunnel_bad_header",
        /// To one of our addresses on a tunnel's port or protocol, but no tunnel has this
        /// (local, VNI, remote).
        TunnelUnknown => "tunnel_unknown",
        /// A Geneve option's length runs past the options area.
        GeneveBadOption => "geneve_bad_option",
        /// A Geneve option with the critical bit that we do not understand (RFC 8926 3.5.1).
        GeneveCriticalOption => "geneve_critical_option",
        /// The decapsulated packet is itself malformed.
        TunnelInnerMalformed => "tunnel_inner_malformed",
        /// Encapsulated or decapsulated more times than the nesting limit, or routed back to
        /// one of our own addresses: a tunnel loop.
        TunnelLoop => "tunnel_loop",
        /// RFC 6040: outer CE over a not-ECT inner packet must be dropped.
        TunnelEcnDrop => "tunnel_ecn_drop",
        /// A multipoint tunnel has no FDB entry for the inner destination and no flood entry.
        FdbMiss => "fdb_miss",
        /// No usable underlay route to the tunnel's remote endpoint.
        TunnelNoRoute => "tunnel_no_route",
        /// The encapsulated packet is bigger than the underlay port's MTU (a tunnel `mtu` set
        /// above what the underlay carries).
        TunnelMtuExceeded => "tunnel_mtu_exceeded",
        /// Not enough headroom left for another outer header (deep nesting).
        TunnelNoHeadroom => "tunnel_no_headroom",
        /// A packet left the stage list without a verdict (a stage list missing its last stage).
        NoVerdict => "no_verdict",
    }
}

reasons! {
    /// Why a packet went to the slow path.
    PuntReason {
        /// ARP request or reply.
        Arp => "arp",
        /// IPv6 neighbour discovery (NS/NA/RS/RA).
        NeighbourDiscovery => "neighbour_discovery",
        /// Addressed to one of our addresses (echo requests, later control protocols).
        Local => "local",
        /// TTL / hop limit would reach 0: the slow path answers ICMP time exceeded.
        TtlExpired => "ttl_expired",
        /// Larger than the egress MTU: the slow path answers frag-needed / packet-too-big
        /// or fragments.
        MtuExceeded => "mtu_exceeded",
        /// The next hop's MAC is unknown: the slow path queues the packet and resolves it.
        NeighbourMiss => "neighbour_miss",
        /// No route: the slow path answers ICMP destination unreachable.
        NoRoute => "no_route",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indices_dense() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in PuntReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
