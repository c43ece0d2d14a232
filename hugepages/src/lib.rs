//! Aligned memory regions backed by 2 MiB huge pages.
//!
//! Packet buffer pools (and later AF_XDP UMEMs and large tables) want memory that is
//! page-aligned, pinned in few TLB entries and zeroed. [`Region::new`] asks the kernel for
//! `MAP_HUGETLB` pages of 2 MiB; when none are reserved (`/proc/sys/vm/nr_hugepages` is 0, the
//! default) it falls back to ordinary 4 KiB pages and logs one warning per process saying how to
//! reserve huge pages. Either way the region is zeroed, aligned to its page size and unmapped on
//! drop.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

/// Size of one huge page on x86-64.
pub const HUGE_PAGE_SIZE: usize = 2 * 1024 * 1024;
/// Size of one ordinary page.
pub const PAGE_SIZE: usize = 4096;

/// What backs a [`Region`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// 2 MiB pages from the kernel's reserved huge page pool.
    HugePages,
    /// Ordinary 4 KiB pages (the fallback).
    SmallPages,
}

/// How to back a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Huge pages when the kernel has them, else small pages with one warning.
    PreferHuge,
    /// Huge pages or an error.
    RequireHuge,
    /// Small pages only (tests, tiny pools).
    SmallOnly,
}

/// Why a region could not be mapped.
#[derive(Debug)]
pub enum Error {
    /// The requested length was zero.
    ZeroLength,
    /// `RequireHuge` and the kernel has no free huge pages for this size.
    NoHugePages { len: usize, source: std::io::Error },
    /// mmap failed even with small pages.
    Map { len: usize, source: std::io::Error },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::ZeroLength => write!(f, "a memory region cannot be empty"),
            Error::NoHugePages { len, source } => write!(
                f,
                "no huge pages for a {len}-byte region ({source}); reserve some with \
                 `echo 256 > /proc/sys/vm/nr_hugepages`"
            ),
            Error::Map { len, source } => write!(f, "cannot map a {len}-byte region: {source}"),
        }
    }
}

impl std::error::Error for Error {}

static WARNED: AtomicBool = AtomicBool::new(false);

/// A zeroed, page-aligned anonymous mapping, unmapped on drop.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    backing: Backing,
}

// SAFETY: a Region is plain memory exclusively owned by this value.
unsafe impl Send for Region {}
// SAFETY: shared access only hands out `&[u8]`.
unsafe impl Sync for Region {}

impl Region {
    /// Maps at least `len` bytes (rounded up to the page size of the backing).
    pub fn new(len: usize, policy: Policy) -> Result<Region, Error> {
        if len == 0 {
            return Err(Error::ZeroLength);
        }
        if policy != Policy::SmallOnly {
            let huge_len = round_up(len, HUGE_PAGE_SIZE);
            match map(huge_len, libc::MAP_HUGETLB) {
                Ok(ptr) => {
                    return Ok(Region { ptr, len: huge_len, backing: Backing::HugePages });
                }
                Err(source) if policy == Policy::RequireHuge => {
                    return Err(Error::NoHugePages { len, source });
                }
                Err(source) => {
                    if !WARNED.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "no 2 MiB huge pages available ({source}); falling back to 4 KiB pages, \
                             which costs TLB misses on the fast path. Reserve huge pages with \
                             `echo 256 > /proc/sys/vm/nr_hugepages`"
                        );
                    }
                }
            }
        }
        let small_len = round_up(len, PAGE_SIZE);
        let ptr = map(small_len, 0).map_err(|source| Error::Map { len, source })?;
        Ok(Region { ptr, len: small_len, backing: Backing::SmallPages })
    }

    /// Length in bytes (a multiple of the page size).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: empty regions are refused by [`Region::new`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What the kernel gave us.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes, readable, and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Gives the region up for the life of the process. Packet pools live as long as the
    /// process does; leaking their region lets buffers hold `&'static mut` frames, so the packet
    /// model needs no `unsafe` to hand frames around.
    pub fn leak(self) -> &'static mut [u8] {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: the mapping is never unmapped after this point.
        unsafe { std::slice::from_raw_parts_mut(me.ptr.as_ptr(), me.len) }
    }
}

impl Region {
    /// Takes back a region given up with [`Region::leak`], to unmap it on drop.
    ///
    /// # Safety
    /// `mem` must be exactly the slice `leak` returned for a region of this `backing`, and no
    /// reference into it may be used after the returned `Region` is dropped.
    pub unsafe fn reclaim(mem: *mut u8, len: usize, backing: Backing) -> Region {
        Region { ptr: NonNull::new(mem).expect("leaked regions are never null"), len, backing }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region").field("len", &self.len).field("backing", &self.backing).finish()
    }
}

