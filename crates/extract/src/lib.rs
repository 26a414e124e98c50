//! Text extraction: one module per format, chosen by sniffing the content first and the
//! filename second. Each extractor is a plain function from bytes to [`Extracted`]; anything we
//! do not read fails as `unsupported_file`, a broken file as `invalid_file`, never a crash.
//!
//! A crate of its own so that it knows nothing of the server (storage, database, index): the
//! ragstore ingestion worker calls [`extract`], and so do the fuzz targets.

pub mod html;
mod location;
pub mod office;
pub mod pdf;
pub mod rtf;
pub mod text;
pub mod xml;

pub use location::{location_of, Section};

/// Why a file yields no text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractError {
    /// Not a format we read (`unsupported_file`).
    Unsupported(String),
    /// A format we read, but broken or hostile (`invalid_file`).
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    pub text: String,
    /// A short name of the detected format (`text`, `markdown`, `json`, `csv`, `code`, …).
    pub format: &'static str,
    /// Sorted by `start`; empty when the format has no locations.
    pub sections: Vec<Section>,
}

impl Extracted {
    /// Whether chunking should follow Markdown structure.
    pub fn is_markdown(&self) -> bool {
        self.format == "markdown"
    }
}

pub fn extract(bytes: &[u8], filename: &str) -> Result<Extracted, ExtractError> {
    // PDF: `%PDF` anywhere in the first kilobyte, whatever the name says.
    if pdf::sniff(bytes) {
        return pdf::extract(bytes);
    }
    // ZIP-based documents (DOCX, PPTX, XLSX, ODT, ODS, EPUB): the entries decide the format.
    if office::is_zip(bytes) {
        return office::extract(bytes);
    }
    if let Some(result) = extract_markup(bytes, filename) {
        return result;
    }
    text::extract(bytes, filename)
}

/// Whether a file that begins with `prefix` is read as plain text, so its text is about as
/// large as the file (at least half of it, for UTF-16). PDF, ZIP-based documents and markup
/// can yield far less text than they have bytes; for them this is false.
pub fn is_plain_text(prefix: &[u8], filename: &str) -> bool {
    if pdf::sniff(prefix) || office::is_zip(prefix) {
        return false;
    }
    if rtf::sniff(prefix) || html::sniff(prefix) || xml::sniff_declaration(prefix) {
        return false;
    }
    let ext = text::extension(filename);
    if matches!(ext.as_str(), "html" | "htm" | "xhtml" | "shtml" | "rtf") || is_xml_name(&ext) {
        return false;
    }
    // Text that starts with a tag may be read as XML (decided by its end): not plain.
    let start = prefix.strip_prefix(b"\xef\xbb\xbf").unwrap_or(prefix);
    !(text::format_for(filename) == "text" && start.trim_ascii_start().starts_with(b"<"))
}

/// [`extract`] of bytes the caller gives up: plain UTF-8 text (the largest files) becomes the
/// text without a copy.
pub fn extract_owned(bytes: Vec<u8>, filename: &str) -> Result<Extracted, ExtractError> {
    if is_plain_text(&bytes, filename) {
        return text::extract_owned(bytes, filename);
    }
    extract(&bytes, filename)
}

fn is_xml_name(ext: &str) -> bool {
    matches!(
        ext,
        "xml"
            | "xsd"
            | "xsl"
            | "xslt"
            | "rss"
            | "atom"
            | "opf"
            | "ncx"
            | "dita"
            | "dbk"
            | "plist"
            | "kml"
            | "gpx"
            | "xlf"
            | "xliff"
            | "resx"
            | "csproj"
            | "pom"
    )
}

/// HTML, RTF and XML: by content first (whatever the name), by extension second.
fn extract_markup(bytes: &[u8], filename: &str) -> Option<Result<Extracted, ExtractError>> {
    if rtf::sniff(bytes) {
        return Some(rtf::extract(bytes));
    }
    if html::sniff(bytes) {
        return Some(html::extract(bytes));
    }
    if xml::sniff_declaration(bytes) {
        return Some(xml::extract(bytes));
    }
    let ext = text::extension(filename);
    match ext.as_str() {
        "html" | "htm" | "xhtml" | "shtml" => return Some(html::extract(bytes)),
        "rtf" => return Some(rtf::extract(bytes)),
        _ => {}
    }
    // A bare root element is XML only for XML-ish or text names: Markdown, code and data keep
    // their own reading, and text that merely starts with a tag falls back to text.
    let xml_name = is_xml_name(&ext);
    if xml_name || (text::format_for(filename) == "text" && xml::sniff_root(bytes)) {
        match xml::extract(bytes) {
            Ok(extracted) => return Some(Ok(extracted)),
            Err(e) if xml_name => return Some(Err(e)),
            Err(_) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::is_plain_text;

    #[test]
    fn plain_text_is_told_from_formats_that_shrink() {
        assert!(is_plain_text(b"just some words\n", "notes.txt"));
        assert!(is_plain_text(b"# Title\n\ntext", "README.md"));
        assert!(is_plain_text(b"fn main() {}", "main.rs"));
        assert!(!is_plain_text(b"%PDF-1.7\n", "notes.txt"));
        assert!(!is_plain_text(b"PK\x03\x04rest", "report.docx"));
        assert!(!is_plain_text(b"<!DOCTYPE html><html>", "page.txt"));
        assert!(!is_plain_text(b"{\\rtf1\\ansi", "letter.txt"));
        assert!(!is_plain_text(b"<?xml version=\"1.0\"?>", "data.txt"));
        assert!(!is_plain_text(b"anything", "feed.rss"));
        assert!(!is_plain_text(b"<root><a/></root>", "data.txt"));
    }

    #[test]
    fn owned_extraction_reads_as_borrowed_does() {
        let cases: [(&[u8], &str); 7] = [
            (b"plain words\r\nand more", "a.txt"),
            (b"# Title\n\nbody", "a.md"),
            (b"\xef\xbb\xbfbom text", "a.txt"),
            (b"caf\xe9 latin-1 text here", "a.txt"),
            (b"<root><a>xml</a></root>", "a.txt"),
            (b"<html><body><p>hi</p></body></html>", "a.html"),
            (b"\x00\x01\x02\x03binary\x00\x00\x00", "a.bin"),
        ];
        for (bytes, name) in cases {
            assert_eq!(
                super::extract_owned(bytes.to_vec(), name),
                super::extract(bytes, name),
                "{name}"
            );
        }
    }
}
