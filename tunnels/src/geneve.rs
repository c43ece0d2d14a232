//! Geneve (RFC 8926 section 3): an 8-byte base header after UDP (destination port 6081), then
//! `opt_len` x 4 bytes of TLV options, then the payload of `protocol` (0x6558: Ethernet).
//!
//! ```text
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! |          Option Class         |      Type     |R|R|R| Length  |   (per option)
//! ```
//!
//! Option lengths are in 4-byte units and exclude the option's own 4-byte header. The high bit
//! of the option type is the critical bit: a tunnel endpoint that does not understand a
//! critical option must drop the packet (RFC 8926 3.5.1); [`Options::critical_unknown`] finds
//! them.

/// The IANA port (RFC 8926 3.3).
pub const PORT: u16 = 6081;
/// Base header length.
pub const HEADER_LEN: usize = 8;
/// Protocol type of an inner Ethernet frame (Transparent Ethernet Bridging).
pub const PROTO_ETHERNET: u16 = 0x6558;
/// Largest options area: 6 bits of 4-byte units.
pub const MAX_OPTIONS_LEN: usize = 63 * 4;
/// The critical bit of an option type.
pub const CRITICAL: u8 = 0x80;

/// Why a Geneve header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Truncated,
    /// A version other than 0 (RFC 8926 3.4: must not be processed).
    BadVersion,
    /// An option runs past the options area.
    BadOption,
}

/// One TLV option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt<'a> {
    pub class: u16,
    pub kind: u8,
    pub data: &'a [u8],
}

impl Opt<'_> {
    #[inline]
    pub fn critical(&self) -> bool {
        self.kind & CRITICAL != 0
    }
}

/// The options area, validated by [`GenevePacket::new_checked`] so iteration cannot fail.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a>(&'a [u8]);

impl<'a> Iterator for Options<'a> {
    type Item = Opt<'a>;
    fn next(&mut self) -> Option<Opt<'a>> {
        let b = self.0;
        if b.len() < 4 {
            return None;
        }
        let len = (b[3] & 0x1f) as usize * 4;
        let data = b.get(4..4 + len)?;
        self.0 = &b[4 + len..];
        Some(Opt { class: u16::from_be_bytes([b[0], b[1]]), kind: b[2], data })
    }
}

impl<'a> Options<'a> {
    /// The first critical option not accepted by `known(class, type)`: the packet must then
    /// be dropped (RFC 8926 3.5.1).
    pub fn critical_unknown(self, known: impl Fn(u16, u8) -> bool) -> Option<Opt<'a>> {
        self.filter(|o| o.critical()).find(|o| !known(o.class, o.kind))
    }
}

/// A Geneve header, its options and payload, bounds-checked once.
#[derive(Debug)]
pub struct GenevePacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> GenevePacket<T> {
    /// Checks the version, that the options fit and that every option's length stays inside
    /// the options area.
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[0] >> 6 != 0 {
            return Err(Error::BadVersion);
        }
        let opt_len = (b[0] & 0x3f) as usize * 4;
        let Some(mut opts) = b.get(HEADER_LEN..HEADER_LEN + opt_len) else {
            return Err(Error::Truncated);
        };
        while !opts.is_empty() {
            if opts.len() < 4 {
                return Err(Error::BadOption);
            }
            let len = 4 + (opts[3] & 0x1f) as usize * 4;
            opts = opts.get(len..).ok_or(Error::BadOption)?;
        }
        Ok(GenevePacket { buf })
    }

    #[inline]
    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    #[inline]
    pub fn options_len(&self) -> usize {
        (self.b()[0] & 0x3f) as usize * 4
    }

    /// O: a control packet (RFC 8926 3.4), for the control plane rather than forwarding.
    #[inline]
    pub fn oam(&self) -> bool {
        self.b()[1] & 0x80 != 0
    }

    /// C: critical options are present.
    #[inline]
    pub fn critical_present(&self) -> bool {
        self.b()[1] & 0x40 != 0
    }

    #[inline]
    pub fn protocol(&self) -> u16 {
        u16::from_be_bytes([self.b()[2], self.b()[3]])
    }

    #[inline]
    pub fn vni(&self) -> u32 {
        let b = self.b();
        u32::from_be_bytes([0, b[4], b[5], b[6]])
    }

    #[inline]
    pub fn options(&self) -> Options<'_> {
        Options(&self.b()[HEADER_LEN..HEADER_LEN + self.options_len()])
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.b()[HEADER_LEN + self.options_len()..]
    }
}

