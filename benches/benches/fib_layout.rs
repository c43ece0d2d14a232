//! Would a compressed IPv4 FIB (poptrie, DXR) make the cold L3 pipeline faster on this machine?
//! This probe measures only the memory side of that question, with the access pattern of the
//! route stage: a burst of 64 random addresses, prefetched, then read. Three layouts, in turn
//! round by round (so they see the same load; see `ferroplane_benches::interleave`):
//!
//! - `dir24 (32 MiB)`: today's first level, one 16-bit entry per /24, one access;
//! - `dir24 (16 MiB)`: the same with 8-bit entries (too few values for a real FIB: the bound of
//!   what shrinking the one-access table could give);
//! - `compressed (4 + 4 MiB)`: a poptrie-style level of 2^18 blocks of 64 /24s, each a 64-bit
//!   bitmap of where a new value starts plus the index of its first value, and a separate array
//!   of 2M values (about the number of distinct runs 1M BGP-like prefixes leave in the first
//!   level): two dependent accesses, each prefetched for the whole burst before it is read.
//!
//! Tables are filled with arbitrary values; only where the reads land matters. Run with
//! `cargo bench -p ferroplane-benches --bench fib_layout`; the figures are in the README.

use std::hint::black_box;
use std::time::Instant;

use ferroplane_benches::interleave::quantile;

const BURST: usize = 64;
const ROUNDS: usize = 20_000;

/// A zeroed vector whose pages the kernel backs with 2 MiB pages where it can (as the FIB's).
fn huge_vec<T: Copy + Default>(len: usize) -> Vec<T> {
    let mut v = vec![T::default(); len];
    let (ptr, bytes) = (v.as_mut_ptr() as usize, len * std::mem::size_of::<T>());
    let start = ptr.next_multiple_of(2 << 20);
    let end = (ptr + bytes) / (2 << 20) * (2 << 20);
    if end > start {
        // SAFETY: advice only, on whole pages inside `v`'s allocation.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
    v
}

#[inline(always)]
fn prefetch<T>(p: *const T) {
    // SAFETY: a hint; every pointer passed here is inside its table.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
}

struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
}

#[derive(Clone, Copy, Default)]
#[repr(C, align(16))]
struct Block {
    starts: u64,
    first: u32,
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 10 } else { ROUNDS };
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut t16: Vec<u16> = huge_vec(1 << 24);
    t16.iter_mut().for_each(|e| *e = rng.next() as u16);
    let mut t8: Vec<u8> = huge_vec(1 << 24);
    t8.iter_mut().for_each(|e| *e = rng.next() as u8);
    let values = 2 << 20;
    let mut blocks: Vec<Block> = huge_vec(1 << 18);
    for (i, b) in blocks.iter_mut().enumerate() {
        // About 8 runs a block (2M values over 2^18 blocks); bit 0 always starts one.
        let r = rng.next() as u64;
        b.starts = (r | r << 32) & 0x0101_0101_0101_0101 | 1;
        b.first = ((i * 8) % (values - BURST)) as u32;
    }
    let mut vals: Vec<u16> = huge_vec(values);
    vals.iter_mut().for_each(|e| *e = rng.next() as u16);

    let names = ["dir24 (32 MiB)", "dir24 (16 MiB)", "compressed (4 + 4 MiB)"];
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); names.len()];
    let mut idx = [0u32; BURST];
    let mut at = [0u32; BURST];
    let mut sum = 0u64;
    for _ in 0..rounds {
        for (case, s) in samples.iter_mut().enumerate() {
            idx.iter_mut().for_each(|i| *i = rng.next() >> 8);
            let start = Instant::now();
            match case {
                0 => {
                    idx.iter().for_each(|&i| prefetch(&t16[i as usize]));
                    sum += idx.iter().map(|&i| t16[i as usize] as u64).sum::<u64>();
                }
                1 => {
                    idx.iter().for_each(|&i| prefetch(&t8[i as usize]));
                    sum += idx.iter().map(|&i| t8[i as usize] as u64).sum::<u64>();
                }
                _ => {
                    idx.iter().for_each(|&i| prefetch(&blocks[(i >> 6) as usize]));
                    for (a, &i) in at.iter_mut().zip(&idx) {
                        let b = blocks[(i >> 6) as usize];
                        let below = b.starts & (u64::MAX >> (63 - (i & 63)));
                        *a = b.first + below.count_ones() - 1;
                        prefetch(&vals[*a as usize]);
                    }
                    sum += at.iter().map(|&a| vals[a as usize] as u64).sum::<u64>();
                }
            }
            s.push(start.elapsed().as_nanos() as f64 / BURST as f64);
        }
    }
    black_box(sum);
    println!(
        "fib layouts: {rounds} rounds of a burst of {BURST} random lookups each, ns per lookup"
    );
    println!("{:<24} {:>7} {:>7}", "layout", "p10", "median");
    for (name, s) in names.iter().zip(&samples) {
        println!("{name:<24} {:>7.2} {:>7.2}", quantile(s, 0.1), quantile(s, 0.5));
    }
}
