//! The flow key (5-tuple) and its symmetric hash.
//!
//! Both directions of a connection hash to the same value, so ECMP keeps a flow and its replies
//! on one path and (later) conntrack and Maglev find one entry for both. The hash orders the two
//! endpoints before mixing, which is cheaper than Toeplitz with a symmetric key and has no weak
//! key to pick.

use crate::meta::Addr;

/// A connection's 5-tuple. IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`).
/// Ports are zero for protocols without them (and for non-first fragments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct FlowKey {
    pub src: Addr,
    pub dst: Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

/// The IPv4-mapped form of an IPv4 address.
#[inline]
pub const fn v4_mapped(a: [u8; 4]) -> Addr {
    // Built as one 128-bit value: the parse stage writes it with a single 16-byte store, which
    // later stages' loads of the address (whole, or its last 4 bytes) can forward from.
    ((0xffff_u128 << 32) | u32::from_be_bytes(a) as u128).to_be_bytes()
}

/// The IPv4 address inside a mapped address, if it is one.
#[inline]
pub fn as_v4(a: &Addr) -> Option<[u8; 4]> {
    if a[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
        Some([a[12], a[13], a[14], a[15]])
    } else {
        None
    }
}

/// Converts from std's address type.
pub fn addr_from_ip(ip: std::net::IpAddr) -> Addr {
    match ip {
        std::net::IpAddr::V4(v4) => v4_mapped(v4.octets()),
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

/// Converts to std's address type.
pub fn ip_from_addr(a: &Addr) -> std::net::IpAddr {
    match as_v4(a) {
        Some(v4) => std::net::IpAddr::V4(v4.into()),
        None => std::net::IpAddr::V6((*a).into()),
    }
}

const K0: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0xbf58_476d_1ce4_e5b9;

/// 64x64 -> 128 multiply folded to 64 bits: the mixing step of wyhash/foldhash.
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = (a as u128).wrapping_mul(b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

/// [`FlowKey::symmetric_hash`] of an IPv4 flow, from the header fields directly (no 128-bit
/// keys). The addresses are taken as their bytes lie in memory (`u32::from_ne_bytes`, as the
/// IPv6 half takes its own), which orders endpoints as consistently as host order does and
/// spares the byte swaps. An endpoint (address, port) fits in 48 bits, so ordering the two is
/// one 64-bit compare, and the mix is one folded multiply of the two (foldhash's mix for
/// 16 bytes): the ECMP choice and every VXLAN/Geneve packet pay for it.
#[inline(always)]
pub fn symmetric_hash_v4(
    src: u32,
    dst: u32,
    src_port: u16,
    dst_port: u16,
    proto: u8,
    seed: u64,
) -> u32 {
    let a = ((src as u64) << 16) | src_port as u64;
    let b = ((dst as u64) << 16) | dst_port as u64;
    let (lo, hi) = (a.min(b), a.max(b));
    let h = fold_mul(lo ^ seed ^ K0, hi ^ ((proto as u64) << 48) ^ K1);
    (h ^ (h >> 32)) as u32
}

impl FlowKey {
    /// Symmetric: `hash(a->b) == hash(b->a)`. `seed` lets a deployment pick its own function so
    /// that paths are not predictable from outside.
    ///
    /// Inlined, with the IPv6 half out of line so that the IPv4 path stays small where it is
    /// inlined (the route stage's ECMP choice). The pipeline bench measured no change from
    /// this either way; it is kept as the simpler call.
    #[inline(always)]
    pub fn symmetric_hash(&self, seed: u64) -> u32 {
        if let (Some(s), Some(d)) = (as_v4(&self.src), as_v4(&self.dst)) {
            return symmetric_hash_v4(
                u32::from_ne_bytes(s),
                u32::from_ne_bytes(d),
                self.src_port,
                self.dst_port,
                self.proto,
                seed,
            );
        }
        self.symmetric_hash_v6(seed)
    }

    #[inline(never)]
    fn symmetric_hash_v6(&self, seed: u64) -> u32 {
        let a = (u128::from_ne_bytes(self.src), self.src_port);
        let b = (u128::from_ne_bytes(self.dst), self.dst_port);
        // Order the endpoints without a branch: with random traffic the comparison is a coin
        // toss, and a mispredict costs more than the whole hash.
        let swap = (a.0 > b.0) | ((a.0 == b.0) & (a.1 > b.1));
        let m128 = (swap as u128).wrapping_neg();
        let m16 = (swap as u16).wrapping_neg();
        let lo = (a.0 ^ ((a.0 ^ b.0) & m128), a.1 ^ ((a.1 ^ b.1) & m16));
        let hi = (a.0 ^ b.0 ^ lo.0, a.1 ^ b.1 ^ lo.1);
        let ports = ((lo.1 as u64) << 32) | ((hi.1 as u64) << 16) | self.proto as u64;
        let mut h = fold_mul((lo.0 as u64) ^ seed ^ K0, ((lo.0 >> 64) as u64) ^ K1);
        h = fold_mul(h ^ (hi.0 as u64), ((hi.0 >> 64) as u64) ^ K0);
        h = fold_mul(h ^ ports, K1 ^ seed);
        (h ^ (h >> 32)) as u32
    }

    /// The key of the reply direction.
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(s: u8, d: u8, sp: u16, dp: u16) -> FlowKey {
        FlowKey {
            src: v4_mapped([10, 0, 0, s]),
            dst: v4_mapped([10, 0, 1, d]),
            src_port: sp,
            dst_port: dp,
            proto: 17,
        }
    }

    #[test]
    fn mapped_round_trip() {
        let a = v4_mapped([192, 0, 2, 1]);
        assert_eq!(as_v4(&a), Some([192, 0, 2, 1]));
        assert_eq!(ip_from_addr(&a), "192.0.2.1".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(as_v4(&addr_from_ip("2001:db8::1".parse().unwrap())), None);
    }

    #[test]
    fn spreads_over_buckets() {
        // 4096 flows differing only in source port over 8 buckets: each within 25% of fair.
        let mut buckets = [0u32; 8];
        for p in 0..4096u16 {
            buckets[(key(1, 2, 1024 + p, 80).symmetric_hash(7) % 8) as usize] += 1;
        }
        for b in buckets {
            assert!((384..=640).contains(&b), "{buckets:?}");
        }
        // And by the top bits (the ECMP choice compares the whole hash with its bounds), for
        // flows differing only in a destination address.
        let mut buckets = [0u32; 8];
        for d in 0..4096u32 {
            let k = FlowKey {
                src: v4_mapped([10, 0, 0, 1]),
                dst: v4_mapped((0xc633_0000 + d).to_be_bytes()),
                src_port: 1024,
                dst_port: 80,
                proto: 17,
            };
            buckets[(k.symmetric_hash(7) >> 29) as usize] += 1;
        }
        for b in buckets {
            assert!((384..=640).contains(&b), "{buckets:?}");
        }
    }

    proptest! {
        #[test]
        fn symmetric_v4(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, proto: u8, seed: u64) {
            let k = FlowKey { src: v4_mapped(src), dst: v4_mapped(dst), src_port: sp, dst_port: dp, proto };
            prop_assert_eq!(k.symmetric_hash(seed), k.reversed().symmetric_hash(seed));
            let direct = symmetric_hash_v4(u32::from_ne_bytes(src), u32::from_ne_bytes(dst), sp, dp, proto, seed);
            prop_assert_eq!(k.symmetric_hash(seed), direct);
        }

        #[test]
        fn symmetric(src in any::<[u8;16]>(), dst in any::<[u8;16]>(), sp: u16, dp: u16, proto: u8, seed: u64) {
            let k = FlowKey { src, dst, src_port: sp, dst_port: dp, proto };
            prop_assert_eq!(k.symmetric_hash(seed), k.reversed().symmetric_hash(seed));
        }
    }
}
