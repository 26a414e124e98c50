//! Fonts and encodings: how a font's string bytes become glyphs, with Unicode text and widths.
//! Simple fonts read a byte table (a standard encoding, `/Differences`, the built-in encoding of
//! an embedded Type 1 program, then ToUnicode); Type0 fonts read multi-byte codes through their
//! CMaps, and Identity-encoded TrueType CID fonts without ToUnicode through the font's own `cmap`.

use std::collections::HashMap;
use std::rc::Rc;

use lopdf::{Dictionary, Document, Encoding, Object, ObjectId};

use super::cmap::{parse_cmap, CMap};
use super::{num, MAX_CMAP_PROBES, MAX_MAP_ENTRIES, MAX_STREAM_BYTES};

/// How a font's string bytes become glyphs.
enum Codes {
    /// One byte per glyph; unicode and width per byte.
    Simple {
        text: Vec<Option<Box<str>>>,
        widths: Vec<f64>,
    },
    /// Multi-byte codes (Type0): code lengths from the codespace ranges.
    Cid {
        /// `(bytes, low, high)` codespace ranges; empty means two-byte codes.
        codespace: Vec<(u8, u32, u32)>,
        to_unicode: HashMap<(u8, u32), Box<str>>,
        /// Codes are UTF-16 themselves (predefined `Uni…-UCS2`/`UTF16` CMaps).
        utf16: bool,
        widths: HashMap<u32, f64>,
        default_width: f64,
    },
}

pub(super) struct Font {
    codes: Codes,
    /// Glyph-space units to text-space units (1/1000, or a Type 3 font's matrix).
    pub(super) scale: f64,
    /// Vertical size factor relative to the font size (Type 3 fonts may differ from 1).
    pub(super) vscale: f64,
}

/// One decoded code: its Unicode text (if any), its width in glyph space, whether it is the
/// single-byte code 32 (which takes word spacing).
pub(super) struct Code<'f> {
    pub(super) text: Option<&'f str>,
    pub(super) width: f64,
    pub(super) is_space_code: bool,
}

impl Font {
    pub(super) fn fallback() -> Font {
        let text = (0u8..=255)
            .map(|b| {
                (b.is_ascii_graphic() || b == b' ')
                    .then(|| char::from(b).to_string().into_boxed_str())
            })
            .collect();
        Font {
            codes: Codes::Simple {
                text,
                widths: vec![500.0; 256],
            },
            scale: 0.001,
            vscale: 1.0,
        }
    }

    /// Splits `bytes` into codes and calls `f` for each.
    pub(super) fn each_code(&self, bytes: &[u8], mut f: impl FnMut(Code<'_>)) {
        match &self.codes {
            Codes::Simple { text, widths } => {
                for &b in bytes {
                    f(Code {
                        text: text.get(usize::from(b)).and_then(|t| t.as_deref()),
                        width: widths.get(usize::from(b)).copied().unwrap_or(0.0),
                        is_space_code: b == b' ',
                    });
                }
            }
            Codes::Cid {
                codespace,
                to_unicode,
                utf16,
                widths,
                default_width,
            } => {
                let mut i = 0;
                let mut utf16_buf = String::new();
                while i < bytes.len() {
                    let len = code_len(codespace, &bytes[i..]);
                    let end = (i + len).min(bytes.len());
                    let code = bytes[i..end]
                        .iter()
                        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
                    i = end;
                    let width = widths.get(&code).copied().unwrap_or(*default_width);
                    let is_space_code = len == 1 && code == 32;
                    if let Some(t) = to_unicode.get(&(len as u8, code)) {
                        f(Code {
                            text: Some(t),
                            width,
                            is_space_code,
                        });
                    } else if *utf16 {
                        utf16_buf.clear();
                        if let Some(c) = char::from_u32(code) {
                            utf16_buf.push(c);
                        }
                        f(Code {
                            text: Some(&utf16_buf),
                            width,
                            is_space_code,
                        });
                    } else {
                        f(Code {
                            text: None,
                            width,
                            is_space_code,
                        });
                    }
                }
            }
        }
    }
}

/// The length of the code starting `bytes`, from the codespace ranges (two bytes by default).
fn code_len(codespace: &[(u8, u32, u32)], bytes: &[u8]) -> usize {
    if codespace.is_empty() {
        return 2;
    }
    for len in 1..=4u8 {
        let n = usize::from(len);
        if bytes.len() < n {
            break;
        }
        let code = bytes[..n]
            .iter()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        if codespace
            .iter()
            .any(|&(l, lo, hi)| l == len && lo <= code && code <= hi)
        {
            return n;
        }
    }
    // Not in any range: take the shortest declared length.
    codespace
        .iter()
        .map(|&(l, _, _)| usize::from(l))
        .min()
        .unwrap_or(1)
}

/// Ligatures and presentation forms spelled out as letters.
pub(super) fn push_normalized(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\u{FB00}' => out.push_str("ff"),
            '\u{FB01}' => out.push_str("fi"),
            '\u{FB02}' => out.push_str("fl"),
            '\u{FB03}' => out.push_str("ffi"),
            '\u{FB04}' => out.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => out.push_str("st"),
            '\u{A0}' | '\t' | '\n' | '\r' => out.push(' '),
            '\u{0}'..='\u{1F}' | '\u{FFFD}' => {}
            c => out.push(c),
        }
    }
}

