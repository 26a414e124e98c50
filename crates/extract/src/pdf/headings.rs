//! Headings: lines set clearly larger than the body text, and their levels.

use std::collections::HashMap;

use super::layout::Line;

/// Headings: paragraph-starting short lines set clearly larger than the body text (the size
/// most characters have). Each distinct heading size, largest first, is a level (at most 4).
pub(super) struct Headings {
    /// Heading sizes (rounded to half points), largest first.
    pub(super) sizes: Vec<i64>,
}

/// Half points, so 10.02 and 9.98 count as one size.
pub(super) fn size_key(size: f64) -> i64 {
    (size * 2.0).round() as i64
}

impl Headings {
    /// How much larger than the body a heading must be.
    const RATIO: f64 = 1.15;
    /// Longer lines are text set large, not headings.
    pub(super) const MAX_CHARS: usize = 120;

    pub(super) fn find(pages: &[Vec<Line>]) -> Self {
        let mut by_size: HashMap<i64, usize> = HashMap::new();
        for line in pages.iter().flatten() {
            *by_size.entry(size_key(line.size)).or_default() += line.text.chars().count();
        }
        let Some(body) = by_size
            .iter()
            .max_by_key(|&(size, chars)| (*chars, -size))
            .map(|(&size, _)| size as f64 / 2.0)
        else {
            return Headings { sizes: Vec::new() };
        };
        let lines = pages.iter().flatten().count();
        let found: Vec<i64> = pages
            .iter()
            .flatten()
            .filter(|l| Self::shaped(l))
            .map(|l| size_key(l.size))
            .filter(|&k| k as f64 / 2.0 >= body * Self::RATIO)
            .collect();
        // A document that is mostly "headings" (slides, posters) has no body to stand out from.
        if found.is_empty() || found.len() * 2 > lines {
            return Headings { sizes: Vec::new() };
        }
        let mut sizes = found;
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        sizes.dedup();
        Headings { sizes }
    }

    /// Whether a line could be a heading, whatever its size: it starts a paragraph, is short
    /// and has a letter.
    fn shaped(line: &Line) -> bool {
        line.para
            && line.text.chars().count() <= Self::MAX_CHARS
            && line.text.chars().any(char::is_alphabetic)
    }

    /// The level (1-4) of a line that starts a heading, if it does.
    pub(super) fn level(&self, line: &Line) -> Option<usize> {
        if !Self::shaped(line) {
            return None;
        }
        let key = size_key(line.size);
        self.sizes
            .iter()
            .position(|&k| k == key)
            .map(|i| (i + 1).min(4))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::{json, Value};

    use super::super::extract;
    use super::super::tests::{body, courier, document, pdf, save};

    #[test]
    fn larger_short_lines_become_headings_and_sections() {
        // (size, y, text) on two pages; body text at 10 pt dominates.
        let page = |lines: &[(f64, f64, &str)]| {
            let mut c = String::from("BT\n");
            for (size, y, t) in lines {
                c.push_str(&format!("/F1 {size} Tf 1 0 0 1 72 {y} Tm ({t}) Tj\n"));
            }
            c.push_str("ET\n");
            c.into_bytes()
        };
        let p1 = page(&[
            (18.0, 740.0, "Field Guide"),
            (
                10.0,
                700.0,
                "The marsh harrier glides low over the reeds at dawn,",
            ),
            (
                10.0,
                688.0,
                "hunting voles and young birds along the water.",
            ),
            (14.0, 650.0, "Birds of the Marsh and"),
            (14.0, 634.0, "the Open Water"),
            (
                10.0,
                600.0,
                "Herons stand still in the shallows for a long time.",
            ),
        ]);
        let p2 = page(&[
            (
                10.0,
                740.0,
                "Bitterns boom in spring from deep inside the reed beds.",
            ),
            (14.0, 700.0, "Counts"),
            (
                10.0,
                670.0,
                "Twelve herons and three bitterns were counted in May.",
            ),
        ]);
        let out = extract(&save(&mut document(&[p1, p2], courier()).0)).unwrap();
        assert_eq!(out.format, "markdown");
        assert_eq!(
            out.text,
            "# Field Guide\n\nThe marsh harrier glides low over the reeds at dawn,\n\
             hunting voles and young birds along the water.\n\n\
             ## Birds of the Marsh and the Open Water\n\n\
             Herons stand still in the shallows for a long time.\n\n\
             Bitterns boom in spring from deep inside the reed beds.\n\n## Counts\n\n\
             Twelve herons and three bitterns were counted in May."
        );
        let got: Vec<(&str, Value)> = out
            .sections
            .iter()
            .map(|s| {
                (
                    out.text[s.start..].lines().next().unwrap(),
                    Value::Object(s.location.clone()),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "# Field Guide",
                    json!({"page": 1, "section": "Field Guide"})
                ),
                (
                    "## Birds of the Marsh and the Open Water",
                    json!({"page": 1, "section": "Birds of the Marsh and the Open Water"})
                ),
                (
                    "Bitterns boom in spring from deep inside the reed beds.",
                    json!({"page": 2, "section": "Birds of the Marsh and the Open Water"})
                ),
                ("## Counts", json!({"page": 2, "section": "Counts"})),
            ]
        );
    }

    #[test]
    fn one_size_documents_have_no_headings() {
        let out = extract(&pdf(&[body(
            72.0,
            700.0,
            &["Only body text here.", "More of it."],
        )]))
        .unwrap();
        assert_eq!(out.format, "text");
        assert!(out
            .sections
            .iter()
            .all(|s| !s.location.contains_key("section")));
    }
}
