//! The control socket's request decoder and the control plane behind it, on arbitrary lines:
//! decoding never panics, and every request it accepts is staged, committed and answered
//! without panicking (bad prefixes, unknown ports, invalid MACs, huge batches are replies).
#![no_main]

use std::cell::RefCell;

use ferroplane_ctl::{decode, Reply};
use ferroplane_dataplane::assemble::build_tables;
use ferroplane_dataplane::config::parse_str;
use ferroplane_dataplane::control::{ControlPlane, Staged};
use ferroplane_pipeline::slowpath::{SlowPath, SlowPathConfig};
use ferroplane_pipeline::tables::TableHandle;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
[dataplane]
workers = [0]

[[port]]
name = "left"
driver = "memory"
mac = "02:00:00:00:00:01"
addresses = ["10.1.0.1/24", "2001:db8:1::1/64"]

[[port]]
name = "right"
driver = "memory"
mac = "02:00:00:00:00:02"
addresses = ["10.2.0.1/24", "2001:db8:2::1/64"]

[[route]]
prefix = "0.0.0.0/0"
nexthops = [{ via = "10.2.0.2" }]
"#;

struct State {
    plane: ControlPlane,
    slow: SlowPath,
    handle: TableHandle,
}

thread_local! {
    // One control plane for the run: state carries over between inputs.
    static STATE: RefCell<State> = RefCell::new({
        let cfg = parse_str(CONFIG, "fuzz.toml").expect("config");
        let mut t = build_tables(&cfg, &|_| None).expect("tables");
        let plane = ControlPlane::new(&cfg, t.ports.clone()).expect("control plane");
        plane.install(&mut t);
        let slow = SlowPath::new(&t, SlowPathConfig::default());
        State { plane, slow, handle: TableHandle::new(t) }
    });
}

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let Ok(req) = decode(&line) else { return };
    STATE.with(|s| {
        let s = &mut *s.borrow_mut();
        let staged = s.plane.stage(req, &mut s.slow);
        let _ = s.plane.commit(&mut s.slow, &s.handle);
        let reply = match staged {
            Staged::Reply(r) => r,
            Staged::Read(req) => s.plane.read(req, &s.slow),
        };
        // Every reply must encode.
        let _ = serde_json::to_string(&reply).expect("reply encodes");
        let _: &Reply = &reply;
        while s.slow.poll_output().is_some() {}
    });
});
