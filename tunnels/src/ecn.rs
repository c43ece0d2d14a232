//! ECN and DSCP across a tunnel (RFC 6040, "normal mode"), shared by every tunnel kind.
//!
//! Encapsulation copies the inner DS field (DSCP and ECN) into the outer header (RFC 2983's
//! uniform model for DSCP; RFC 6040 4.1 normal mode for ECN). Decapsulation merges the outer ECN
//! into the inner packet by the table of RFC 6040 4.2: congestion marked on the outer path (CE)
//! survives into the inner header, and CE over a not-ECT inner packet means the packet must be
//! dropped (the endpoint cannot tell it about the congestion any other way).

use ferroplane_pipeline::checksum;

pub const NOT_ECT: u8 = 0b00;
pub const ECT1: u8 = 0b01;
pub const ECT0: u8 = 0b10;
pub const CE: u8 = 0b11;

/// The DS field (DSCP << 2 | ECN) of the IP header at the start of `ip`.
#[inline]
pub fn ds_field(ip: &[u8], v6: bool) -> u8 {
    match (v6, ip.first(), ip.get(1)) {
        (false, _, Some(&tos)) => tos,
        (true, Some(&a), Some(&b)) => (a << 4) | (b >> 4),
        _ => 0,
    }
}

/// The inner ECN codepoint after decapsulation, or `None`: drop (RFC 6040 4.2 table).
#[inline]
pub fn decap_ecn(outer: u8, inner: u8) -> Option<u8> {
    match (outer & 3, inner & 3) {
        (CE, NOT_ECT) => None,
        (CE, _) => Some(CE),
        (ECT1, ECT0) => Some(ECT1),
        (_, i) => Some(i),
    }
}

/// Writes `ecn` into the inner IP header at the start of `ip` (IPv4: with an RFC 1624 update of
/// the header checksum). `ip` must hold the fixed header (the parse stage checked it).
#[inline]
pub fn set_ecn(ip: &mut [u8], v6: bool, ecn: u8) {
    if v6 {
        if let Some(b) = ip.get_mut(1) {
            *b = (*b & !0x30) | ((ecn & 3) << 4);
        }
        return;
    }
    if ip.len() < 20 {
        return;
    }
    let old = u16::from_be_bytes([ip[0], ip[1]]);
    ip[1] = (ip[1] & !3) | (ecn & 3);
    let new = u16::from_be_bytes([ip[0], ip[1]]);
    let check = u16::from_be_bytes([ip[10], ip[11]]);
    ip[10..12].copy_from_slice(&checksum::update16(check, old, new).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6040 section 4.2, Figure 4, row by row (inner) and column by column (outer).
    #[test]
    fn decap_table_of_rfc6040() {
        let table = [
            // inner      outer: Not-ECT       ECT(0)        ECT(1)        CE
            (NOT_ECT, [Some(NOT_ECT), Some(NOT_ECT), Some(NOT_ECT), None]),
            (ECT0, [Some(ECT0), Some(ECT0), Some(ECT1), Some(CE)]),
            (ECT1, [Some(ECT1), Some(ECT1), Some(ECT1), Some(CE)]),
            (CE, [Some(CE), Some(CE), Some(CE), Some(CE)]),
        ];
        for (inner, row) in table {
            for (outer, want) in [NOT_ECT, ECT0, ECT1, CE].into_iter().zip(row) {
                assert_eq!(decap_ecn(outer, inner), want, "outer {outer:02b} inner {inner:02b}");
            }
        }
    }

    #[test]
    fn set_ecn_keeps_the_ipv4_checksum_valid() {
        let mut h = [0x45, 0x02, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let c = checksum::checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        set_ecn(&mut h, false, CE);
        assert_eq!(h[1], 0x03);
        assert!(checksum::verifies(&h));
        // Traffic class 0xaa: DSCP 42 with ECT(0); CE sets the two low bits only.
        let mut v6 = [0x6a, 0xa0, 0, 0];
        assert_eq!(ds_field(&v6, true), 0xaa);
        set_ecn(&mut v6, true, CE);
        assert_eq!(v6[..2], [0x6a, 0xb0]);
        assert_eq!(ds_field(&v6, true), 0xab);
    }
}
