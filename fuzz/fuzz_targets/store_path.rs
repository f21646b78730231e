#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hibernation::fuzzing::store_path(data));
