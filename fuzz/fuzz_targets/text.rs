#![no_main]

use libfuzzer_sys::fuzz_target;
use ragstore_extract::text;
use ragstore_fuzz::check;

fuzz_target!(|data: &[u8]| check(text::extract(data, "input.txt")));