/// Builds fonts from their dictionaries; caches them per object and glyph names per name.
pub(super) struct FontCache<'d> {
    doc: &'d Document,
    fonts: HashMap<ObjectId, Rc<Font>>,
    glyph_names: HashMap<Vec<u8>, Option<Box<str>>>,
    /// Base encodings decoded byte by byte, by name.
    base_tables: HashMap<Vec<u8>, Rc<ByteTable>>,
    /// What is left of [`MAX_CMAP_PROBES`].
    cmap_probes_left: usize,
}

/// Unicode text per byte of a simple font.
type ByteTable = Vec<Option<Box<str>>>;

impl<'d> FontCache<'d> {
    pub(super) fn new(doc: &'d Document) -> Self {
        FontCache {
            doc,
            fonts: HashMap::new(),
            glyph_names: HashMap::new(),
            base_tables: HashMap::new(),
            cmap_probes_left: MAX_CMAP_PROBES,
        }
    }

    pub(super) fn get(&mut self, font: &Object) -> Rc<Font> {
        let id = font.as_reference().ok();
        if let Some(font) = id.and_then(|id| self.fonts.get(&id)) {
            return font.clone();
        }
        let dict = self
            .doc
            .dereference(font)
            .ok()
            .and_then(|(_, o)| o.as_dict().ok());
        let built = Rc::new(dict.map_or_else(Font::fallback, |d| self.build(d)));
        if let Some(id) = id {
            self.fonts.insert(id, built.clone());
        }
        built
    }

    fn deref<'a>(&'a self, o: &'a Object) -> Option<&'a Object> {
        self.doc.dereference(o).ok().map(|(_, o)| o)
    }

