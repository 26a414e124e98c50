//! CMaps (ToUnicode and embedded encodings): codespace ranges and `bfchar`/`bfrange` mappings.

use std::collections::HashMap;

use super::fonts::push_normalized;
use super::MAX_MAP_ENTRIES;

#[derive(Default)]
pub(super) struct CMap {
    pub(super) codespace: Vec<(u8, u32, u32)>,
    pub(super) map: HashMap<(u8, u32), Box<str>>,
}

enum Tok<'a> {
    Hex(Vec<u8>),
    Word(&'a [u8]),
    Open,
    Close,
}

fn cmap_tokens(data: &[u8]) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        match b {
            b'%' => {
                while i < data.len() && data[i] != b'\n' && data[i] != b'\r' {
                    i += 1;
                }
            }
            b'<' if data.get(i + 1) != Some(&b'<') => {
                let start = i + 1;
                let end = data[start..]
                    .iter()
                    .position(|&c| c == b'>')
                    .map_or(data.len(), |p| start + p);
                let digits: Vec<u8> = data[start..end]
                    .iter()
                    .filter(|c| c.is_ascii_hexdigit())
                    .copied()
                    .collect();
                let bytes = digits
                    .chunks(2)
                    .map(|p| {
                        let hi = hex_val(p[0]);
                        let lo = p.get(1).map_or(0, |&c| hex_val(c));
                        (hi << 4) | lo
                    })
                    .collect();
                out.push(Tok::Hex(bytes));
                i = end + 1;
            }
            b'[' => {
                out.push(Tok::Open);
                i += 1;
            }
            b']' => {
                out.push(Tok::Close);
                i += 1;
            }
            b'(' => {
                // A literal string (rare in CMaps): keep its bytes as a code.
                let start = i + 1;
                let end = data[start..]
                    .iter()
                    .position(|&c| c == b')')
                    .map_or(data.len(), |p| start + p);
                out.push(Tok::Hex(data[start..end].to_vec()));
                i = end + 1;
            }
            c if c.is_ascii_whitespace() || c == b'<' || c == b'>' => i += 1,
            _ => {
                let start = i;
                while i < data.len()
                    && !data[i].is_ascii_whitespace()
                    && !matches!(data[i], b'<' | b'>' | b'[' | b']' | b'(' | b'%')
                {
                    i += 1;
                }
                out.push(Tok::Word(&data[start..i]));
            }
        }
    }
    out
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

fn code_of(bytes: &[u8]) -> Option<(u8, u32)> {
    if bytes.is_empty() || bytes.len() > 4 {
        return None;
    }
    Some((
        bytes.len() as u8,
        bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)),
    ))
}

fn utf16be(bytes: &[u8]) -> Box<str> {
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|p| (u16::from(p[0]) << 8) | u16::from(p.get(1).copied().unwrap_or(0)))
        .collect();
    let mut s = String::new();
    push_normalized(&mut s, &String::from_utf16_lossy(&units));
    s.into_boxed_str()
}

/// Parses the codespace ranges and `bfchar`/`bfrange` mappings of a CMap.
pub(super) fn parse_cmap(data: &[u8]) -> CMap {
    let toks = cmap_tokens(data);
    let mut cmap = CMap::default();
    let mut i = 0;
    let mut section: &[u8] = b"";
    while i < toks.len() && cmap.map.len() < MAX_MAP_ENTRIES {
        match &toks[i] {
            Tok::Word(w) => {
                if w.starts_with(b"begin") {
                    section = w;
                } else if w.starts_with(b"end") {
                    section = b"";
                }
                i += 1;
            }
            Tok::Hex(src) => match section {
                b"begincodespacerange" => {
                    if let (Some(Tok::Hex(hi)), Some((len, lo))) = (toks.get(i + 1), code_of(src)) {
                        if let Some((_, hi)) = code_of(hi) {
                            cmap.codespace.push((len, lo, hi));
                        }
                    }
                    i += 2;
                }
                b"beginbfchar" => {
                    if let (Some(Tok::Hex(dst)), Some(code)) = (toks.get(i + 1), code_of(src)) {
                        cmap.map.insert(code, utf16be(dst));
                    }
                    i += 2;
                }
                b"beginbfrange" => {
                    let (Some(Tok::Hex(hi)), Some((len, lo))) = (toks.get(i + 1), code_of(src))
                    else {
                        i += 1;
                        continue;
                    };
                    let hi = code_of(hi).map_or(lo, |(_, h)| h).max(lo);
                    let hi = hi.min(lo.saturating_add(MAX_MAP_ENTRIES as u32));
                    match toks.get(i + 2) {
                        Some(Tok::Hex(dst)) if !dst.is_empty() => {
                            let mut dst = dst.clone();
                            for code in lo..=hi {
                                if cmap.map.len() >= MAX_MAP_ENTRIES {
                                    break;
                                }
                                cmap.map.insert((len, code), utf16be(&dst));
                                increment_last(&mut dst);
                            }
                            i += 3;
                        }
                        Some(Tok::Open) => {
                            let mut j = i + 3;
                            let mut code = lo;
                            while let Some(Tok::Hex(dst)) = toks.get(j) {
                                if code <= hi {
                                    cmap.map.insert((len, code), utf16be(dst));
                                }
                                code = code.saturating_add(1);
                                j += 1;
                            }
                            i = j + 1;
                        }
                        _ => i += 3,
                    }
                }
                _ => i += 1,
            },
            _ => i += 1,
        }
    }
    cmap
}

