#![no_main]
// The record processor's policy machine with records side by side, on a virtual clock.
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcon_fuzz::bounded(
    data,
    0,
    kcon_fuzz::processor_concurrent::run
));
