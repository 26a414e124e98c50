#![no_main]

//! ZIP-based documents. Random bytes rarely make a ZIP that opens, so this target keeps the
//! archive valid and fuzzes what is inside it: the first byte picks a template document (the
//! test fixtures, plus a small XLSX and ODS), the second which of its entries to replace, and
//! the rest becomes that entry's content. Inputs that start with `PK` go in as whole archives,
//! so the ZIP reader and its limits are fuzzed too.

use std::io::{Cursor, Read, Write};

use libfuzzer_sys::fuzz_target;
use ragstore_extract::office;
use ragstore_fuzz::check;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

const DOCX: &[u8] = include_bytes!("../../crates/extract/tests/fixtures/office/sample.docx");
const PPTX: &[u8] = include_bytes!("../../crates/extract/tests/fixtures/office/sample.pptx");
const ODT: &[u8] = include_bytes!("../../crates/extract/tests/fixtures/office/sample.odt");
const EPUB: &[u8] = include_bytes!("../../crates/extract/tests/fixtures/office/sample.epub");

const XLSX: &[(&str, &str)] = &[
    ("[Content_Types].xml", r#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>"#),
    ("xl/workbook.xml", r#"<workbook xmlns:r="r"><sheets><sheet name="Birds" sheetId="1" r:id="rId1"/></sheets></workbook>"#),
    ("xl/_rels/workbook.xml.rels", r#"<Relationships><Relationship Id="rId1" Target="worksheets/sheet1.xml"/></Relationships>"#),
    ("xl/sharedStrings.xml", r#"<sst><si><t>Species</t></si><si><r><t>He</t></r><r><t>ron</t></r></si></sst>"#),
    ("xl/styles.xml", r#"<styleSheet><numFmts><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/></numFmts><cellXfs><xf numFmtId="0"/><xf numFmtId="164"/><xf numFmtId="14"/></cellXfs></styleSheet>"#),
    ("xl/worksheets/sheet1.xml", r#"<worksheet><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="inlineStr"><is><t>Seen</t></is></c></row><row r="2"><c r="A2" t="s"><v>1</v></c><c r="B2" s="1"><v>45000.5</v></c><c r="D2"><f>1+1</f><v>2</v></c></row></sheetData></worksheet>"#),
];

const ODS: &[(&str, &str)] = &[
    ("mimetype", "application/vnd.oasis.opendocument.spreadsheet"),
    ("content.xml", r#"<office:document-content xmlns:office="o" xmlns:table="tb" xmlns:text="t"><office:body><office:spreadsheet><table:table table:name="Birds"><table:table-row><table:table-cell><text:p>Heron</text:p></table:table-cell><table:table-cell table:number-columns-repeated="3"/><table:table-cell office:value-type="float" office:value="12"><text:p>12</text:p></table:table-cell></table:table-row><table:table-row table:number-rows-repeated="2"><table:table-cell><text:p>x</text:p></table:table-cell></table:table-row></table:table></office:spreadsheet></office:body></office:document-content>"#),
];

fn entries_of(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let Ok(mut archive) = ZipArchive::new(Cursor::new(zip)) else {
        return Vec::new();
    };
    (0..archive.len())
        .filter_map(|i| {
            let mut file = archive.by_index(i).ok()?;
            let mut data = Vec::new();
            file.read_to_end(&mut data).ok()?;
            Some((file.name().ok()?.into_owned(), data))
        })
        .collect()
}

fn zip_of(entries: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(name.as_str(), options).ok()?;
        w.write_all(data).ok()?;
    }
    Some(w.finish().ok()?.into_inner())
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"PK") {
        check(office::extract(data));
        return;
    }
    let [pick, entry, content @ ..] = data else {
        return;
    };
    let mut entries = match pick % 6 {
        0 => entries_of(DOCX),
        1 => entries_of(PPTX),
        2 => entries_of(ODT),
        3 => entries_of(EPUB),
        4 => XLSX.iter().map(|(n, d)| ((*n).to_owned(), d.as_bytes().to_vec())).collect(),
        _ => ODS.iter().map(|(n, d)| ((*n).to_owned(), d.as_bytes().to_vec())).collect(),
    };

    let count = entries.len();
    if count == 0 {
        return;
    }
    let index = usize::from(*entry) % count;
    if let Some(slot) = entries.get_mut(index) {
        slot.1 = content.to_vec();
    }
    if let Some(zip) = zip_of(&entries) {
        check(office::extract(&zip));
    }
});
