#![no_main]

use libfuzzer_sys::fuzz_target;
use ragstore_extract::rtf;
use ragstore_fuzz::check;

fuzz_target!(|data: &[u8]| check(rtf::extract(data)));
