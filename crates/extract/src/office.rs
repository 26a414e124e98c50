//! ZIP-based documents: DOCX, PPTX, XLSX (Office Open XML), ODT, ODS (OpenDocument) and EPUB.
//! The kind is decided by the entries inside the archive, never by the file name. Every read
//! goes through [`Package`], which caps entry count, per-entry and total decompressed size and
//! the compression ratio, so a zip bomb fails fast as `invalid_file`.

mod epub;
mod odf;
mod ooxml;
mod xml;

use std::io::{Cursor, Read};

use serde_json::{Map, Value};
use zip::result::ZipError;
use zip::ZipArchive;

use super::{ExtractError, Extracted, Section};

/// How much of an archive we are willing to read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// More entries than this is not a document (a large EPUB has a few thousand).
    pub entries: usize,
    /// Decompressed size of one part.
    pub entry_bytes: u64,
    /// Decompressed size of all parts read from one file.
    pub total_bytes: u64,
    /// Parts larger than `ratio_floor` may expand at most this many times their compressed
    /// size; XML compresses 5–30x, repetitive sheets up to ~100x.
    pub ratio: u64,
    pub ratio_floor: u64,
}

pub(super) const LIMITS: Limits = Limits {
    entries: 10_000,
    entry_bytes: 64 << 20,
    total_bytes: 256 << 20,
    ratio: 250,
    ratio_floor: 1 << 20,
};

/// Spreadsheet cells held at once, counting the empty ones a sparse row is padded with and
/// the copies of repeated rows and cells; beyond this a sheet is refused, as a few bytes of
/// XML could otherwise ask for gigabytes.
pub(super) const MAX_CELLS: usize = 4_000_000;

pub(super) fn too_many_cells(kind: &str) -> ExtractError {
    ExtractError::Invalid(format!(
        "The {kind} file has more than {MAX_CELLS} cells (counting padding and repeats)."
    ))
}

/// Extracted text beyond this is refused rather than chunked and embedded.
const MAX_TEXT_BYTES: usize = 64 << 20;

/// Whether the content is a ZIP archive (local file header magic).
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// Reads a ZIP-based document, choosing the format from its entries.
pub fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    extract_with(bytes, LIMITS)
}

fn extract_with(bytes: &[u8], limits: Limits) -> Result<Extracted, ExtractError> {
    let mut pkg = Package::open(bytes, limits)?;
    if pkg.has("word/document.xml") && pkg.has("[Content_Types].xml") {
        return ooxml::docx(&mut pkg);
    }
    if pkg.has("ppt/presentation.xml") {
        return ooxml::pptx(&mut pkg);
    }
    if pkg.has("xl/workbook.xml") {
        return ooxml::xlsx(&mut pkg);
    }
    let mimetype = match pkg.read("mimetype")? {
        Some(m) => String::from_utf8_lossy(&m).trim().to_owned(),
        None => String::new(),
    };
    match mimetype.as_str() {
        "application/vnd.oasis.opendocument.text" => odf::odt(&mut pkg),
        "application/vnd.oasis.opendocument.spreadsheet" => odf::ods(&mut pkg),
        "application/epub+zip" => epub::epub(&mut pkg),
        m if m.starts_with("application/vnd.oasis.opendocument.") => {
            Err(ExtractError::Unsupported(format!(
                "The file is an OpenDocument file of type {m}; this server reads text \
                 documents (ODT) and spreadsheets (ODS) only."
            )))
        }
        _ => Err(ExtractError::Unsupported(
            "The file is a ZIP archive, not a document this server reads (DOCX, PPTX, XLSX, \
             ODT, ODS or EPUB)."
                .to_owned(),
        )),
    }
}

/// A ZIP archive read under the limits above.
pub(super) struct Package<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    limits: Limits,
    read_total: u64,
}

fn zip_error(e: ZipError) -> ExtractError {
    ExtractError::Invalid(format!("The file is a damaged ZIP archive: {e}."))
}