    fn dict_get<'a>(&'a self, dict: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
        dict.get(key).ok().and_then(|o| self.deref(o))
    }

    fn stream_bytes(&self, o: &Object) -> Option<Vec<u8>> {
        let stream = self.deref(o)?.as_stream().ok()?;
        stream
            .decompressed_content_with_limit(MAX_STREAM_BYTES)
            .ok()
            .or_else(|| {
                // Unfiltered streams have nothing to decompress.
                stream
                    .dict
                    .get(b"Filter")
                    .is_err()
                    .then(|| stream.content.clone())
            })
    }

    fn build(&mut self, dict: &Dictionary) -> Font {
        let subtype = self
            .dict_get(dict, b"Subtype")
            .and_then(|o| o.as_name().ok())
            .unwrap_or(b"Type1")
            .to_vec();
        let to_unicode = self
            .dict_get(dict, b"ToUnicode")
            .and_then(|o| self.stream_bytes(o))
            .map(|b| parse_cmap(&b))
            .unwrap_or_default();
        if subtype == b"Type0" {
            return self.build_type0(dict, to_unicode);
        }
        let (scale, vscale) = if subtype == b"Type3" {
            let m = self
                .dict_get(dict, b"FontMatrix")
                .and_then(|o| o.as_array().ok())
                .map(|a| a.iter().filter_map(num).collect::<Vec<_>>())
                .unwrap_or_default();
            match m.as_slice() {
                [a, _, _, d, ..] if *a != 0.0 && *d != 0.0 => (a.abs(), (d.abs() * 1000.0)),
                _ => (0.001, 1.0),
            }
        } else {
            (0.001, 1.0)
        };
        let mut text = self.simple_encoding(dict, &subtype);
        for (&(len, code), t) in &to_unicode.map {
            if len <= 2 && code < 256 {
                if let Some(slot) = text.get_mut(code as usize) {
                    *slot = Some(t.clone());
                }
            }
        }
        let widths = self.simple_widths(dict);
        Font {
            codes: Codes::Simple { text, widths },
            scale,
            vscale,
        }
    }

    fn simple_widths(&self, dict: &Dictionary) -> Vec<f64> {
        let base = self
            .dict_get(dict, b"BaseFont")
            .and_then(|o| o.as_name().ok())
            .unwrap_or_default();
        let missing = self
            .dict_get(dict, b"FontDescriptor")
            .and_then(|o| o.as_dict().ok())
            .and_then(|fd| self.dict_get(fd, b"MissingWidth"))
            .and_then(num)
            .filter(|w| *w > 0.0);
        // Without metrics, a typical advance: monospace for Courier, half an em otherwise.
        let default = missing.unwrap_or(if base.windows(7).any(|w| w == b"Courier") {
            600.0
        } else {
            500.0
        });
        let mut widths = vec![default; 256];
        let first = self
            .dict_get(dict, b"FirstChar")
            .and_then(num)
            .unwrap_or(0.0)
            .max(0.0) as usize;
        if let Some(list) = self
            .dict_get(dict, b"Widths")
            .and_then(|o| o.as_array().ok())
        {
            for (i, w) in list.iter().enumerate() {
                if let (Some(slot), Some(w)) =
                    (widths.get_mut(first + i), self.deref(w).and_then(num))
                {
                    *slot = if w > 0.0 { w } else { default };
                }
            }
        }
        widths
    }

    /// Unicode per byte of a simple font: base encoding, then `/Differences`.
    fn simple_encoding(&mut self, dict: &Dictionary, subtype: &[u8]) -> Vec<Option<Box<str>>> {
        let encoding = self.dict_get(dict, b"Encoding");
        let (base_name, differences) = match encoding {
            Some(Object::Name(n)) => (Some(n.clone()), None),
            Some(Object::Dictionary(d)) => (
                self.dict_get(d, b"BaseEncoding")
                    .and_then(|o| o.as_name().ok())
                    .map(<[u8]>::to_vec),
                self.dict_get(d, b"Differences")
                    .and_then(|o| o.as_array().ok())
                    .cloned(),
            ),
            _ => (None, None),
        };
        let mut text: Vec<Option<Box<str>>> = match &base_name {
            Some(name) => self.base_table(name).as_ref().clone(),
            None => match self.builtin_encoding(dict) {
                Some(t) => t,
                None if subtype == b"TrueType" => {
                    self.base_table(b"WinAnsiEncoding").as_ref().clone()
                }
                None => self.base_table(b"StandardEncoding").as_ref().clone(),
            },
        };
        if let Some(diffs) = differences {
            let mut code = 0usize;
            let doc = self.doc;
            for item in &diffs {
                match doc.dereference(item).ok().map(|(_, o)| o) {
                    Some(Object::Integer(i)) => code = (*i).clamp(0, 256) as usize,
                    Some(Object::Name(name)) => {
                        let u = self.glyph_unicode(name);
                        if let Some(slot) = text.get_mut(code) {
                            *slot = u;
                        }
                        code += 1;
                    }
                    _ => {}
                }
            }
        }
        text
    }

    /// A standard encoding decoded byte by byte through lopdf's tables.
    fn base_table(&mut self, name: &[u8]) -> Rc<ByteTable> {
        if let Some(t) = self.base_tables.get(name) {
            return t.clone();
        }
        let mut fake = Dictionary::new();
        fake.set("Type", Object::Name(b"Font".to_vec()));
        fake.set("Encoding", Object::Name(name.to_vec()));
        let table: Vec<Option<Box<str>>> = match fake.get_font_encoding(self.doc) {
            Ok(enc @ Encoding::OneByteEncoding(_)) => (0u8..=255)
                .map(|b| {
                    Document::decode_text(&enc, &[b])
                        .ok()
                        .filter(|s| !s.is_empty())
                        .map(String::into_boxed_str)
                })
                .collect(),
            _ => Font::fallback_text(),
        };
        let table = Rc::new(table);
        self.base_tables.insert(name.to_vec(), table.clone());
        table
    }

    /// Unicode for a glyph name: `uniXXXX`, `uXXXX`, the Adobe glyph list (through lopdf),
    /// `a_b` ligature names, `name.suffix` variants.
    fn glyph_unicode(&mut self, name: &[u8]) -> Option<Box<str>> {
        if let Some(u) = self.glyph_names.get(name) {
            return u.clone();
        }
        let u = self.lookup_glyph(name, 0);
        self.glyph_names.insert(name.to_vec(), u.clone());
        u
    }

    fn lookup_glyph(&self, name: &[u8], depth: usize) -> Option<Box<str>> {
        if depth > 2 || name.is_empty() {
            return None;
        }
        let s = std::str::from_utf8(name).ok()?;
        if let Some(hex) = s.strip_prefix("uni") {
            if hex.len() >= 4 && hex.len() % 4 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                let units: Vec<u16> = hex
                    .as_bytes()
                    .chunks(4)
                    .filter_map(|c| u16::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
                    .collect();
                return Some(String::from_utf16_lossy(&units).into_boxed_str());
            }
        }
        if let Some(hex) = s.strip_prefix('u') {
            if (4..=6).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return u32::from_str_radix(hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .map(|c| c.to_string().into_boxed_str());
            }
        }
        if let Some((base, _suffix)) = s.split_once('.') {
            return self.lookup_glyph(base.as_bytes(), depth + 1);
        }
        if s.contains('_') {
            let parts: Option<Vec<Box<str>>> = s
                .split('_')
                .map(|p| self.lookup_glyph(p.as_bytes(), depth + 1))
                .collect();
            return parts.map(|p| p.concat().into_boxed_str());
        }
        let mut diffs = Dictionary::new();
        diffs.set(
            "Differences",
            Object::Array(vec![Object::Integer(0), Object::Name(name.to_vec())]),
        );
        let mut fake = Dictionary::new();
        fake.set("Type", Object::Name(b"Font".to_vec()));
        fake.set("Encoding", Object::Dictionary(diffs));
        match fake.get_font_encoding(self.doc) {
            Ok(enc @ Encoding::Differences(_)) => Document::decode_text(&enc, &[0])
                .ok()
                .filter(|t| !t.is_empty())
                .map(String::into_boxed_str),
            _ => None,
        }
    }

    /// The encoding written inside an embedded Type 1 font program (`dup 65 /A put`).
    fn builtin_encoding(&mut self, dict: &Dictionary) -> Option<Vec<Option<Box<str>>>> {
        let fd = self
            .dict_get(dict, b"FontDescriptor")
            .and_then(|o| o.as_dict().ok())?;
        let file = fd.get(b"FontFile").ok()?;
        let program = self.stream_bytes(file)?;
        let clear_len = self
            .deref(file)
            .and_then(|o| o.as_stream().ok())
            .and_then(|s| s.dict.get(b"Length1").ok())
            .and_then(|o| self.deref(o))
            .and_then(num)
            .map_or(program.len(), |l| (l.max(0.0) as usize).min(program.len()));
        let clear = &program[..clear_len];
        let at = clear.windows(9).position(|w| w == b"/Encoding")?;
        let rest = &clear[at + 9..];
        let head = &rest[..rest.len().min(64)];
        if head.windows(16).any(|w| w == b"StandardEncoding") {
            return Some(self.base_table(b"StandardEncoding").as_ref().clone());
        }
        let end = rest
            .windows(8)
            .position(|w| w == b"readonly" || w == b"currentd")
            .unwrap_or(rest.len());
        let tokens: Vec<&[u8]> = rest[..end]
            .split(|b| b.is_ascii_whitespace())
            .filter(|t| !t.is_empty())
            .collect();
        let mut text = vec![None; 256];
        let mut any = false;
        for w in tokens.windows(4) {
            if w[0] == b"dup" && w[3] == b"put" {
                let code = std::str::from_utf8(w[1])
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok());
                if let (Some(code), Some(name)) = (code, w[2].strip_prefix(b"/")) {
                    if code < 256 {
                        text[code] = self.glyph_unicode(name);
                        any = true;
                    }
                }
            }
        }
        any.then_some(text)
    }

    fn build_type0(&mut self, dict: &Dictionary, mut to_unicode: CMap) -> Font {
        let encoding = self.dict_get(dict, b"Encoding");
        let identity =
            matches!(encoding, Some(Object::Name(n)) if n == b"Identity-H" || n == b"Identity-V");
        let (mut codespace, utf16) = match encoding {
            Some(Object::Name(n)) => {
                let n = String::from_utf8_lossy(n);
                let utf16 = n.starts_with("Uni") && (n.contains("UCS2") || n.contains("UTF16"));
                (Vec::new(), utf16)
            }
            Some(Object::Stream(s)) => {
                let bytes = s
                    .decompressed_content_with_limit(MAX_STREAM_BYTES)
                    .unwrap_or_else(|_| s.content.clone());
                (parse_cmap(&bytes).codespace, false)
            }
            _ => (Vec::new(), false),
        };
        if codespace.is_empty() && !utf16 {
            codespace = to_unicode.codespace.clone();
            // A ToUnicode codespace of one-byte codes is usually wrong for Identity encodings.
            if codespace.iter().all(|&(l, _, _)| l == 1) {
                codespace.clear();
            }
        }
        let descendant = self
            .dict_get(dict, b"DescendantFonts")
            .and_then(|o| o.as_array().ok())
            .and_then(|a| a.first())
            .and_then(|o| self.deref(o))
            .and_then(|o| o.as_dict().ok());
        let mut widths = HashMap::new();
        let mut default_width = 1000.0;
        let mut probes_left = self.cmap_probes_left;
        if let Some(cid) = descendant {
            if let Some(dw) = self.dict_get(cid, b"DW").and_then(num) {
                default_width = dw;
            }
            if let Some(w) = self.dict_get(cid, b"W").and_then(|o| o.as_array().ok()) {
                self.cid_widths(w, &mut widths);
            }
            if identity && to_unicode.map.is_empty() {
                to_unicode.map = self.truetype_cid_unicode(cid, &mut probes_left);
            }
        }
        self.cmap_probes_left = probes_left;
        Font {
            codes: Codes::Cid {
                codespace,
                to_unicode: to_unicode.map,
                utf16,
                widths,
                default_width,
            },
            scale: 0.001,
            vscale: 1.0,
        }
    }

    /// Unicode per two-byte code of an Identity-encoded CIDFontType2 without ToUnicode: the
    /// embedded TrueType's `cmap` inverted (glyph -> code point), through `/CIDToGIDMap`.
    fn truetype_cid_unicode(
        &self,
        cid_font: &Dictionary,
        probes_left: &mut usize,
    ) -> HashMap<(u8, u32), Box<str>> {
        let mut out = HashMap::new();
        let subtype = self
            .dict_get(cid_font, b"Subtype")
            .and_then(|o| o.as_name().ok());
        if subtype != Some(b"CIDFontType2") {
            return out;
        }
        let Some(program) = self
            .dict_get(cid_font, b"FontDescriptor")
            .and_then(|o| o.as_dict().ok())
            .and_then(|fd| fd.get(b"FontFile2").ok())
            .and_then(|f| self.stream_bytes(f))
        else {
            return out;
        };
        let by_glyph = invert_cmap(&program, probes_left);
        let text = |gid: u16| by_glyph.get(&gid).map(|c| c.to_string().into_boxed_str());
        match self.dict_get(cid_font, b"CIDToGIDMap") {
            // Absent means Identity: the CID is the glyph id.
            None | Some(Object::Name(_)) => {
                for &gid in by_glyph.keys() {
                    if let Some(t) = text(gid) {
                        out.insert((2, u32::from(gid)), t);
                    }
                }
            }
            Some(o @ Object::Stream(_)) => {
                let map = self.stream_bytes(o).unwrap_or_default();
                // Two bytes (big-endian glyph id) per CID; CIDs are at most 65535.
                for (cid, pair) in map.chunks_exact(2).take(1 << 16).enumerate() {
                    if let Some(t) = text(u16::from_be_bytes([pair[0], pair[1]])) {
                        out.insert((2, cid as u32), t);
                    }
                }
            }
            Some(_) => {}
        }
        out
    }

    /// `/W`: `c [w1 w2 …]` and `c_first c_last w` entries.
    fn cid_widths(&self, w: &[Object], out: &mut HashMap<u32, f64>) {
        let mut i = 0;
        while i < w.len() && out.len() < MAX_MAP_ENTRIES {
            let Some(first) = self.deref(&w[i]).and_then(num) else {
                return;
            };
            let first = first.max(0.0) as u32;
            match w.get(i + 1).and_then(|o| self.deref(o)) {
                Some(Object::Array(list)) => {
                    for (k, v) in list.iter().enumerate() {
                        if let Some(v) = self.deref(v).and_then(num) {
                            out.insert(first.saturating_add(k as u32), v);
                        }
                    }
                    i += 2;
                }
                Some(o) => {
                    let last = num(o).unwrap_or(0.0).max(0.0) as u32;
                    let Some(v) = w.get(i + 2).and_then(|o| self.deref(o)).and_then(num) else {
                        return;
                    };
                    let last = last.min(first.saturating_add(MAX_MAP_ENTRIES as u32));
                    for c in first..=last {
                        if out.len() >= MAX_MAP_ENTRIES {
                            break;
                        }
                        out.insert(c, v);
                    }
                    i += 3;
                }
                None => return,
            }
        }
    }
}

