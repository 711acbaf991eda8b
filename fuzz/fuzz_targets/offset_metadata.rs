#![no_main]
// The record processor's commit metadata: hostile text read, partitions' progress written.
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcon_fuzz::bounded(
    data,
    0,
    kcon_fuzz::offset_metadata::run
));