/// Writes a Geneve header with `options` (each data a multiple of 4 bytes, at most 124) into
/// the start of `out`; returns the header length, or None when it does not fit or an option
/// is malformed. The C bit is set when any option is critical.
pub fn emit(out: &mut [u8], vni: u32, protocol: u16, options: &[Opt<'_>]) -> Option<usize> {
    let mut opt_len = 0usize;
    for o in options {
        if o.data.len() % 4 != 0 || o.data.len() > 31 * 4 {
            return None;
        }
        opt_len += 4 + o.data.len();
    }
    if opt_len > MAX_OPTIONS_LEN || vni >= 1 << 24 {
        return None;
    }
    let total = HEADER_LEN + opt_len;
    let h = out.get_mut(..total)?;
    let critical = options.iter().any(Opt::critical);
    let v = vni.to_be_bytes();
    let p = protocol.to_be_bytes();
    h[..HEADER_LEN].copy_from_slice(&[
        (opt_len / 4) as u8,
        if critical { 0x40 } else { 0 },
        p[0],
        p[1],
        v[1],
        v[2],
        v[3],
        0,
    ]);
    let mut at = HEADER_LEN;
    for o in options {
        let c = o.class.to_be_bytes();
        h[at..at + 4].copy_from_slice(&[c[0], c[1], o.kind, (o.data.len() / 4) as u8]);
        h[at + 4..at + 4 + o.data.len()].copy_from_slice(o.data);
        at += 4 + o.data.len();
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_and_critical_bit() {
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let opts = [
            Opt { class: 0x0102, kind: 0x03, data: &data[..4] },
            Opt { class: 0xffff, kind: 0x80 | 0x11, data: &data },
        ];
        let mut b = [0u8; 64];
        let n = emit(&mut b, 0x00ab_cdef, PROTO_ETHERNET, &opts).unwrap();
        assert_eq!(n, HEADER_LEN + 8 + 12);
        let p = GenevePacket::new_checked(&b[..]).unwrap();
        assert_eq!((p.vni(), p.protocol(), p.options_len()), (0xab_cdef, PROTO_ETHERNET, 20));
        assert!(p.critical_present() && !p.oam());
        assert_eq!(p.options().collect::<Vec<_>>(), opts);
        assert_eq!(p.options().critical_unknown(|_, _| false).map(|o| o.class), Some(0xffff));
        assert!(p.options().critical_unknown(|c, t| c == 0xffff && t == 0x91).is_none());
        assert_eq!(p.payload().len(), 64 - n);
    }

    #[test]
    fn malformed_headers_are_refused() {
        let mut b = [0u8; 16];
        b[0] = 0x40; // version 1
        assert_eq!(GenevePacket::new_checked(&b[..]).unwrap_err(), Error::BadVersion);
        b[0] = 2; // 8 bytes of options
        b[8..12].copy_from_slice(&[0, 1, 2, 3]); // an option claiming 12 data bytes
        assert_eq!(GenevePacket::new_checked(&b[..]).unwrap_err(), Error::BadOption);
        b[0] = 3; // options beyond the buffer
        assert_eq!(GenevePacket::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        assert_eq!(GenevePacket::new_checked(&b[..7]).unwrap_err(), Error::Truncated);
        assert!(
            emit(&mut b, 1, PROTO_ETHERNET, &[Opt { class: 1, kind: 1, data: &[1, 2] }]).is_none()
        );
    }

    proptest::proptest! {
        /// Any bytes: no panic, and a header that checks out has options that stay inside it.
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(p) = GenevePacket::new_checked(&b[..]) {
                let used: usize = p.options().map(|o| 4 + o.data.len()).sum();
                proptest::prop_assert_eq!(used, p.options_len());
                proptest::prop_assert!(HEADER_LEN + p.options_len() + p.payload().len() == b.len());
            }
            let _ = crate::vxlan::VxlanPacket::new_checked(&b[..]).map(|v| v.vni());
        }
    }
}
