//! What the fuzz targets share: the property every extractor must keep.

use ragstore_extract::{ExtractError, Extracted};

/// What every extractor promises for any input: no panic (checked by the fuzzer itself), a
/// message on failure, and sections that point inside the text, in order, on char boundaries.
pub fn check(result: Result<Extracted, ExtractError>) {
    match result {
        Ok(extracted) => {
            let mut last = 0;
            for section in &extracted.sections {
                assert!(section.start >= last, "sections out of order");
                assert!(
                    section.start <= extracted.text.len(),
                    "section past the text"
                );
                assert!(
                    extracted.text.is_char_boundary(section.start),
                    "section inside a character"
                );
                last = section.start;
            }
        }
        Err(ExtractError::Invalid(message) | ExtractError::Unsupported(message)) => {
            assert!(!message.is_empty(), "error without a message");
        }
    }
}
