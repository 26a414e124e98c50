#![no_main]

use libfuzzer_sys::fuzz_target;
use ragstore_extract::html;
use ragstore_fuzz::check;

fuzz_target!(|data: &[u8]| check(html::extract(data)));
