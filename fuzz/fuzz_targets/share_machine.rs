#![no_main]
// A share group's sessions on a virtual clock; the batches the target builds are uncompressed.
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcon_fuzz::bounded(data, 0, |d| {
    kcon_fuzz::share_machine::run(d);
}));
