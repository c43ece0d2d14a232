//! The whole router on arbitrary frames: worker pipeline and slow path, both ports, with the
//! clock advancing. Checks that nothing panics and no buffer is ever lost.
#![no_main]

use std::sync::OnceLock;

use ferroplane_dataplane::offline::{OfflineRouter, POOL_FRAMES};
use ferroplane_pipeline::tables::{NextHopSpec, PortInfo, Tables, TablesBuilder};
use libfuzzer_sys::fuzz_target;

fn tables() -> Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut b = TablesBuilder::new(1);
        b.port(PortInfo {
            name: "l".into(),
            mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
            addresses: vec![("10.1.0.1".parse().unwrap(), 24), ("2001:db8:1::1".parse().unwrap(), 64)],
        });
        b.port(PortInfo {
            name: "r".into(),
            mac: [2, 0, 0, 0, 0, 2],
            mtu: 600,
            addresses: vec![("10.2.0.1".parse().unwrap(), 24), ("2001:db8:2::1".parse().unwrap(), 64)],
        });
        let hop = |a: &str| NextHopSpec { via: Some(a.parse().unwrap()), dev: None, weight: 1 };
        b.route("0.0.0.0".parse().unwrap(), 0, &[hop("10.2.0.2"), hop("10.2.0.3")], false).unwrap();
        b.route("::".parse().unwrap(), 0, &[hop("2001:db8:2::2")], false).unwrap();
        b.route("203.0.113.0".parse().unwrap(), 24, &[], true).unwrap();
        b.neighbour(1, "10.2.0.2".parse().unwrap(), [2, 0, 0, 0, 2, 2]);
        b.build().unwrap()
    })
    .clone()
}

thread_local! {
    // One router for the whole run (building one maps 16 MiB): state such as learned neighbours
    // carries over between inputs, which only widens what is explored.
    static ROUTER: std::cell::RefCell<OfflineRouter> =
        std::cell::RefCell::new(OfflineRouter::new(tables()).expect("router"));
    static CLOCK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fuzz_target!(|data: &[u8]| {
    ROUTER.with(|r| run(&mut r.borrow_mut(), data));
});

fn run(r: &mut OfflineRouter, data: &[u8]) {
    // Input: [port byte, len byte, frame...] repeated; the clock advances 300 ms per frame so that
    // neighbour timers and rate limits run too.
    let mut rest = data;
    let mut t = CLOCK.with(|c| c.get());
    while rest.len() >= 2 {
        let port = (rest[0] & 1) as u16;
        let len = (rest[1] as usize).min(rest.len() - 2);
        let frame = &rest[2..2 + len];
        rest = &rest[2 + len..];
        t += 300_000_000;
        r.run_burst(t, &[(port, frame, t)]);
        r.drain_tx(|_, _, _| {});
    }
    t += 10_000_000_000;
    r.advance_to(t);
    r.finish(t);
    r.drain_tx(|_, _, _| {});
    CLOCK.with(|c| c.set(t));
    assert_eq!(r.pool_available(), POOL_FRAMES, "a buffer was lost");
}
