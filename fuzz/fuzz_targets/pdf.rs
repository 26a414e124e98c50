#![no_main]

use libfuzzer_sys::fuzz_target;
use ragstore_fuzz::{check, extract::pdf};

fuzz_target!(|data: &[u8]| check(pdf::extract(data)));
