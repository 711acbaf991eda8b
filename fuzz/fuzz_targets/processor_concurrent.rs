#![no_main]
// The record processor's policy machine with records side by side, on a virtual clock.
// Its records held up to the buffer's bound are the setup's cost: see `allowance`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcon_fuzz::bounded(
    data,
    kcon_fuzz::processor_concurrent::allowance(),
    kcon_fuzz::processor_concurrent::run
));