/// Adds one to the last UTF-16 unit of a big-endian destination (bfrange semantics).
fn increment_last(dst: &mut [u8]) {
    let n = dst.len();
    if n >= 2 {
        let v = ((u16::from(dst[n - 2]) << 8) | u16::from(dst[n - 1])).wrapping_add(1);
        dst[n - 2] = (v >> 8) as u8;
        dst[n - 1] = v as u8;
    } else if n == 1 {
        dst[0] = dst[0].wrapping_add(1);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use lopdf::{dictionary, Object, Stream};

    use super::super::layout::is_page_number;
    use super::super::tests::{document, save, text};
    use super::*;

    #[test]
    fn tounicode_cid_font() {
        let cmap = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n\
            1 begincodespacerange <0000> <FFFF> endcodespacerange\n\
            2 beginbfchar <0001> <0048> <0005> <FB01> endbfchar\n\
            1 beginbfrange <0002> <0004> <0069> endbfrange\n\
            1 beginbfrange <0010> <0011> [<00E9> <0020>] endbfrange\n\
            endcmap CMapName currentdict /CMap defineresource pop end end"
            .to_vec();
        let (mut doc, _) = document(&[], dictionary! {});
        let to_unicode = doc.add_object(Stream::new(dictionary! {}, cmap));
        let cid = doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "CIDFontType2",
            "BaseFont" => "Test",
            "CIDSystemInfo" => dictionary! {
                "Registry" => Object::string_literal("Adobe"),
                "Ordering" => Object::string_literal("Identity"),
                "Supplement" => 0,
            },
            "DW" => 500,
        });
        let font = dictionary! {
            "Type" => "Font",
            "Subtype" => "Type0",
            "BaseFont" => "Test",
            "Encoding" => "Identity-H",
            "DescendantFonts" => vec![Object::Reference(cid)],
            "ToUnicode" => to_unicode,
        };
        // "Hij" + space + "fi" ligature + "né" -> codes 1,2,3,(0x11 space),5,(0x0004 'k'),0x10
        let content = b"BT /F1 10 Tf 72 700 Td <0001000200030011000500040010> Tj ET".to_vec();
        let (mut doc2, _) = document(&[content], font);
        // Move the objects made above into the second document under fresh ids.
        let _ = &mut doc;
        let to_unicode = doc2.add_object(doc.objects.remove(&to_unicode).unwrap());
        let cid = doc2.add_object(doc.objects.remove(&cid).unwrap());
        let font_id = doc2
            .objects
            .iter()
            .find(|(_, o)| o.as_dict().is_ok_and(|d| d.has_type(b"Font")))
            .map(|(id, _)| *id)
            .unwrap();
        let f = doc2.get_dictionary_mut(font_id).unwrap();
        f.set("ToUnicode", to_unicode);
        f.set("DescendantFonts", vec![Object::Reference(cid)]);
        let bytes = save(&mut doc2);
        assert_eq!(text(&bytes), "Hij fik\u{e9}");
    }

    #[test]
    fn cmap_parser_handles_ranges_and_garbage() {
        let m = parse_cmap(b"1 begincodespacerange <00> <FF> endcodespacerange 1 beginbfrange <41> <43> <0061> endbfrange <<>> [ ( garbage");
        assert_eq!(m.codespace, vec![(1, 0, 255)]);
        assert_eq!(m.map.get(&(1, 0x42)).map(|s| &**s), Some("b"));
        // A huge range is capped.
        let m = parse_cmap(b"1 beginbfrange <00000000> <FFFFFFFF> <0041> endbfrange");
        assert!(m.map.len() <= MAX_MAP_ENTRIES);
        assert!(is_page_number("- 12 -") && is_page_number("Page 3 of 9") && is_page_number("xiv"));
        assert!(!is_page_number("Chapter 2"));
    }
}
