#![no_main]
// The producer's sender machine as a transactional producer against a simulated cluster;
// nothing decompressed.
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcon_fuzz::bounded(
    data,
    0,
    kcon_fuzz::producer_machine::run
));
