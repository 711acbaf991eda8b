#![no_main]
// The share consumer's machine on its driver, over a model group member and fetcher; nothing
// decompressed.
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcon_fuzz::bounded(data, 0, |d| {
    kcon_fuzz::share_consumer::run(d);
}));
