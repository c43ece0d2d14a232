//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Routers change a few header bytes per packet (TTL, later NAT addresses and ports); RFC 1624's
//! `HC' = ~(~HC + ~m + m')` updates the checksum from the old and new 16-bit words without
//! re-summing the header, and unlike RFC 1141's form it never produces 0xFFFF from a correct
//! checksum.

/// One's-complement sum of `data` (big-endian 16-bit words, odd byte padded with zero), not
/// folded and not complemented: add several with [`combine`], finish with [`finish`].
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // 32-bit big-endian words into a 64-bit accumulator: half the iterations of 16-bit words,
    // and the one's-complement sum folds the same (RFC 1071 2.(B), "parallel summation").
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as u64;
    }
    let mut rest = words.remainder().chunks_exact(2);
    for c in &mut rest {
        acc += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = rest.remainder() {
        acc += (*last as u64) << 8;
    }
    fold64(acc)
}

/// Folds a 64-bit accumulator to 32 bits with one end-around carry. Branch-free because
/// whether a sum carries depends on the packet's addresses, so a fold-until-small loop could
/// be a coin-toss branch per packet with spread traffic. The pipeline bench measured no change
/// from it; it is kept because it cannot mispredict, and a test holds it equal to the loop.
#[inline(always)]
fn fold64(acc: u64) -> u32 {
    // With a carry out, the low sum is at most 2^32 - 2, so adding the carry cannot overflow.
    let (s, carry) = (acc as u32).overflowing_add((acc >> 32) as u32);
    s + carry as u32
}

/// Adds two partial sums.
#[inline]
pub fn combine(a: u32, b: u32) -> u32 {
    fold64(a as u64 + b as u64)
}

/// Folds a partial sum to 16 bits and complements it: the value to store in a header.
#[inline]
pub fn finish(acc: u32) -> u16 {
    // One end-around carry, branch-free as in `fold64`.
    let (s, carry) = (acc as u16).overflowing_add((acc >> 16) as u16);
    !(s + carry as u16)
}

/// The checksum of `data` as one block (e.g. an IPv4 header with its checksum field zeroed).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// [`verifies`] for an IPv4 header: the option-less 20 bytes (nearly every packet) as five
/// loads into one accumulator, no loop; headers with options take the general path.
///
/// The words are summed in the machine's byte order, without the byte swaps: a one's
/// complement sum taken in the other byte order is the byte-swapped sum (RFC 1071 2(B)), and
/// the only sum that verifies, 0xFFFF, is its own swap.
#[inline(always)]
pub fn verifies_ipv4_header(h: &[u8]) -> bool {
    if let Some(w) = h.first_chunk::<20>().filter(|_| h.len() == 20) {
        let word = |i: usize| u32::from_ne_bytes([w[i], w[i + 1], w[i + 2], w[i + 3]]) as u64;
        let acc = word(0) + word(4) + word(8) + word(12) + word(16);
        return finish(fold64(acc)) == 0;
    }
    verifies(h)
}

/// True when `data` (checksum field included) sums to 0xFFFF, i.e. it verifies.
#[inline]
pub fn verifies(data: &[u8]) -> bool {
    finish(sum(data)) == 0
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word changes from `old` to `new`.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = (!check as u32) + (!old as u32) + new as u32;
    finish(acc)
}

/// The IPv4 header checksum after the TTL went down by one: [`update16`] of the word (TTL,
/// protocol) going from `old` to `old - 0x0100`, for which `!old + new` is the constant 0xFEFF
/// whatever the TTL (at least 1) and protocol; so the same result, without reading them.
#[inline(always)]
pub fn ttl_decremented(check: u16) -> u16 {
    finish(!check as u32 + 0xfeff)
}

/// RFC 1624 for a 32-bit field (an IPv4 address): two word updates folded together.
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let acc = (!check as u32)
        + (!(old >> 16) as u16 as u32)
        + (!(old as u16) as u32)
        + (new >> 16)
        + (new & 0xffff);
    finish(acc)
}

/// Pseudo-header sum for TCP/UDP/ICMPv6 over IPv4 (RFC 793 3.1, RFC 768).
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u32 {
    combine(combine(sum(&src), sum(&dst)), proto as u32 + len as u32)
}

