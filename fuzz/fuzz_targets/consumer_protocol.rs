#![no_main]
use kcon_codec::fuzzing::consumer_protocol;
libfuzzer_sys::fuzz_target!(|data: &[u8]| kcon_fuzz::bounded(data, 0, consumer_protocol));