/// A fixed-length array for large lookup tables (FIBs), read at random on the fast path.
///
/// Unlike [`Region`] it needs no reserved pool: it maps ordinary anonymous memory aligned to
/// 2 MiB and asks for transparent huge pages (`MADV_HUGEPAGE`). The alignment is the point: a
/// `Vec` of a few MiB starts wherever the allocator put it, and the kernel backs with huge pages
/// only the whole aligned 2 MiB spans inside it. Measured on the CI VM: a 200k-prefix IPv6 FIB's
/// 11 MiB of hash buckets, in 29 `Vec`s of 8 KiB to 4 MiB, got 2 MiB of huge pages (10 MiB in
/// `Table`s); the rest were 4 KiB pages, whose TLB misses cost a nested page walk under KVM.
///
/// Tables under 1 MiB take ordinary page-aligned memory (a huge page each would mostly hold
/// nothing).
pub struct Table<T> {
    ptr: NonNull<T>,
    len: usize,
    /// Bytes mapped at `ptr` (0: nothing mapped, `len == 0`).
    mapped: usize,
}

// SAFETY: a Table owns its elements exclusively, like a `Box<[T]>`.
unsafe impl<T: Send> Send for Table<T> {}
// SAFETY: shared access only hands out `&[T]`.
unsafe impl<T: Sync> Sync for Table<T> {}

/// Types for which all-zero bytes are a valid value, so a fresh mapping (zeroed by the kernel)
/// needs no writes: a zeroed table stays untouched, and unbacked, until used.
///
/// # Safety
/// Implement only for types valid as all-zero bytes.
pub unsafe trait Zeroed: Copy {}

// SAFETY: every bit pattern is a valid integer.
unsafe impl Zeroed for u8 {}
// SAFETY: as above.
unsafe impl Zeroed for u16 {}
// SAFETY: as above.
unsafe impl Zeroed for u32 {}
// SAFETY: as above.
unsafe impl Zeroed for u64 {}

impl<T: Zeroed> Table<T> {
    /// `len` zeroes, without writing them.
    pub fn zeroed(len: usize) -> Table<T> {
        Table::map(len)
    }
}

impl<T: Copy> Table<T> {
    /// `len` copies of `value`. Panics only where `Vec` would: the size overflows, or the
    /// kernel has no memory (then through `handle_alloc_error`).
    pub fn filled(len: usize, value: T) -> Table<T> {
        let t: Table<T> = Table::map(len);
        for i in 0..len {
            // SAFETY: `i < len` and the mapping holds `len` elements, aligned (page-aligned
            // start, `align_of::<T>() <= PAGE_SIZE`); `T: Copy` has no drop to skip.
            unsafe { t.ptr.as_ptr().add(i).write(value) };
        }
        t
    }

    /// Room for `len` elements, zero bytes (a valid `T` only where `T: Zeroed`: callers
    /// write every element first otherwise).
    fn map(len: usize) -> Table<T> {
        let bytes = len.checked_mul(std::mem::size_of::<T>()).expect("table size overflows");
        if bytes == 0 {
            return Table { ptr: NonNull::dangling(), len, mapped: 0 };
        }
        assert!(std::mem::align_of::<T>() <= PAGE_SIZE, "elements aligned past a page");
        let huge = bytes >= HUGE_PAGE_SIZE / 2;
        let align = if huge { HUGE_PAGE_SIZE } else { PAGE_SIZE };
        // Whole huge pages: THP backs only 2 MiB spans that the mapping covers entirely.
        // Map `align` more than needed, then unmap the unaligned head and the tail.
        let (mapped, over) = bytes
            .checked_next_multiple_of(align)
            .and_then(|m| Some((m, m.checked_add(align - PAGE_SIZE)?)))
            .expect("table size overflows");
        let Ok(raw) = map(over, 0) else {
            std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(mapped, align).expect("page-sized layout"),
            );
        };
        let raw = raw.as_ptr() as usize;
        let start = round_up(raw, align);
        // SAFETY: both ranges lie inside the mapping just made, page-aligned, and nothing
        // refers to them.
        unsafe {
            if start > raw {
                libc::munmap(raw as *mut libc::c_void, start - raw);
            }
            if raw + over > start + mapped {
                libc::munmap((start + mapped) as *mut libc::c_void, raw + over - start - mapped);
            }
            if huge {
                // Advice only: without THP the table still works, on 4 KiB pages.
                libc::madvise(start as *mut libc::c_void, mapped, libc::MADV_HUGEPAGE);
            }
        }
        let ptr = NonNull::new(start as *mut T).expect("mapping is not at address 0");
        Table { ptr, len, mapped }
    }
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table { ptr: NonNull::dangling(), len: 0, mapped: 0 }
    }
}

