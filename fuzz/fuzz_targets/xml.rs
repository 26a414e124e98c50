#![no_main]

use libfuzzer_sys::fuzz_target;
use ragstore_extract::xml;
use ragstore_fuzz::check;

fuzz_target!(|data: &[u8]| check(xml::extract(data)));
