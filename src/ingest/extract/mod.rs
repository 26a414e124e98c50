//! Text extraction: one module per format, chosen by sniffing the content first and the
//! filename second. Each extractor is a plain function from bytes to [`Extracted`]; anything we
//! do not read fails as `unsupported_file`, a broken file as `invalid_file`, never a crash.

pub mod pdf;
pub mod text;

pub use crate::domain::location::{location_of, Section};

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
    text::extract(bytes, filename)
}
