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

#[test]
fn steady_state_burst_allocates_nothing() {
    let mut b = TablesBuilder::new(7);
    b.port(PortInfo {
        name: "l".into(),
        mac: [2, 0, 0, 0, 0, 1],
        mtu: 1500,
        addresses: vec![("10.1.0.1".parse().unwrap(), 24)],
    });
    b.port(PortInfo {
        name: "r".into(),
        mac: [2, 0, 0, 0, 0, 2],
        mtu: 1500,
        addresses: vec![("10.2.0.1".parse().unwrap(), 24)],
    });
    let hops: Vec<NextHopSpec> = ["10.2.0.2", "10.2.0.3"]
        .iter()
        .map(|a| NextHopSpec { via: Some(a.parse().unwrap()), dev: None, weight: 1 })
        .collect();
    b.route("198.51.100.0".parse::<IpAddr>().unwrap(), 24, &hops, false).unwrap();
    b.neighbour(1, "10.2.0.2".parse().unwrap(), [2, 0, 0, 0, 2, 2]);
    b.neighbour(1, "10.2.0.3".parse().unwrap(), [2, 0, 0, 0, 2, 3]);
    let mut r = OfflineRouter::new(b.build().unwrap()).unwrap();
    let frames: Vec<Vec<u8>> = (0..64).map(frame).collect();

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
