#![no_main]

//! The whole dispatch: the first byte picks the file name, the rest is the content, so the
//! fuzzer explores sniffing against every extension route.

use libfuzzer_sys::fuzz_target;
use ragstore_extract::extract;
use ragstore_fuzz::check;

const NAMES: &[&str] = &[
    "a.txt", "a.html", "a.htm", "a.xhtml", "a.rtf", "a.xml", "a.svg", "a.md", "a.json", "a.jsonl",
    "a.csv", "a.tsv", "a.rs", "a.pdf", "a.docx", "a.xlsx", "a.pptx", "a.odt", "a.epub", "a",
    "notes",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, content)) = data.split_first() else {
        return;
    };
    let name = NAMES[usize::from(pick) % NAMES.len()];
    check(extract(content, name));
});
