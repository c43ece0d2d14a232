//! The parse stage on arbitrary bytes: never panics; on success every offset is inside the frame.
#![no_main]

use ferroplane_pipeline::meta::Meta;
use ferroplane_pipeline::parse::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut m = Meta::default();
    if parse(data, &mut m, 7).is_ok() {
        assert!(m.l3_offset as usize <= data.len());
        assert!(m.l3_end as usize <= data.len());
        assert!(m.l4_offset as usize <= m.l3_end as usize);
    }
});
