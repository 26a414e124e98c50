//! Where a piece of extracted text came from (page, sheet, heading), carried into chunks.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where a part of the extracted text came from: from byte `start` on (until the next section),
/// the text has this `location` (e.g. `{"page": 3}`, `{"sheet": "Q1"}`, `{"section": "Intro"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub start: usize,
    pub location: Map<String, Value>,
}

impl Section {
    /// A heading's section: from `start` on, the text is under `{"section": title}`.
    pub fn heading(start: usize, title: &str) -> Self {
        let mut location = Map::new();
        location.insert("section".to_owned(), Value::String(title.to_owned()));
        Section { start, location }
    }
}

/// The location of the chunk at bytes `start..end`: its first section's location, plus
/// `page_end` when it runs onto a later page.
pub fn location_of(sections: &[Section], start: usize, end: usize) -> Map<String, Value> {
    let at = |pos: usize| sections.iter().rev().find(|s| s.start <= pos);
    let mut loc = at(start).map(|s| s.location.clone()).unwrap_or_default();
    if let (Some(first), Some(last)) = (loc.get("page").cloned(), at(end.saturating_sub(1))) {
        if let Some(last_page) = last.location.get("page") {
            if *last_page != first {
                loc.insert("page_end".to_owned(), last_page.clone());
            }
        }
    }
    loc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sec(start: usize, loc: Value) -> Section {
        Section {
            start,
            location: loc.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn locations_follow_sections() {
        let s = vec![
            sec(0, json!({"page": 1})),
            sec(100, json!({"page": 2})),
            sec(250, json!({"page": 3})),
        ];
        assert_eq!(
            location_of(&s, 10, 50),
            json!({"page": 1}).as_object().cloned().unwrap_or_default()
        );
        assert_eq!(
            location_of(&s, 90, 260),
            json!({"page": 1, "page_end": 3})
                .as_object()
                .cloned()
                .unwrap_or_default()
        );
        assert!(location_of(&[], 0, 10).is_empty());
    }
}