impl<'a> Package<'a> {
    fn open(bytes: &'a [u8], limits: Limits) -> Result<Self, ExtractError> {
        let zip = ZipArchive::new(Cursor::new(bytes)).map_err(zip_error)?;
        if zip.len() > limits.entries {
            return Err(ExtractError::Invalid(format!(
                "The archive has {} entries; documents with more than {} are refused.",
                zip.len(),
                limits.entries
            )));
        }
        Ok(Package {
            zip,
            limits,
            read_total: 0,
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.zip.index_for_name(name).is_some()
    }

    /// The decompressed bytes of entry `name`, `None` when absent.
    pub fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, ExtractError> {
        let Some(index) = self.zip.index_for_name(name) else {
            return Ok(None);
        };
        let mut entry = self.zip.by_index(index).map_err(zip_error)?;
        let l = self.limits;
        let ratio_cap = entry
            .compressed_size()
            .saturating_mul(l.ratio)
            .max(l.ratio_floor);
        let cap = l
            .entry_bytes
            .min(l.total_bytes.saturating_sub(self.read_total))
            .min(ratio_cap);
        let bomb = || {
            ExtractError::Invalid(format!(
                "The archive entry {name} expands beyond the limits (at most {} KiB per part, \
                 {} KiB in all, {}x compression); it looks like a zip bomb.",
                l.entry_bytes >> 10,
                l.total_bytes >> 10,
                l.ratio
            ))
        };
        if entry.size() > cap {
            return Err(bomb());
        }
        // The declared size may lie: read at most one byte past the cap to notice.
        let mut buf = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        (&mut entry)
            .take(cap + 1)
            .read_to_end(&mut buf)
            .map_err(|e| {
                ExtractError::Invalid(format!("The archive entry {name} cannot be read: {e}."))
            })?;
        let len = buf.len() as u64;
        if len > cap {
            return Err(bomb());
        }
        self.read_total += len;
        Ok(Some(buf))
    }

    /// Entry `name`, which the format requires.
    pub fn require(&mut self, name: &str, kind: &str) -> Result<Vec<u8>, ExtractError> {
        self.read(name)?
            .ok_or_else(|| ExtractError::Invalid(format!("The {kind} file has no {name} part.")))
    }
}

/// Resolves `target` (a relationship target or href) against the folder `base` of the part
/// that names it: `("ppt/", "slides/slide1.xml")` -> `ppt/slides/slide1.xml`, `..` allowed,
/// a leading `/` meaning the package root.
pub(super) fn resolve(base: &str, target: &str) -> String {
    let target = target.split('#').next().unwrap_or_default();
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|p| !p.is_empty()).collect()
    };
    for p in target.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The folder of a part name, with its trailing slash (`ppt/slides/slide1.xml` -> `ppt/slides/`).
pub(super) fn folder(part: &str) -> &str {
    part.rsplit_once('/')
        .map_or("", |(dir, _)| &part[..=dir.len()])
}

/// The extracted text under construction: blocks separated by blank lines, and the sections
/// that say where each part came from.
#[derive(Default)]
pub(super) struct Doc {
    text: String,
    sections: Vec<Section>,
    pending: Option<Map<String, Value>>,
}

impl Doc {
    /// The text from the next block on comes from `location`.
    pub fn section(&mut self, location: Value) {
        if let Value::Object(map) = location {
            self.pending = Some(map);
        }
    }

    /// Appends a paragraph-level block (skipped when blank).
    pub fn block(&mut self, block: &str) -> Result<(), ExtractError> {
        let block = block.trim_end();
        if block.trim().is_empty() {
            return Ok(());
        }
        if !self.text.is_empty() {
            self.text.push_str("\n\n");
        }
        if let Some(location) = self.pending.take() {
            self.sections.push(Section {
                start: self.text.len(),
                location,
            });
        }
        if self.text.len() + block.len() > MAX_TEXT_BYTES {
            return Err(ExtractError::Invalid(format!(
                "The document holds more than {} MiB of text.",
                MAX_TEXT_BYTES >> 20
            )));
        }
        self.text.push_str(block);
        Ok(())
    }