impl Font {
    fn fallback_text() -> Vec<Option<Box<str>>> {
        match Font::fallback().codes {
            Codes::Simple { text, .. } => text,
            Codes::Cid { .. } => vec![None; 256],
        }
    }
}

/// Glyph id -> code point from a TrueType font's best Unicode `cmap` subtable. Several code
/// points on one glyph: the lowest wins (U+0020 over U+00A0, `A` over Greek Alpha); private-use
/// code points are left out, as they mean nothing to a reader. Empty if the font has no usable
/// Unicode subtable or `probes_left` cannot pay for the sweep.
fn invert_cmap(program: &[u8], probes_left: &mut usize) -> HashMap<u16, char> {
    use ttf_parser::cmap::{Format, Subtable};
    use ttf_parser::PlatformId;

    let mut out = HashMap::new();
    let Some(table) = ttf_parser::RawFace::parse(program, 0)
        .ok()
        .and_then(|face| face.table(ttf_parser::Tag::from_bytes(b"cmap")))
        .and_then(ttf_parser::cmap::Table::parse)
    else {
        return out;
    };
    // Full-repertoire tables first, then BMP ones. (Symbol (3,0) tables are not Unicode.)
    let rank = |s: &Subtable<'_>| match (s.platform_id, s.encoding_id) {
        (PlatformId::Windows, 10) => 0,
        (PlatformId::Unicode, 4 | 6) => 1,
        (PlatformId::Windows, 1) => 2,
        _ => 3,
    };
    let Some(best) = table
        .subtables
        .into_iter()
        .filter(|s| s.is_unicode() && !matches!(s.format, Format::UnicodeVariationSequences(_)))
        .min_by_key(rank)
    else {
        return out;
    };
    // Sweeping code points (rather than the table's own ranges, which a hostile font can make
    // overlap endlessly) keeps the cost fixed. Ascending order makes the lowest code point win.
    let wide = matches!(
        best.format,
        Format::SegmentedCoverage(_) | Format::ManyToOneRangeMappings(_)
    );
    let mut ranges = vec![0x20..=0x7E, 0xA0..=0xD7FF, 0xF900..=0xFFFD];
    if wide {
        // Supplementary planes in use in text: math alphanumerics, emoji, CJK extensions.
        ranges.push(0x1_0000..=0x2_FFFF);
    }
    let cost: usize = ranges
        .iter()
        .map(|r| (r.end() - r.start() + 1) as usize)
        .sum();
    let Some(left) = probes_left.checked_sub(cost) else {
        tracing::debug!("PDF cmap look-up budget spent; TrueType font left without text");
        return out;
    };
    *probes_left = left;
    for cp in ranges.into_iter().flatten() {
        if let (Some(gid), Some(c)) = (best.glyph_index(cp), char::from_u32(cp)) {
            if gid.0 != 0 {
                out.entry(gid.0).or_insert(c);
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashSet;

    use lopdf::{dictionary, Stream};

    use super::super::tests::{courier, document, save, text};
    use super::super::{extract, ExtractError};
    use super::*;

    #[test]
    fn winansi_accents() {
        let content =
            b"BT /F1 10 Tf 72 700 Td (caf\\351 na\\357ve \\223quoted\\224) Tj ET".to_vec();
        let bytes = save(&mut document(&[content], courier()).0);
        assert_eq!(text(&bytes), "caf\u{e9} na\u{ef}ve \u{201c}quoted\u{201d}");
    }

    #[test]
    fn differences_and_ligatures() {
        let font = dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => "Times-Roman",
            "Encoding" => dictionary! {
                "Type" => "Encoding",
                "BaseEncoding" => "WinAnsiEncoding",
                "Differences" => vec![
                    1.into(), Object::Name(b"fi".to_vec()), Object::Name(b"fl".to_vec()),
                    Object::Name(b"ffi".to_vec()), Object::Name(b"uni00E9".to_vec()),
                ],
            },
        };
        let content = b"BT /F1 10 Tf 72 700 Td (\\001nd \\002ow o\\003ce caf\\004) Tj ET".to_vec();
        let bytes = save(&mut document(&[content], font).0);
        assert_eq!(text(&bytes), "find flow office caf\u{e9}");
    }

    /// A subset of DejaVu Sans (see tests/fixtures/pdf/README.md).
    const DEJAVU_SUBSET: &[u8] = include_bytes!("../../tests/fixtures/pdf/dejavu-subset.ttf");

    /// A PDF showing `content` with `/F1` = an Identity-H Type0 font over a CIDFontType2 that
    /// embeds `program`, with no ToUnicode. `cid_to_gid`: the `/CIDToGIDMap` stream, if any.
    fn truetype_cid_pdf(content: Vec<u8>, program: &[u8], cid_to_gid: Option<Vec<u8>>) -> Vec<u8> {
        let (mut doc, ids) = document(&[content], dictionary! {});
        let file = doc.add_object(Stream::new(
            dictionary! { "Length1" => program.len() as i64 },
            program.to_vec(),
        ));
        let descriptor = doc.add_object(dictionary! {
            "Type" => "FontDescriptor",
            "FontName" => "ABCDEF+DejaVuSans",
            "Flags" => 4,
            "FontBBox" => vec![0.into(), (-200).into(), 1000.into(), 900.into()],
            "ItalicAngle" => 0,
            "Ascent" => 900,
            "Descent" => -200,
            "CapHeight" => 700,
            "StemV" => 80,
            "FontFile2" => file,
        });
        let mut cid = dictionary! {
            "Type" => "Font",
            "Subtype" => "CIDFontType2",
            "BaseFont" => "ABCDEF+DejaVuSans",
            "CIDSystemInfo" => dictionary! {
                "Registry" => Object::string_literal("Adobe"),
                "Ordering" => Object::string_literal("Identity"),
                "Supplement" => 0,
            },
            "FontDescriptor" => descriptor,
            "DW" => 600,
        };
        if let Some(map) = cid_to_gid {
            cid.set(
                "CIDToGIDMap",
                doc.add_object(Stream::new(dictionary! {}, map)),
            );
        }
        let cid = doc.add_object(cid);
        let font = dictionary! {
            "Type" => "Font",
            "Subtype" => "Type0",
            "BaseFont" => "ABCDEF+DejaVuSans",
            "Encoding" => "Identity-H",
            "DescendantFonts" => vec![Object::Reference(cid)],
        };
        let font_id = doc
            .get_dictionary(ids[0])
            .and_then(|p| p.get_deref(b"Resources", &doc))
            .and_then(|r| r.as_dict())
            .and_then(|r| r.get_deref(b"Font", &doc))
            .and_then(|f| f.as_dict())
            .and_then(|f| f.get(b"F1"))
            .and_then(|f| f.as_reference())
            .unwrap();
        doc.objects.insert(font_id, Object::Dictionary(font));
        save(&mut doc)
    }

    /// Glyph ids of `text` in the fixture font (spaces included).
    fn dejavu_gids(text: &str) -> Vec<u16> {
        let face = ttf_parser::Face::parse(DEJAVU_SUBSET, 0).unwrap();
        text.chars()
            .map(|c| {
                face.glyph_index(c)
                    .unwrap_or_else(|| panic!("{c:?} not in the subset"))
                    .0
            })
            .collect()
    }

    fn hex_show(codes: &[u16]) -> Vec<u8> {
        let hex: String = codes.iter().map(|c| format!("{c:04X}")).collect();
        format!("BT /F1 12 Tf 72 700 Td <{hex}> Tj ET").into_bytes()
    }

    #[test]
    fn truetype_cid_font_without_tounicode_reads_its_cmap() {
        let gids = dejavu_gids("Hello w\u{f6}rld \u{fb01} \u{e9}cole Erd\u{151}s");
        let bytes = truetype_cid_pdf(hex_show(&gids), DEJAVU_SUBSET, None);
        assert_eq!(text(&bytes), "Hello w\u{f6}rld fi \u{e9}cole Erd\u{151}s");
    }

    #[test]
    fn truetype_cid_font_with_cid_to_gid_map_stream() {
        // CIDs 1, 2, 3 … in order of the text; the map sends each to its glyph.
        let gids = dejavu_gids("Hello w\u{f6}rld");
        let mut map = vec![0u8, 0];
        for g in &gids {
            map.extend_from_slice(&g.to_be_bytes());
        }
        let cids: Vec<u16> = (1..=gids.len() as u16).collect();
        let bytes = truetype_cid_pdf(hex_show(&cids), DEJAVU_SUBSET, Some(map));
        assert_eq!(text(&bytes), "Hello w\u{f6}rld");
    }

    #[test]
    fn broken_embedded_truetype_degrades_to_no_text() {
        let gids = dejavu_gids("Hello");
        let broken: [&[u8]; 4] = [
            b"",
            b"definitely not a TrueType font",
            // Cut inside the table directory.
            &DEJAVU_SUBSET[..64],
            // A header that claims many tables, then nothing.
            b"\x00\x01\x00\x00\xff\xff\x00\x00\x00\x00\x00\x00cmap",
        ];
        for program in broken {
            let bytes = truetype_cid_pdf(hex_show(&gids), program, None);
            let err = extract(&bytes).unwrap_err();
            assert!(matches!(err, ExtractError::Unsupported(_)), "{err:?}");
        }
        // Cut anywhere else: whatever still parses, and no panic.
        for len in (0..DEJAVU_SUBSET.len()).step_by(1009) {
            let bytes = truetype_cid_pdf(hex_show(&gids), &DEJAVU_SUBSET[..len], None);
            if let Ok(out) = extract(&bytes) {
                assert_eq!(out.text, "Hello");
            }
        }
        // A CIDToGIDMap that is too short or odd-sized maps what it can.
        let gids = dejavu_gids("He");
        let map = [0, 0, 0, gids[0] as u8, 0];
        let bytes = truetype_cid_pdf(hex_show(&[1, 2]), DEJAVU_SUBSET, Some(map.to_vec()));
        assert_eq!(text(&bytes), "H");
    }

    #[test]
    fn cmap_inversion_prefers_the_lowest_code_point_and_is_bounded() {
        let by_glyph = invert_cmap(DEJAVU_SUBSET, &mut usize::MAX.clone());
        let face = ttf_parser::Face::parse(DEJAVU_SUBSET, 0).unwrap();
        let space = face.glyph_index(' ').unwrap().0;
        assert_eq!(by_glyph.get(&space), Some(&' '));
        assert_eq!(
            by_glyph.len(),
            "Hello w\u{f6}rld \u{fb01}\u{e9}cEd\u{151}s"
                .chars()
                .collect::<HashSet<_>>()
                .len()
        );
        // No budget left: nothing, and nothing spent.
        let mut left = 1000;
        assert!(invert_cmap(DEJAVU_SUBSET, &mut left).is_empty());
        assert_eq!(left, 1000);
    }
}
