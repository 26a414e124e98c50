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
    let xml_name = matches!(
        ext.as_str(),
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
    );
    if xml_name || (text::format_for(filename) == "text" && xml::sniff_root(bytes)) {
        match xml::extract(bytes) {
            Ok(extracted) => return Some(Ok(extracted)),
            Err(e) if xml_name => return Some(Err(e)),
            Err(_) => {}
        }
    }
    None
}
