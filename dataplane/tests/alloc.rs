//! A steady-state burst allocates nothing: a counting global allocator watches one full worker
//! poll (receive 64 frames, run the L3 pipeline, transmit) after warm-up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;

use ferroplane_dataplane::offline::OfflineRouter;
use ferroplane_pipeline::tables::{NextHopSpec, PortInfo, TablesBuilder};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|a| a.get())
}

fn frame(i: u16) -> Vec<u8> {
    // Ethernet + IPv4 + UDP, 64 bytes on the wire minus FCS.
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 1, 2, 0x08, 0x00];
    let mut ip = [0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 0, 2, 198, 51, 100, 0];
    ip[19] = (i % 250) as u8 + 1;
    let c = ferroplane_pipeline::checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&(1024 + i).to_be_bytes());
    f.extend_from_slice(&[0, 9, 0, 26, 0, 0]);
    f.resize(60, 0);
    f
}

/// Ethernet + IPv6 + UDP to 2001:db8::N (62 bytes; the UDP checksum, which forwarding does
/// not read, left 0).
fn frame6(i: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 1, 2, 0x86, 0xdd];
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
    f.extend_from_slice(&"fd00:1::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    let dst = u128::from("2001:db8::".parse::<std::net::Ipv6Addr>().unwrap()) | u128::from(i) << 64;
    f.extend_from_slice(&dst.to_be_bytes());
    f.extend_from_slice(&(1024 + i).to_be_bytes());
    f.extend_from_slice(&[0, 9, 0, 8, 0, 0]);
    f
}

/// A burst of IPv4 and IPv6 frames (the route stage gathers the IPv6 ones into one burst
/// lookup) allocates nothing once the structures have been touched.
#[test]
fn steady_state_burst_allocates_nothing() {
    let mut b = TablesBuilder::new(7);
    b.port(PortInfo {
        name: "l".into(),
        mac: [2, 0, 0, 0, 0, 1],
        mtu: 1500,
        addresses: vec![("10.1.0.1".parse().unwrap(), 24), ("fd00:1::1".parse().unwrap(), 64)],
    });
    b.port(PortInfo {
        name: "r".into(),
        mac: [2, 0, 0, 0, 0, 2],
        mtu: 1500,
        addresses: vec![("10.2.0.1".parse().unwrap(), 24), ("fd00:2::1".parse().unwrap(), 64)],
    });
    let via = |hops: [&str; 2]| -> Vec<NextHopSpec> {
        hops.iter()
            .map(|a| NextHopSpec { via: Some(a.parse().unwrap()), dev: None, weight: 1 })
            .collect()
    };
    b.route("198.51.100.0".parse::<IpAddr>().unwrap(), 24, &via(["10.2.0.2", "10.2.0.3"]), false)
        .unwrap();
    b.route("2001:db8::".parse::<IpAddr>().unwrap(), 32, &via(["fd00:2::2", "fd00:2::3"]), false)
        .unwrap();
    for (i, a) in ["10.2.0.2", "10.2.0.3", "fd00:2::2", "fd00:2::3"].iter().enumerate() {
        b.neighbour(1, a.parse().unwrap(), [2, 0, 0, 0, 2, 2 + (i as u8 & 1)]);
    }
    let mut r = OfflineRouter::new(b.build().unwrap()).unwrap();
    let frames: Vec<Vec<u8>> =
        (0..64).map(|i| if i % 2 == 0 { frame(i) } else { frame6(i) }).collect();

    // Warm-up: first touches of every structure.
    for round in 0..3 {
        for f in &frames {
            assert!(r.inject(0, f, round));
        }
        assert_eq!(r.poll(round), 64);
        r.drain_tx(|_, _, _| {});
    }
    for f in &frames {
        r.inject(0, f, 10);
    }
    let before = allocs();
    let n = r.poll(10);
    let during = allocs() - before;
    assert_eq!(n, 64);
    assert_eq!(during, 0, "a steady-state burst of {n} frames made {during} allocations");
    let mut out = 0;
    r.drain_tx(|p, _, _| {
        assert_eq!(p, 1);
        out += 1;
    });
    assert_eq!(out, 64, "every frame forwarded");
}
