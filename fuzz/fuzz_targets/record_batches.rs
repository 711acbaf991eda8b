#![no_main]
use kcon_codec::fuzzing::{DECOMPRESSION_CAP, record_batches};
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcon_fuzz::bounded(
    data,
    DECOMPRESSION_CAP,
    record_batches
));
