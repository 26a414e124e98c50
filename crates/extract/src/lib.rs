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

/// Which reader a file goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Pdf,
    Office,
    Rtf,
    Html,
    Xml,
    /// A text-named file that is one root element: XML if it parses, else text.
    XmlOrText,
    Text,
}

/// Chooses the reader by content first (whatever the name), by extension second.
fn reader(bytes: &[u8], filename: &str) -> Reader {
    // PDF: `%PDF` anywhere in the first kilobyte, whatever the name says.
    if pdf::sniff(bytes) {
        return Reader::Pdf;
    }
    // ZIP-based documents (DOCX, PPTX, XLSX, ODT, ODS, EPUB): the entries decide the format.
    if office::is_zip(bytes) {
        return Reader::Office;
    }
    if rtf::sniff(bytes) {
        return Reader::Rtf;
    }
    if html::sniff(bytes) {
        return Reader::Html;
    }
    if xml::sniff_declaration(bytes) {
        return Reader::Xml;
    }
    let ext = text::extension(filename);
    match ext.as_str() {
        "html" | "htm" | "xhtml" | "shtml" => return Reader::Html,
        "rtf" => return Reader::Rtf,
        _ => {}
    }
    // A bare root element is XML only for XML-ish or text names: Markdown, code and data keep
    // their own reading, and text that merely starts with a tag falls back to text.
    if is_xml_name(&ext) {
        return Reader::Xml;
    }
    if text::format_for(filename) == "text" && xml::sniff_root(bytes) {
        return Reader::XmlOrText;
    }
    Reader::Text
}

pub fn extract(bytes: &[u8], filename: &str) -> Result<Extracted, ExtractError> {
    match reader(bytes, filename) {
        Reader::Pdf => pdf::extract(bytes),
        Reader::Office => office::extract(bytes),
        Reader::Rtf => rtf::extract(bytes),
        Reader::Html => html::extract(bytes),
        Reader::Xml => xml::extract(bytes),
        Reader::XmlOrText => xml::extract(bytes).or_else(|_| text::extract(bytes, filename)),
        Reader::Text => text::extract(bytes, filename),
    }
}

/// [`extract`] of bytes the caller gives up: plain UTF-8 text (the largest files) becomes the
/// text without a copy.
pub fn extract_owned(bytes: Vec<u8>, filename: &str) -> Result<Extracted, ExtractError> {
    match reader(&bytes, filename) {
        Reader::Text => text::extract_owned(bytes, filename),
        _ => extract(&bytes, filename),
    }
}

/// Whether a file that begins with `prefix` is read as plain text, so its text is about as
/// large as the file (at least half of it, for UTF-16). PDF, ZIP-based documents and markup
/// can yield far less text than they have bytes; for them this is false.
pub fn is_plain_text(prefix: &[u8], filename: &str) -> bool {
    // Whether one root element spans the file is known only from its end: a text-named file
    // that starts with a tag may be XML.
    let start = prefix.strip_prefix(b"\xef\xbb\xbf").unwrap_or(prefix);
    let may_be_xml =
        text::format_for(filename) == "text" && start.trim_ascii_start().starts_with(b"<");
    reader(prefix, filename) == Reader::Text && !may_be_xml
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
