#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcon_fuzz::bounded(
    data,
    0,
    kcon_fuzz::group_member::run
));
