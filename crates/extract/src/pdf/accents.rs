//! Separate accents: accent glyphs drawn over a letter (TeX's OT1 fonts) composed with it.

use super::content::{Glyph, PageGlyphs};

/// The combining mark for a glyph that is a lone spacing accent.
fn combining_accent(text: &str) -> Option<char> {
    let mut chars = text.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    Some(match c {
        '\u{B4}' | '\u{2CA}' => '\u{301}',
        '`' | '\u{2CB}' => '\u{300}',
        '\u{A8}' => '\u{308}',
        '^' | '\u{2C6}' => '\u{302}',
        '~' | '\u{2DC}' => '\u{303}',
        '\u{B8}' => '\u{327}',
        '\u{2C7}' => '\u{30C}',
        '\u{2D8}' => '\u{306}',
        '\u{2DA}' => '\u{30A}',
        '\u{AF}' | '\u{2C9}' => '\u{304}',
        '\u{2DB}' => '\u{328}',
        '\u{2DD}' => '\u{30B}',
        '\u{2D9}' => '\u{307}',
        _ => return None,
    })
}

/// Whether accent glyph `a` is drawn over (or under) letter `b`: its centre within the letter's
/// advance, a similar size, and its baseline level with the letter's or raised a little (TeX
/// raises accents over capitals by about a quarter em).
fn accent_sits_on(a: &Glyph, b: &Glyph) -> bool {
    let centre = (a.x0 + a.x1) / 2.0;
    let rise = a.y - b.y;
    a.orient == b.orient
        && b.x0 < centre
        && centre < b.x1
        && rise > -0.25 * b.size
        && rise < 0.75 * b.size
        && a.size < 2.0 * b.size
        && b.size < 2.0 * a.size
}

/// `base` (a letter, maybe already accented) with `mark`, composed where Unicode can.
fn accented(base: &str, mark: char) -> Option<String> {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;

    let mut chars = base.chars();
    let first = chars.next()?;
    if !first.is_alphabetic() || base.len() > 16 || !chars.all(is_combining_mark) {
        return None;
    }
    // TeX puts accents over a dotless i or j: í is ı + ´.
    let above = !matches!(mark, '\u{327}' | '\u{328}');
    let letter = match first {
        '\u{131}' if above => 'i',
        '\u{237}' if above => 'j',
        c => c,
    };
    let marks = base.chars().skip(1);
    Some(
        std::iter::once(letter)
            .chain(marks)
            .chain(std::iter::once(mark))
            .nfc()
            .collect(),
    )
}

/// Merges accents drawn as glyphs of their own (TeX's OT1 fonts: `´` then `e` at the same place)
/// into their letter, so "´ecole" reads "école". Only a neighbour in drawing order that the
/// accent sits on qualifies, so a grave in "don`t" or a lone "´" in running text stays.
pub(super) fn combine_accents(page: &mut PageGlyphs) {
    let merged: Vec<bool> = (0..page.glyphs.len())
        .map(|i| merge_accent(page, i))
        .collect();
    let mut index = 0;
    page.glyphs.retain(|_| {
        index += 1;
        !merged[index - 1]
    });
}

/// Composes glyph `i`, if it is an accent, into the letter next to it in drawing order that it
/// sits on; whether it did.
fn merge_accent(page: &mut PageGlyphs, i: usize) -> bool {
    let Some(mark) = page
        .glyphs
        .get(i)
        .and_then(|g| combining_accent(page.text_of(g)))
    else {
        return false;
    };
    // TeX draws the accent first; other producers after the letter.
    for j in [i + 1, i.wrapping_sub(1)] {
        let (Some(accent), Some(letter)) = (page.glyphs.get(i), page.glyphs.get(j)) else {
            continue;
        };
        if !accent_sits_on(accent, letter) {
            continue;
        }
        let Some(text) = accented(page.text_of(letter), mark) else {
            continue;
        };
        let start = page.text.len();
        let end = start + text.len();
        if end >= u32::MAX as usize / 2 {
            return false;
        }
        page.text.push_str(&text);
        page.glyphs[j].start = start as u32;
        page.glyphs[j].end = end as u32;
        return true;
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use lopdf::{dictionary, Dictionary, Object};

    use super::super::tests::{courier, document, save, text};

    /// Times-Roman over WinAnsi, with accents TeX's OT1 fonts have and WinAnsi lacks.
    fn times_with_accents() -> Dictionary {
        dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => "Times-Roman",
            "Encoding" => dictionary! {
                "Type" => "Encoding",
                "BaseEncoding" => "WinAnsiEncoding",
                "Differences" => vec![
                    1.into(), Object::Name(b"hungarumlaut".to_vec()),
                    Object::Name(b"dotlessi".to_vec()), Object::Name(b"caron".to_vec()),
                ],
            },
        }
    }

    #[test]
    fn tex_separate_accents_are_combined() {
        // As pdfTeX draws \'e: the accent, a kern back by its width, the letter (Courier
        // advances are 600, Times ones 500 here as the fonts have no /Widths).
        let content =
            b"BT /F1 12 Tf 100 700 Td [(une \\264) 600 (ecole) ( \\250) 600 (uber)] TJ ET\n\
            BT /F1 12 Tf 1 0 0 1 100 680 Tm (\\264) Tj 1 0 0 1 100 677 Tm (Ecole) Tj ET\n\
            BT /F1 12 Tf 100 660 Td [(gar\\270) 600 (con) ( ou) 600 (\\140)] TJ ET"
                .to_vec();
        let bytes = save(&mut document(&[content], courier()).0);
        assert_eq!(
            text(&bytes),
            "une \u{e9}cole \u{fc}ber\n\u{c9}cole\ngar\u{e7}on o\u{f9}"
        );
        let content =
            b"BT /F1 10 Tf 72 700 Td [(Erd\\001) 500 (os na\\250) 500 (\\002ve \\003) 500 (\\002)] TJ ET"
                .to_vec();
        let bytes = save(&mut document(&[content], times_with_accents()).0);
        assert_eq!(text(&bytes), "Erd\u{151}s na\u{ef}ve \u{1d0}");
    }

    #[test]
    fn accents_in_running_text_stay() {
        // No overlap with a letter: a grave inside a word, spaced accents, an accent after a
        // letter, a caret between letters, an accent over a space or a digit.
        let content =
            b"BT /F1 10 Tf 72 700 Td (don\\140t use \\264 or \\250 e\\264 a\\136b) Tj ET\n\
            BT /F1 10 Tf 72 680 Td [(\\264) 600 ( ) (\\264) 600 (1)] TJ ET"
                .to_vec();
        let bytes = save(&mut document(&[content], courier()).0);
        assert_eq!(
            text(&bytes),
            "don`t use \u{b4} or \u{a8} e\u{b4} a^b\n\u{b4} \u{b4}1"
        );
    }
}
