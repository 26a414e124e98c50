#![no_main]

use libfuzzer_sys::fuzz_target;
use ragstore_fuzz::{check, extract::xml};

fuzz_target!(|data: &[u8]| check(xml::extract(data)));
