//! IEEE 802.1Q tags (and 802.1ad outer tags, which share the layout).

use super::{be16, put16, Error, Result};

/// 802.1Q customer tag.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad service tag (the outer tag of QinQ).
pub const TPID_8021AD: u16 = 0x88a8;

/// The four bytes after a TPID: priority, drop eligibility, VLAN id, then the inner ethertype.
#[derive(Debug)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// `buf` starts right after the TPID (the TCI).
    pub fn new_checked(buf: T) -> Result<Self> {
        if buf.as_ref().len() < 4 {
            return Err(Error::Truncated);
        }
        Ok(VlanTag { buf })
    }

    /// Priority code point (0-7).
    #[inline]
    pub fn pcp(&self) -> u8 {
        self.buf.as_ref()[0] >> 5
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.buf.as_ref()[0] & 0x10 != 0
    }

    /// VLAN identifier (0-4095).
    #[inline]
    pub fn vid(&self) -> u16 {
        be16(self.buf.as_ref(), 0) & 0x0fff
    }

    /// The ethertype that follows the tag.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[4..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    pub fn set_vid(&mut self, vid: u16) {
        let tci = be16(self.buf.as_ref(), 0) & 0xf000 | (vid & 0x0fff);
        put16(self.buf.as_mut(), 0, tci);
    }

    pub fn set_pcp(&mut self, pcp: u8) {
        let b = &mut self.buf.as_mut()[0];
        *b = (*b & 0x1f) | (pcp << 5);
    }
}

/// Walks up to two stacked tags (802.1ad then 802.1Q) of an Ethernet frame. Returns the final
/// ethertype, the offset of the L3 header, and the innermost VLAN id if the frame was tagged.
pub fn skip_vlan_tags(frame: &[u8]) -> Result<(u16, usize, Option<u16>)> {
    if frame.len() < 14 {
        return Err(Error::Truncated);
    }
    let mut ethertype = be16(frame, 12);
    let mut off = 14;
    let mut vid = None;
    for _ in 0..2 {
        if ethertype != TPID_8021Q && ethertype != TPID_8021AD {
            break;
        }
        let tag = VlanTag::new_checked(&frame[off..])?;
        vid = Some(tag.vid());
        ethertype = tag.ethertype();
        off += 4;
    }
    if ethertype == TPID_8021Q || ethertype == TPID_8021AD {
        // A third tag: nobody sends these; refuse rather than guess.
        return Err(Error::Malformed);
    }
    Ok((ethertype, off, vid))
}
