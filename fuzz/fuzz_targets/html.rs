#![no_main]

use libfuzzer_sys::fuzz_target;
use ragstore_fuzz::{check, extract::html};

fuzz_target!(|data: &[u8]| check(html::extract(data)));
