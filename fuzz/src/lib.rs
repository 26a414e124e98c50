//! The extractor modules of ragstore, compiled on their own so the fuzz build does not pull in
//! the server (database, embedder, index). The paths mirror the crate layout the modules
//! expect (`crate::domain::location`, `super::…`).

#[path = "../../src/domain/location.rs"]
pub mod location;

pub mod domain {
    pub use super::location;
}

#[path = "../../src/ingest/extract/mod.rs"]
pub mod extract;

use extract::{ExtractError, Extracted};

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
