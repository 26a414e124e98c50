#![no_main]

use libfuzzer_sys::fuzz_target;
use ragstore_fuzz::{check, extract::text};

fuzz_target!(|data: &[u8]| check(text::extract(data, "input.txt")));
