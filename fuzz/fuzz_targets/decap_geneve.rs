//! The Geneve decapsulator on fuzzed tunnel headers and inner frames behind a valid outer header
//! addressed to one of our tunnel endpoints (see `decap_common.rs` for the input layout and
//! the checks): never panics, the window stays inside the frame, every packet gets a verdict.
#![no_main]

mod decap_common;

use std::cell::RefCell;

use decap_common::{build_tables, Harness};
use ferroplane_pipeline::tunnel::TunnelKind;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static H: RefCell<Harness> =
        RefCell::new(Harness::new(TunnelKind::Geneve, build_tables(TunnelKind::Geneve)));
}

fuzz_target!(|data: &[u8]| {
    H.with(|h| h.borrow_mut().run(data));
});
