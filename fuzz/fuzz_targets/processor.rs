#![no_main]
// The record processor's policy machine on a virtual clock; nothing decompressed.
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcon_fuzz::bounded(data, 0, kcon_fuzz::processor::run));