/// Pseudo-header sum for upper layers over IPv6 (RFC 8200 8.1).
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8, len: u32) -> u32 {
    let mut acc = combine(sum(src), sum(dst));
    acc = combine(acc, (len >> 16) + (len & 0xffff));
    combine(acc, next_header as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071 section 3's worked example: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
    #[test]
    fn rfc1071_example() {
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum(&d)), !0xddf2);
    }

    /// A real IPv4 header (from Wikipedia's IPv4 checksum example): checksum 0xb861.
    #[test]
    fn ipv4_header_vector() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert!(verifies(&h));
        assert!(verifies_ipv4_header(&h));
        h[3] ^= 1;
        assert!(!verifies_ipv4_header(&h));
    }

    /// RFC 1624 section 4's example: HC 0xDD2F, m 0x5555 -> m' 0x3285 gives 0x0000.
    #[test]
    fn rfc1624_example() {
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    /// The folds RFC 1071 describes, a loop until the carries are gone: the reference for the
    /// branch-free ones.
    fn fold_loop(mut acc: u64, bits: u32) -> u64 {
        let mask = (1u64 << bits) - 1;
        while acc > mask {
            acc = (acc & mask) + (acc >> bits);
        }
        acc
    }

    /// Every checksum value, every TTL that may be decremented, two protocols: the same
    /// as RFC 1624's general update.
    #[test]
    fn ttl_decrement_is_the_general_update() {
        for check in 0..=u16::MAX {
            for ttl in 1..=255u16 {
                for proto in [6u16, 17] {
                    let old = ttl << 8 | proto;
                    let want = update16(check, old, old - 0x0100);
                    assert_eq!(ttl_decremented(check), want, "{check:#x} {ttl} {proto}");
                }
            }
        }
    }

    #[test]
    fn folds_at_the_carry_edges() {
        for acc in [0, 1, 0xffff, 0x1_0000, 0x1_fffe, 0xffff_0001, 0xffff_ffff, 0x8000_8000] {
            assert_eq!(!finish(acc) as u64, fold_loop(acc as u64, 16), "{acc:#x}");
        }
        for acc in [0, 0xffff_ffff, 0x1_0000_0000, 0x1_ffff_fffe, u64::MAX, u64::MAX - 1] {
            assert_eq!(fold64(acc) as u64, fold_loop(acc, 32), "{acc:#x}");
        }
    }

    proptest! {
        #[test]
        fn folds_match_the_loop(acc in any::<u64>()) {
            prop_assert_eq!(fold64(acc) as u64, fold_loop(acc, 32));
            prop_assert_eq!(!finish(acc as u32) as u64, fold_loop(acc as u32 as u64, 16));
        }

        #[test]
        fn ipv4_fast_path_agrees(h in proptest::collection::vec(any::<u8>(), 20..=60)) {
            prop_assert_eq!(verifies_ipv4_header(&h), verifies(&h));
            let mut fixed = h.clone();
            fixed[10] = 0;
            fixed[11] = 0;
            let c = checksum(&fixed);
            fixed[10..12].copy_from_slice(&c.to_be_bytes());
            prop_assert!(verifies_ipv4_header(&fixed));
        }

        #[test]
        fn incremental_matches_full_recompute(
            mut words in proptest::collection::vec(any::<u16>(), 2..40),
            at in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            // word 0 holds the checksum
            words[0] = 0;
            let bytes = |w: &[u16]| w.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
            words[0] = checksum(&bytes(&words));
            let i = 1 + at.index(words.len() - 1);
            let old = words[i];
            words[i] = new;
            let inc = update16(words[0], old, new);
            words[0] = 0;
            let full = checksum(&bytes(&words));
            // One's complement has two zeros; both verify.
            prop_assert!(inc == full || (inc == 0xffff && full == 0) || (inc == 0 && full == 0xffff));
        }

        #[test]
        fn native_order_verify_matches_the_loop(mut h in any::<[u8; 20]>(), fix in any::<bool>()) {
            if fix {
                h[10..12].fill(0);
                let c = checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            prop_assert_eq!(verifies_ipv4_header(&h), verifies(&h));
        }

        #[test]
        fn update32_is_two_update16(check in any::<u16>(), old in any::<u32>(), new in any::<u32>()) {
            let two = update16(update16(check, (old >> 16) as u16, (new >> 16) as u16), old as u16, new as u16);
            let one = update32(check, old, new);
            prop_assert!(one == two || (one ^ two) == 0xffff && (one == 0 || two == 0));
        }
    }
}
