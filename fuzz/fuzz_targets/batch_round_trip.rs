#![no_main]
use kcon_codec::fuzzing::{DECOMPRESSION_CAP, batch_round_trip};
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcon_fuzz::bounded(
    data,
    DECOMPRESSION_CAP,
    batch_round_trip
));
