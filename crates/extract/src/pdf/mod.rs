//! PDF: text in reading order, page by page.
//!
//! `lopdf` parses the file (xref tables and streams, object streams, incremental updates,
//! decryption with the empty user password); this module interprets each page's content stream,
//! decodes strings through the fonts (ToUnicode CMaps, standard encodings, `/Differences`, the
//! built-in encoding of embedded Type 1 fonts, CID fonts, and for Identity-encoded TrueType CID
//! fonts without ToUnicode the embedded font's own `cmap`) and lays the positioned glyphs out:
//! lines by baseline, words from gaps, columns from a shared vertical gutter, paragraphs from
//! larger vertical gaps. Accents drawn as glyphs of their own over a letter (TeX's OT1 fonts) are
//! composed with it. Running headers/footers and bare page numbers are dropped.
//!
//! The parts: `content` interprets content streams into positioned glyphs, decoded through
//! `fonts` and `cmap`; `accents` composes separately drawn accents; `layout` turns glyphs into
//! lines in reading order and drops running lines; `headings` finds heading sizes. This file
//! walks the document and writes the text, with pages and headings as sections.
//!
//! Every cost is bounded: decompressed bytes per stream and per page, operators per page and per
//! document, Form XObject depth, glyphs per page, CMap entries, look-ups in embedded TrueType
//! `cmap` tables and output size.

mod accents;
mod cmap;
mod content;
mod fonts;
mod headings;
mod layout;

use lopdf::{Document, LoadOptions, Object, ObjectId};
use serde_json::{Map, Value};

use super::{ExtractError, Extracted, Section};
use content::PageReader;
use headings::{size_key, Headings};
use layout::{collapse_leaders, drop_running_lines, layout_page, Line};

/// Largest decompressed size of any one stream (object streams, xref streams, fonts, forms).
const MAX_STREAM_BYTES: usize = 64 << 20;
/// Largest decompressed content of one page, forms included.
const MAX_PAGE_CONTENT_BYTES: usize = 32 << 20;
/// Decompressed page and form content read in the whole document: the work budget of one
/// document (pages that share one huge stream would otherwise cost it again for each page).
/// Reading it all takes a few seconds; a document that needs more is refused.
const MAX_CONTENT_BYTES_TOTAL: usize = 512 << 20;
/// Content-stream operators interpreted per page, forms included; the rest is skipped.
const MAX_OPS_PER_PAGE: usize = 1_000_000;
/// Operators interpreted in the whole document before it is refused.
const MAX_OPS_TOTAL: usize = 30_000_000;
/// Nesting of Form XObjects (a form drawing a form …).
const MAX_FORM_DEPTH: usize = 8;
/// Depth of the `q`/`Q` graphics-state stack.
const MAX_GSTATE_DEPTH: usize = 256;
/// Glyphs kept per page; beyond it the page is truncated.
const MAX_GLYPHS_PER_PAGE: usize = 500_000;
/// Pages read; a larger document is refused.
const MAX_PAGES: usize = 50_000;
/// Mappings kept from one ToUnicode CMap or `/W` array.
const MAX_MAP_ENTRIES: usize = 200_000;
/// Extracted text size.
const MAX_TEXT_BYTES: usize = 128 << 20;
/// Code points looked up in embedded TrueType `cmap` tables per document: a sweep of the Basic
/// Multilingual Plane is ~57,000, so this is some 500 fonts, and a second or so at most.
const MAX_CMAP_PROBES: usize = 32_000_000;
/// Where `%PDF` may start (some files carry junk before the header).
const SNIFF_WINDOW: usize = 1024;

/// Whether the content is a PDF: `%PDF` within the first kilobyte.
pub fn sniff(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(SNIFF_WINDOW)];
    head.windows(4).any(|w| w == b"%PDF")
}

pub fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let options = LoadOptions {
        max_decompressed_size: Some(MAX_STREAM_BYTES),
        ..LoadOptions::default()
    };
    let doc = Document::load_mem_with_options(bytes, options)
        .map_err(|e| ExtractError::Invalid(format!("PDF could not be parsed: {e}")))?;
    if doc.trailer.get(b"Encrypt").is_ok() && doc.encryption_state.is_none() {
        return Err(ExtractError::Unsupported(
            "PDF is encrypted with a password".to_owned(),
        ));
    }
    let page_ids: Vec<ObjectId> = doc.page_iter().take(MAX_PAGES + 1).collect();
    if page_ids.is_empty() {
        return Err(ExtractError::Invalid(
            "PDF has no readable pages".to_owned(),
        ));
    }
    if page_ids.len() > MAX_PAGES {
        return Err(ExtractError::Invalid(format!(
            "PDF has more than {MAX_PAGES} pages"
        )));
    }

    let mut reader = PageReader::new(&doc);
    let mut pages = Vec::with_capacity(page_ids.len());
    let mut glyphs_seen = 0usize;
    for &page_id in &page_ids {
        let glyphs = reader.page(page_id)?;
        glyphs_seen += glyphs.glyphs.len();
        pages.push(layout_page(&glyphs));
    }
    if glyphs_seen == 0 {
        return Err(ExtractError::Unsupported(
            "PDF has no text layer (scanned or image-only pages); OCR is not supported".to_owned(),
        ));
    }
    drop_running_lines(&mut pages);
    let out = assemble(&pages)?;
    if out.text.trim().is_empty() {
        return Err(ExtractError::Unsupported(
            "PDF has no text layer that maps to Unicode (fonts without a character map)".to_owned(),
        ));
    }
    Ok(out)
}