    pub fn finish(self, kind: &str) -> Result<Extracted, ExtractError> {
        if self.text.trim().is_empty() {
            return Err(ExtractError::Invalid(format!(
                "The {kind} file contains no text."
            )));
        }
        Ok(Extracted {
            text: self.text,
            format: "markdown",
            sections: self.sections,
        })
    }
}

/// Collapses runs of whitespace (XML layout, not content) into single spaces.
pub(super) fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Renders rows as a Markdown table: `|` in cells is escaped, line breaks become spaces,
/// trailing empty cells and empty rows are dropped. Only the header row is padded to the full
/// width (with the separator after it) so the output stays proportional to the input.
pub(super) fn table(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells: Vec<String> =
                r.iter().map(|c| collapse(c).replace('|', "\\|")).collect();
            while cells.last().is_some_and(String::is_empty) {
                cells.pop();
            }
            cells
        })
        .filter(|r| !r.is_empty())
        .collect();
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells = if i == 0 { width } else { row.len() };
        out.push('|');
        for c in 0..cells {
            out.push(' ');
            out.push_str(row.get(c).map_or("", String::as_str));
            out.push_str(" |");
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            out.push_str(&" --- |".repeat(width));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(super) mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    use super::*;

    /// A ZIP with the given entries, deflated (the `mimetype` entry stored, as ODF/EPUB want).
    pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            let method = if *name == "mimetype" {
                CompressionMethod::Stored
            } else {
                CompressionMethod::Deflated
            };
            w.start_file(
                *name,
                SimpleFileOptions::default().compression_method(method),
            )
            .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    pub fn loc(e: &Extracted) -> Vec<(String, Value)> {
        e.sections
            .iter()
            .map(|s| {
                (
                    e.text[s.start..].lines().next().unwrap_or("").to_owned(),
                    Value::Object(s.location.clone()),
                )
            })
            .collect()
    }

    #[test]
    fn other_zips_are_unsupported() {
        let z = zip_of(&[("readme.txt", b"hello")]);
        assert!(
            matches!(extract(&z), Err(ExtractError::Unsupported(m)) if m.contains("ZIP archive"))
        );
        let z = zip_of(&[(
            "mimetype",
            b"application/vnd.oasis.opendocument.presentation",
        )]);
        assert!(
            matches!(extract(&z), Err(ExtractError::Unsupported(m)) if m.contains("OpenDocument"))
        );
        assert!(matches!(
            extract(b"PK\x03\x04garbage"),
            Err(ExtractError::Invalid(_))
        ));
    }

    #[test]
    fn zip_bombs_are_refused() {
        // 4 MiB of zeros deflate to ~4 KiB: far over the compression ratio.
        let zeros = vec![0u8; 4 << 20];
        let z = zip_of(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("word/document.xml", &zeros),
        ]);
        assert!(z.len() < 64 << 10);
        assert!(matches!(extract(&z), Err(ExtractError::Invalid(m)) if m.contains("zip bomb")));
        // With the ratio out of the way, the per-part cap.
        let loose = Limits {
            ratio: u64::MAX,
            entry_bytes: 1 << 20,
            ..LIMITS
        };
        assert!(
            matches!(extract_with(&z, loose), Err(ExtractError::Invalid(m)) if m.contains("zip bomb"))
        );
        // Many parts, each under the per-part cap, together over the total: EPUB chapters.
        let chapter = format!(
            "<html><body><p>{}</p></body></html>",
            "word ".repeat(50_000)
        );
        let mut entries: Vec<(String, Vec<u8>)> = vec![
            ("mimetype".into(), b"application/epub+zip".to_vec()),
            (
                "META-INF/container.xml".into(),
                br#"<container><rootfiles><rootfile full-path="o.opf"/></rootfiles></container>"#
                    .to_vec(),
            ),
        ];
        let mut manifest = String::new();
        let mut spine = String::new();
        for i in 0..8 {
            manifest.push_str(&format!(r#"<item id="c{i}" href="c{i}.xhtml"/>"#));
            spine.push_str(&format!(r#"<itemref idref="c{i}"/>"#));
            entries.push((format!("c{i}.xhtml"), chapter.clone().into_bytes()));
        }
        entries.push((
            "o.opf".into(),
            format!("<package><manifest>{manifest}</manifest><spine>{spine}</spine></package>")
                .into_bytes(),
        ));
        let refs: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        let z = zip_of(&refs);
        let total = Limits {
            ratio: u64::MAX,
            total_bytes: 1 << 20,
            ..LIMITS
        };
        assert!(extract_with(&z, LIMITS).is_ok());
        assert!(
            matches!(extract_with(&z, total), Err(ExtractError::Invalid(m)) if m.contains("zip bomb"))
        );
    }

    #[test]
    fn too_many_entries_are_refused() {
        let names: Vec<String> = (0..=LIMITS.entries).map(|i| format!("f{i}")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        let z = zip_of(&entries);
        assert!(matches!(extract(&z), Err(ExtractError::Invalid(m)) if m.contains("entries")));
    }

    #[test]
    fn lying_sizes_are_caught() {
        // A part whose headers say 10 bytes but that inflates to 2 MiB: reading stops at the
        // declared size (the zip reader checks it) or at our cap, whichever comes first.
        let big = vec![b'a'; 2 << 20];
        let mut z = zip_of(&[("x.xml", &big)]);
        patch_sizes(&mut z, 10);
        let mut pkg = Package::open(&z, LIMITS).unwrap();
        let r = pkg.read("x.xml");
        assert!(matches!(&r, Err(ExtractError::Invalid(_))), "{r:?}");
    }

    /// Overwrites the uncompressed size in every local and central header.
    fn patch_sizes(z: &mut [u8], size: u32) {
        let mut i = 0;
        while i + 4 <= z.len() {
            match &z[i..i + 4] {
                b"PK\x03\x04" => z[i + 22..i + 26].copy_from_slice(&size.to_le_bytes()),
                b"PK\x01\x02" => z[i + 24..i + 28].copy_from_slice(&size.to_le_bytes()),
                _ => {}
            }
            i += 1;
        }
    }

    #[test]
    fn resolves_targets() {
        assert_eq!(
            resolve("ppt/", "slides/slide1.xml"),
            "ppt/slides/slide1.xml"
        );
        assert_eq!(
            resolve("ppt/slides/", "../notesSlides/n1.xml"),
            "ppt/notesSlides/n1.xml"
        );
        assert_eq!(
            resolve("xl/", "/xl/worksheets/s.xml"),
            "xl/worksheets/s.xml"
        );
        assert_eq!(folder("OEBPS/content.opf"), "OEBPS/");
        assert_eq!(folder("content.opf"), "");
    }

    #[test]
    fn tables_render_as_markdown() {
        let rows = vec![
            vec!["a".to_owned(), "b|c".to_owned(), String::new()],
            vec!["1".to_owned()],
            vec![String::new()],
        ];
        assert_eq!(table(&rows), "| a | b\\|c |\n| --- | --- |\n| 1 |\n");
    }
}

/// Documents written by pandoc from one Markdown source (tests/fixtures/office/).
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod fixtures {
    use serde_json::{json, Value};

    use super::tests::loc;

    fn read(ext: &str) -> super::Extracted {
        let bytes = std::fs::read(format!("tests/fixtures/office/sample.{ext}")).unwrap();
        super::extract(&bytes).unwrap()
    }

    fn sections(e: &super::Extracted) -> Vec<Value> {
        loc(e).into_iter().map(|(_, l)| l).collect()
    }

    /// The text shared by the DOCX, ODT and EPUB versions, in order.
    const ORDER: &[&str] = &[
        "# Field Guide",
        "# Birds of the Marsh",
        "The marsh harrier glides low over reeds",
        "- Heron",
        "- Bittern",
        "  - Little bittern",
        "## Counts",
        "| Species | Count |\n| --- | --- |\n| Heron | 12 |\n| Bittern | 3 |",
        "Circus aeruginosus.",
    ];

    fn assert_in_order(text: &str, parts: &[&str]) {
        let mut at = 0;
        for p in parts {
            let found = text[at..].find(p);
            assert!(found.is_some(), "{p:?} missing after byte {at} in\n{text}");
            at += found.unwrap_or(0) + p.len();
        }
    }

    #[test]
    fn pandoc_docx_and_odt() {
        for ext in ["docx", "odt"] {
            let e = read(ext);
            assert!(e.is_markdown());
            let mut order = ORDER.to_vec();
            order.insert(8, "# Closing Notes");
            assert_in_order(&e.text, &order);
            assert!(e.text.contains("reeds[^"), "{ext}: footnote mark");
            assert_eq!(
                sections(&e),
                [
                    "Field Guide",
                    "Birds of the Marsh",
                    "Counts",
                    "Closing Notes",
                    "Notes"
                ]
                .map(|s| json!({ "section": s }))
                .to_vec(),
                "{ext}"
            );
        }
    }

    #[test]
    fn misnamed_files_are_sniffed() {
        let bytes = std::fs::read("tests/fixtures/office/sample.docx").unwrap();
        let e = crate::extract(&bytes, "notes.txt").unwrap();
        assert!(e.text.starts_with("# Field Guide"));
    }

    #[test]
    fn pandoc_epub() {
        let e = read("epub");
        assert_in_order(&e.text, ORDER);
        assert!(e
            .text
            .ends_with("# Closing Notes\n\nWatch quietly at dawn."));
        assert_eq!(
            sections(&e),
            vec![
                json!({"chapter": 1, "title": "Field Guide"}),
                json!({"chapter": 2, "title": "Birds of the Marsh"}),
                json!({"chapter": 3, "title": "Closing Notes"}),
            ]
        );
    }

    #[test]
    fn pandoc_pptx() {
        let e = read("pptx");
        assert_eq!(
            e.text,
            "## Slide 1: Marsh Talk\n\n## Slide 2: Why marshes\n\nWater storage\nBird habitat\n\n\
             Notes:\nMention the 2019 flood.\n\n## Slide 3: Counts\n\nSpecies | Count\nHeron | 12"
        );
        assert_eq!(
            sections(&e),
            vec![
                json!({"slide": 1}),
                json!({"slide": 2}),
                json!({"slide": 3})
            ]
        );
    }
}