impl<T> std::ops::Deref for Table<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements at `ptr` (or a dangling, aligned pointer with
        // `len == 0`), living as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> std::ops::DerefMut for Table<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Clone for Table<T> {
    /// A copy with the same alignment and huge-page advice (a copy through a `Vec` would have
    /// neither), written once.
    fn clone(&self) -> Self {
        let t: Table<T> = Table::map(self.len);
        // SAFETY: both hold `len` elements and are different mappings; raw writes, so no
        // reference to the not-yet-valid elements is made.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), t.ptr.as_ptr(), self.len) };
        t
    }
}

impl<T> Drop for Table<T> {
    fn drop(&mut self) {
        if self.mapped > 0 {
            // SAFETY: exactly the range `map` kept; elements are `Copy`, so none needs
            // dropping.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.mapped) };
        }
    }
}

impl<T> std::fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("len", &self.len).field("mapped", &self.mapped).finish()
    }
}

fn round_up(len: usize, to: usize) -> usize {
    len.div_ceil(to) * to
}

fn map(len: usize, extra_flags: libc::c_int) -> std::io::Result<NonNull<u8>> {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra_flags,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(NonNull::new(ptr.cast()).expect("mmap never returns null on success"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pages_are_zeroed_aligned_and_writable() {
        let mut r = Region::new(10_000, Policy::SmallOnly).unwrap();
        assert_eq!(r.backing(), Backing::SmallPages);
        assert_eq!(r.len(), 12_288);
        assert_eq!(r.as_ptr() as usize % PAGE_SIZE, 0);
        assert!(r.as_slice().iter().all(|&b| b == 0));
        r.as_mut_slice()[12_287] = 7;
        assert_eq!(r.as_slice()[12_287], 7);
    }

    #[test]
    fn prefer_huge_always_gives_memory() {
        let r = Region::new(3 * 1024 * 1024, Policy::PreferHuge).unwrap();
        match r.backing() {
            Backing::HugePages => {
                assert_eq!(r.len(), 4 * 1024 * 1024);
                assert_eq!(r.as_ptr() as usize % HUGE_PAGE_SIZE, 0);
            }
            Backing::SmallPages => assert_eq!(r.len(), 3 * 1024 * 1024),
        }
    }

    #[test]
    fn require_huge_matches_the_kernel_pool() {
        let free: usize = std::fs::read_to_string("/proc/sys/vm/nr_hugepages")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let r = Region::new(HUGE_PAGE_SIZE, Policy::RequireHuge);
        if free == 0 {
            let e = r.unwrap_err();
            assert!(e.to_string().contains("nr_hugepages"), "{e}");
        } else {
            // Some may be in use by others; a success must really be huge pages.
            if let Ok(r) = r {
                assert_eq!(r.backing(), Backing::HugePages);
            }
        }
    }

    #[test]
    fn tables_are_aligned_filled_cloned_and_advised() {
        let small: Table<u32> = Table::filled(1000, 7);
        assert!(Table::<u64>::zeroed(5000).iter().all(|&x| x == 0));
        assert_eq!(small.as_ptr() as usize % PAGE_SIZE, 0);
        assert!(small.iter().all(|&x| x == 7));
        assert_eq!(&small.clone()[..], &small[..]);
        let mut big: Table<u16> = Table::zeroed(3 << 20);
        assert_eq!(big.as_ptr() as usize % HUGE_PAGE_SIZE, 0, "huge-page aligned");
        big[(3 << 20) - 1] = 9;
        let copy = big.clone();
        assert_eq!(copy.as_ptr() as usize % HUGE_PAGE_SIZE, 0);
        assert_eq!(copy.len(), 3 << 20);
        assert_eq!(copy[(3 << 20) - 1], 9);
        // The kernel took the advice: the mapping that holds the table carries the hugepage
        // flag (`hg`), whether or not THP could back it at this moment.
        let at = big.as_ptr() as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut holds = false;
        let mut flags = None;
        for line in smaps.lines() {
            let range = line.split(' ').next().and_then(|r| r.split_once('-'));
            // Header lines start with the mapping's range; field lines do not parse as one.
            if let Some((lo, hi)) = range {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    holds = (lo..hi).contains(&at);
                }
            }
            if holds && line.starts_with("VmFlags") {
                flags = Some(line.to_string());
                break;
            }
        }
        let flags = flags.expect("the table's mapping is in smaps");
        assert!(flags.contains(" hg"), "{flags}");
        let empty: Table<u64> = Table::filled(0, 1);
        assert!(empty.is_empty());
        assert!(empty.clone().is_empty());
    }

    #[test]
    fn zero_length_is_an_error() {
        assert!(matches!(Region::new(0, Policy::SmallOnly), Err(Error::ZeroLength)));
    }
}
