#![no_main]

use libfuzzer_sys::fuzz_target;
use ragstore_extract::pdf;
use ragstore_fuzz::check;

fuzz_target!(|data: &[u8]| check(pdf::extract(data)));
