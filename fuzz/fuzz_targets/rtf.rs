#![no_main]

use libfuzzer_sys::fuzz_target;
use ragstore_fuzz::{check, extract::rtf};

fuzz_target!(|data: &[u8]| check(rtf::extract(data)));
