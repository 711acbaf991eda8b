#![no_main]
// Whole consumers in one group on kcon-sim's simulation; nothing decompressed.
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcon_fuzz::bounded(data, 0, kcon_fuzz::consumer::run));