/// A PDF number (integer or real) as `f64`.
fn num(o: &Object) -> Option<f64> {
    match o {
        Object::Integer(i) => Some(*i as f64),
        Object::Real(r) => Some(f64::from(*r)),
        _ => None,
    }
}

fn ends_with_hyphen(text: &str) -> bool {
    let mut chars = text.chars().rev();
    matches!(chars.next(), Some('-' | '\u{AD}' | '\u{2010}'))
        && chars.next().is_some_and(char::is_alphabetic)
}

fn assemble(pages: &[Vec<Line>]) -> Result<Extracted, ExtractError> {
    let headings = Headings::find(pages);
    let mut text = String::new();
    let mut sections = Vec::new();
    let mut current: Option<String> = None;
    let location = |page: usize, heading: &Option<String>| {
        let mut location = Map::new();
        location.insert("page".to_owned(), Value::from(page));
        if let Some(h) = heading {
            location.insert("section".to_owned(), Value::String(h.clone()));
        }
        location
    };
    for (i, lines) in pages.iter().enumerate() {
        if lines.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        sections.push(Section {
            start: text.len(),
            location: location(i + 1, &current),
        });
        // The size of the heading being written, so a wrapped heading's next line (same
        // size, no paragraph break) joins it.
        let mut open: Option<i64> = None;
        for (k, line) in lines.iter().enumerate() {
            let level = headings.level(line);
            let continues = !line.para
                && open == Some(size_key(line.size))
                && line.text.chars().count() <= Headings::MAX_CHARS;
            if continues {
                text.push(' ');
                text.push_str(&collapse_leaders(&line.text));
                if let Some(h) = current.as_mut() {
                    h.push(' ');
                    h.push_str(&line.text);
                }
                if let Some(s) = sections.last_mut() {
                    s.location = location(i + 1, &current);
                }
                continue;
            }
            if k > 0 {
                let starts_lower = line.text.chars().next().is_some_and(char::is_lowercase);
                if !line.para && ends_with_hyphen(&text) && starts_lower {
                    text.pop();
                } else if line.para {
                    text.push_str("\n\n");
                } else {
                    text.push('\n');
                }
            }
            open = None;
            if let Some(level) = level {
                current = Some(line.text.clone());
                // The page's own section already starts here: it takes the heading.
                if sections.last().is_some_and(|s| s.start == text.len()) {
                    sections.pop();
                }
                sections.push(Section {
                    start: text.len(),
                    location: location(i + 1, &current),
                });
                text.push_str(&"#".repeat(level));
                text.push(' ');
                open = Some(size_key(line.size));
            }
            text.push_str(&collapse_leaders(&line.text));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(ExtractError::Invalid(format!(
                "PDF text is larger than {MAX_TEXT_BYTES} bytes"
            )));
        }
    }
    // With headings marked the text is Markdown, so chunking can follow them.
    let format = if headings.sizes.is_empty() {
        "text"
    } else {
        "markdown"
    };
    Ok(Extracted {
        text,
        format,
        sections,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use lopdf::{dictionary, Dictionary, Stream};

    /// A document whose pages show the given content streams with `/F1` = `font`.
    pub(super) fn document(pages: &[Vec<u8>], font: Dictionary) -> (Document, Vec<ObjectId>) {
        let mut doc = Document::with_version("1.5");
        doc.trailer.set(
            "ID",
            Object::Array(vec![
                Object::string_literal(b"0123456789abcdef"),
                Object::string_literal(b"fedcba9876543210"),
            ]),
        );
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(font);
        let mut ids = Vec::new();
        for content in pages {
            let contents = doc.add_object(Stream::new(dictionary! {}, content.clone()));
            ids.push(doc.add_object(dictionary! {
                "Type" => "Page",
                "Parent" => pages_id,
                "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
                "Resources" => dictionary! { "Font" => dictionary! { "F1" => font_id } },
                "Contents" => contents,
            }));
        }
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages",
                "Kids" => ids.iter().map(|&id| Object::Reference(id)).collect::<Vec<_>>(),
                "Count" => ids.len() as i64,
            }),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog);
        (doc, ids)
    }

    pub(super) fn courier() -> Dictionary {
        dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => "Courier",
            "Encoding" => "WinAnsiEncoding",
        }
    }

    pub(super) fn save(doc: &mut Document) -> Vec<u8> {
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    /// A PDF of Courier pages; each page's lines are `(x, y, text)`.
    pub(super) fn pdf(pages: &[Vec<(f64, f64, &str)>]) -> Vec<u8> {
        let contents: Vec<Vec<u8>> = pages.iter().map(|lines| page_content(lines)).collect();
        save(&mut document(&contents, courier()).0)
    }

    pub(super) fn page_content(lines: &[(f64, f64, &str)]) -> Vec<u8> {
        let mut c = String::from("BT /F1 10 Tf\n");
        for (x, y, t) in lines {
            c.push_str(&format!("1 0 0 1 {x} {y} Tm ({t}) Tj\n"));
        }
        c.push_str("ET\n");
        c.into_bytes()
    }

    pub(super) fn text(bytes: &[u8]) -> String {
        extract(bytes).unwrap().text
    }

    /// Paragraph-ish body text: `n` lines starting at `y`, 12 points apart.
    pub(super) fn body(x: f64, y: f64, words: &[&'static str]) -> Vec<(f64, f64, &'static str)> {
        words
            .iter()
            .enumerate()
            .map(|(i, w)| (x, y - 12.0 * i as f64, *w))
            .collect()
    }

    #[test]
    fn plain_page_text() {
        let bytes = pdf(&[vec![(72.0, 700.0, "Hello world, this is a PDF.")]]);
        assert!(sniff(&bytes));
        let out = extract(&bytes).unwrap();
        assert_eq!(out.text, "Hello world, this is a PDF.");
        assert_eq!(out.sections.len(), 1);
        assert_eq!(out.sections[0].start, 0);
        assert_eq!(out.sections[0].location.get("page"), Some(&Value::from(1)));
        // Routed by content, whatever the name.
        assert_eq!(
            super::super::extract(&bytes, "notes.txt").unwrap().text,
            out.text
        );
    }

    #[test]
    fn two_pages_two_sections() {
        let bytes = pdf(&[
            vec![(72.0, 700.0, "First page text.")],
            vec![(72.0, 700.0, "Second page text.")],
        ]);
        let out = extract(&bytes).unwrap();
        assert_eq!(out.text, "First page text.\n\nSecond page text.");
        let starts: Vec<(usize, &Value)> = out
            .sections
            .iter()
            .map(|s| (s.start, s.location.get("page").unwrap()))
            .collect();
        assert_eq!(starts, vec![(0, &Value::from(1)), (18, &Value::from(2))]);
        assert!(out.text[18..].starts_with("Second"));
    }

    #[test]
    fn hyphenated_line_ends_are_joined() {
        let bytes = pdf(&[vec![
            (72.0, 700.0, "a good exam-"),
            (72.0, 688.0, "ple of well-"),
            (72.0, 676.0, "Known words"),
        ]]);
        assert_eq!(text(&bytes), "a good example of well-\nKnown words");
    }

    #[test]
    fn object_and_xref_streams() {
        let (mut doc, _) = document(
            &[page_content(&[(72.0, 700.0, "compressed objects")])],
            courier(),
        );
        let mut out = Vec::new();
        doc.save_modern(&mut out).unwrap();
        assert!(
            out.windows(7).any(|w| w == b"/ObjStm"),
            "object streams used"
        );
        assert!(out.windows(5).any(|w| w == b"/XRef"), "xref stream used");
        assert_eq!(text(&out), "compressed objects");
    }

    #[test]
    fn incremental_update_wins() {
        let mut bytes = pdf(&[vec![(72.0, 700.0, "old text")]]);
        let doc = Document::load_mem(&bytes).unwrap();
        let page = doc.page_iter().next().unwrap();
        let contents = doc.get_page_contents(page)[0];
        let prev_xref = doc.xref_start;
        let content = page_content(&[(72.0, 700.0, "new text")]);
        let offset = bytes.len() + 1;
        bytes.extend_from_slice(
            format!(
                "\n{} 0 obj\n<< /Length {} >>\nstream\n",
                contents.0,
                content.len()
            )
            .as_bytes(),
        );
        bytes.extend_from_slice(&content);
        bytes.extend_from_slice(b"\nendstream\nendobj\n");
        let xref = bytes.len();
        let root = doc.trailer.get(b"Root").unwrap().as_reference().unwrap();
        bytes.extend_from_slice(
            format!(
                "xref\n{} 1\n{offset:010} 00000 n \ntrailer\n<< /Size {} /Root {} 0 R /Prev {prev_xref} >>\nstartxref\n{xref}\n%%EOF\n",
                contents.0,
                doc.max_id + 1,
                root.0
            )
            .as_bytes(),
        );
        assert_eq!(text(&bytes), "new text");
    }

    #[test]
    fn encrypted_with_empty_user_password() {
        let (mut doc, _) = document(&[page_content(&[(72.0, 700.0, "secret text")])], courier());
        let state = lopdf::EncryptionState::try_from(lopdf::EncryptionVersion::V2 {
            document: &doc,
            owner_password: "owner",
            user_password: "",
            key_length: 128,
            permissions: lopdf::Permissions::all(),
        })
        .unwrap();
        doc.encrypt(&state).unwrap();
        let bytes = save(&mut doc);
        assert!(
            !bytes.windows(6).any(|w| w == b"secret"),
            "content is encrypted"
        );
        assert_eq!(text(&bytes), "secret text");

        let (mut doc, _) = document(&[page_content(&[(72.0, 700.0, "secret text")])], courier());
        let state = lopdf::EncryptionState::try_from(lopdf::EncryptionVersion::V2 {
            document: &doc,
            owner_password: "owner",
            user_password: "user",
            key_length: 128,
            permissions: lopdf::Permissions::all(),
        })
        .unwrap();
        doc.encrypt(&state).unwrap();
        let err = extract(&save(&mut doc)).unwrap_err();
        assert!(
            matches!(err, ExtractError::Unsupported(ref m) if m.contains("password")),
            "{err:?}"
        );
    }

    #[test]
    fn image_only_is_unsupported() {
        let (mut doc, ids) = document(&[b"q 100 0 0 100 0 0 cm /Im1 Do Q".to_vec()], courier());
        let image = doc.add_object(Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image", "Width" => 1, "Height" => 1,
                "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8,
            },
            vec![0],
        ));
        let page = doc.get_dictionary_mut(ids[0]).unwrap();
        let res = page.get_mut(b"Resources").unwrap().as_dict_mut().unwrap();
        res.set("XObject", dictionary! { "Im1" => image });
        let err = extract(&save(&mut doc)).unwrap_err();
        assert!(
            matches!(err, ExtractError::Unsupported(ref m) if m.contains("has no text layer")),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_is_invalid() {
        for bytes in [
            b"%PDF-1.7\nthis is not really a pdf at all\n".to_vec(),
            b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF".to_vec(),
            {
                let mut b = pdf(&[vec![(72.0, 700.0, "cut short")]]);
                b.truncate(b.len() / 3);
                b
            },
        ] {
            let err = extract(&bytes).unwrap_err();
            assert!(matches!(err, ExtractError::Invalid(_)), "{err:?}");
        }
    }

    #[test]
    fn page_tree_loop_is_bounded() {
        let bytes = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n\
            2 0 obj << /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >> endobj\n\
            3 0 obj << /Type /Pages /Kids [2 0 R] /Parent 3 0 R /Count 1 >> endobj\n\
            trailer << /Root 1 0 R /Size 4 >>\n%%EOF"
            .to_vec();
        let started = std::time::Instant::now();
        let err = extract(&bytes).unwrap_err();
        assert!(matches!(err, ExtractError::Invalid(_)), "{err:?}");
        assert!(started.elapsed().as_secs() < 5);
    }

    /// A PDF written by hand from numbered object bodies (1 = catalog), with a correct xref.
    fn raw_pdf(objects: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }

    fn raw_page(content: &[u8], extra: &[u8]) -> Vec<Vec<u8>> {
        let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        stream.extend_from_slice(content);
        stream.extend_from_slice(b"\nendstream");
        vec![
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            [
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
                  /Resources << /Font << /F1 5 0 R >> >> "
                    .as_slice(),
                extra,
                b" >>",
            ]
            .concat(),
            stream,
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier >>".to_vec(),
        ]
    }

    #[test]
    fn deeply_nested_objects_are_bounded() {
        let mut content = b"BT /F1 10 Tf 72 700 Td (before) Tj ET ".to_vec();
        content.extend(std::iter::repeat_n(b'[', 200_000));
        content.extend_from_slice(b" TJ");
        let mut objects = raw_page(&content, b"/Nested 6 0 R");
        let mut nested = vec![b'['; 100_000];
        nested.extend(vec![b']'; 100_000]);
        objects.push(nested);
        let mut dict = Vec::new();
        for _ in 0..50_000 {
            dict.extend_from_slice(b"<< /A ");
        }
        objects.push(dict);
        let started = std::time::Instant::now();
        match extract(&raw_pdf(&objects)) {
            Ok(out) => assert_eq!(out.text, "before"),
            Err(e) => assert!(matches!(e, ExtractError::Invalid(_)), "{e:?}"),
        }
        assert!(started.elapsed().as_secs() < 10);
    }
}
