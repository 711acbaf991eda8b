#![no_main]
// The records handed out are decoded, compressed batches decompressed up to the cap.
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcon_fuzz::bounded(
    data,
    kcon_codec::fuzzing::DECOMPRESSION_CAP,
    kcon_fuzz::fetch_machine::run
));
