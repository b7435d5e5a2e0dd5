#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sepal_fuzz::fab_read(data));
