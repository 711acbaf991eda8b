#![no_main]
// The record processor's scheduler of records by ordering unit, driven by the fuzz bytes.
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcon_fuzz::bounded(data, 0, kcon_fuzz::ordering::run));
