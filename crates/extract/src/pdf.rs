//! PDF: text in reading order, page by page.
//!
//! `lopdf` parses the file (xref tables and streams, object streams, incremental updates,
//! decryption with the empty user password); this module interprets each page's content stream,
//! decodes strings through the fonts (ToUnicode CMaps, standard encodings, `/Differences`, the
//! built-in encoding of embedded Type 1 fonts, CID fonts, and for Identity-encoded TrueType CID
//! fonts without ToUnicode the embedded font's own `cmap`) and lays the positioned glyphs out:
//! lines by baseline, words from gaps, columns from a shared vertical gutter, paragraphs from
//! larger vertical gaps. Accents drawn as glyphs of their own over a letter (TeX's OT1 fonts) are
//! composed with it. Running headers/footers and bare page numbers are dropped.
//!
//! Every cost is bounded: decompressed bytes per stream and per page, operators per page and per
//! document, Form XObject depth, glyphs per page, CMap entries, look-ups in embedded TrueType
//! `cmap` tables and output size.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use lopdf::content::{Content, Operation};
use lopdf::{Dictionary, Document, Encoding, LoadOptions, Object, ObjectId};
use serde_json::{Map, Value};

use super::{ExtractError, Extracted, Section};

/// Largest decompressed size of any one stream (object streams, xref streams, fonts, forms).
const MAX_STREAM_BYTES: usize = 64 << 20;
/// Largest decompressed content of one page, forms included.
const MAX_PAGE_CONTENT_BYTES: usize = 32 << 20;
/// Content-stream operators interpreted per page, forms included; the rest is skipped.
const MAX_OPS_PER_PAGE: usize = 1_000_000;
/// Operators interpreted in the whole document before it is refused.
const MAX_OPS_TOTAL: usize = 30_000_000;
/// Nesting of Form XObjects (a form drawing a form …).
const MAX_FORM_DEPTH: usize = 8;
/// Depth of the `q`/`Q` graphics-state stack.
const MAX_GSTATE_DEPTH: usize = 256;
/// Glyphs kept per page; beyond it the page is truncated.
const MAX_GLYPHS_PER_PAGE: usize = 500_000;
/// Pages read; a larger document is refused.
const MAX_PAGES: usize = 50_000;
/// Mappings kept from one ToUnicode CMap or `/W` array.
const MAX_MAP_ENTRIES: usize = 200_000;
/// Extracted text size.
const MAX_TEXT_BYTES: usize = 128 << 20;
/// Code points looked up in embedded TrueType `cmap` tables per document: a sweep of the Basic
/// Multilingual Plane is ~57,000, so this is some 500 fonts, and a second or so at most.
const MAX_CMAP_PROBES: usize = 32_000_000;
/// Where `%PDF` may start (some files carry junk before the header).
const SNIFF_WINDOW: usize = 1024;

/// Whether the content is a PDF: `%PDF` within the first kilobyte.
pub fn sniff(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(SNIFF_WINDOW)];
    head.windows(4).any(|w| w == b"%PDF")
}

pub fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let options = LoadOptions {
        max_decompressed_size: Some(MAX_STREAM_BYTES),
        ..LoadOptions::default()
    };
    let doc = Document::load_mem_with_options(bytes, options)
        .map_err(|e| ExtractError::Invalid(format!("PDF could not be parsed: {e}")))?;
    if doc.trailer.get(b"Encrypt").is_ok() && doc.encryption_state.is_none() {
        return Err(ExtractError::Unsupported(
            "PDF is encrypted with a password".to_owned(),
        ));
    }
    let page_ids: Vec<ObjectId> = doc.page_iter().take(MAX_PAGES + 1).collect();
    if page_ids.is_empty() {
        return Err(ExtractError::Invalid(
            "PDF has no readable pages".to_owned(),
        ));
    }
    if page_ids.len() > MAX_PAGES {
        return Err(ExtractError::Invalid(format!(
            "PDF has more than {MAX_PAGES} pages"
        )));
    }

    let mut reader = PageReader::new(&doc);
    let mut pages = Vec::with_capacity(page_ids.len());
    let mut glyphs_seen = 0usize;
    for &page_id in &page_ids {
        let glyphs = reader.page(page_id)?;
        glyphs_seen += glyphs.glyphs.len();
        pages.push(layout_page(&glyphs));
    }
    if glyphs_seen == 0 {
        return Err(ExtractError::Unsupported(
            "PDF has no text layer (scanned or image-only pages); OCR is not supported".to_owned(),
        ));
    }
    drop_running_lines(&mut pages);
    let out = assemble(&pages)?;
    if out.text.trim().is_empty() {
        return Err(ExtractError::Unsupported(
            "PDF has no text layer that maps to Unicode (fonts without a character map)".to_owned(),
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Geometry

/// An affine matrix `[a b c d e f]` in PDF's row-vector convention.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Matrix([f64; 6]);

impl Matrix {
    const IDENTITY: Matrix = Matrix([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);

    fn translate(x: f64, y: f64) -> Matrix {
        Matrix([1.0, 0.0, 0.0, 1.0, x, y])
    }

    /// `self` applied first, then `other`.
    fn then(&self, other: &Matrix) -> Matrix {
        let [a, b, c, d, e, f] = self.0;
        let [a2, b2, c2, d2, e2, f2] = other.0;
        Matrix([
            a * a2 + b * c2,
            a * b2 + b * d2,
            c * a2 + d * c2,
            c * b2 + d * d2,
            e * a2 + f * c2 + e2,
            e * b2 + f * d2 + f2,
        ])
    }

    fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let [a, b, c, d, e, f] = self.0;
        (x * a + y * c + e, x * b + y * d + f)
    }

    fn from_operands(ops: &[Object]) -> Option<Matrix> {
        if ops.len() < 6 {
            return None;
        }
        let mut m = [0.0; 6];
        for (slot, op) in m.iter_mut().zip(ops) {
            *slot = num(op)?;
        }
        m.iter().all(|v| v.is_finite()).then_some(Matrix(m))
    }
}

fn num(o: &Object) -> Option<f64> {
    match o {
        Object::Integer(i) => Some(*i as f64),
        Object::Real(r) => Some(f64::from(*r)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Fonts

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

struct Font {
    codes: Codes,
    /// Glyph-space units to text-space units (1/1000, or a Type 3 font's matrix).
    scale: f64,
    /// Vertical size factor relative to the font size (Type 3 fonts may differ from 1).
    vscale: f64,
}

/// One decoded code: its Unicode text (if any), its width in glyph space, whether it is the
/// single-byte code 32 (which takes word spacing).
struct Code<'f> {
    text: Option<&'f str>,
    width: f64,
    is_space_code: bool,
}

impl Font {
    fn fallback() -> Font {
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
    fn each_code(&self, bytes: &[u8], mut f: impl FnMut(Code<'_>)) {
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
fn push_normalized(out: &mut String, text: &str) {
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
struct FontCache<'d> {
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
    fn new(doc: &'d Document) -> Self {
        FontCache {
            doc,
            fonts: HashMap::new(),
            glyph_names: HashMap::new(),
            base_tables: HashMap::new(),
            cmap_probes_left: MAX_CMAP_PROBES,
        }
    }

    fn get(&mut self, font: &Object) -> Rc<Font> {
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

// ---------------------------------------------------------------------------------------------
// CMaps (ToUnicode and embedded encodings)

#[derive(Default)]
struct CMap {
    codespace: Vec<(u8, u32, u32)>,
    map: HashMap<(u8, u32), Box<str>>,
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
fn parse_cmap(data: &[u8]) -> CMap {
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

// ---------------------------------------------------------------------------------------------
// Content-stream interpretation

/// A glyph positioned in upright display space (y grows upwards).
#[derive(Clone, Debug)]
struct Glyph {
    x0: f64,
    x1: f64,
    /// Baseline.
    y: f64,
    size: f64,
    /// Byte range in [`PageGlyphs::text`].
    start: u32,
    end: u32,
    /// Text direction on the display: 0 (left to right), 1, 2, 3 quarter turns.
    orient: u8,
}

#[derive(Default)]
struct PageGlyphs {
    glyphs: Vec<Glyph>,
    text: String,
}

impl PageGlyphs {
    fn text_of(&self, g: &Glyph) -> &str {
        self.text
            .get(g.start as usize..g.end as usize)
            .unwrap_or("")
    }
}

#[derive(Clone)]
struct GState {
    ctm: Matrix,
    font: Option<Rc<Font>>,
    size: f64,
    char_spacing: f64,
    word_spacing: f64,
    hscale: f64,
    leading: f64,
    rise: f64,
}

struct PageReader<'d> {
    doc: &'d Document,
    fonts: FontCache<'d>,
    ops_total: usize,
}

/// Work done on one page, to enforce the per-page limits.
struct PageWork {
    ops: usize,
    content_bytes: usize,
    truncated: bool,
}

impl<'d> PageReader<'d> {
    fn new(doc: &'d Document) -> Self {
        PageReader {
            doc,
            fonts: FontCache::new(doc),
            ops_total: 0,
        }
    }

    /// An attribute of a page, inherited through the page tree.
    fn inherited(&self, page: ObjectId, key: &[u8]) -> Option<&'d Object> {
        let mut node = self.doc.get_dictionary(page).ok()?;
        for _ in 0..64 {
            if let Ok(v) = node.get(key) {
                return self.doc.dereference(v).ok().map(|(_, o)| o);
            }
            let parent = node.get(b"Parent").ok()?.as_reference().ok()?;
            node = self.doc.get_dictionary(parent).ok()?;
        }
        None
    }

    fn page(&mut self, page_id: ObjectId) -> Result<PageGlyphs, ExtractError> {
        let rotate = self
            .inherited(page_id, b"Rotate")
            .and_then(num)
            .unwrap_or(0.0);
        let quarter = ((rotate / 90.0).round() as i64).rem_euclid(4);
        // Display space: the page as a viewer shows it after /Rotate (clockwise).
        let ctm = match quarter {
            1 => Matrix([0.0, -1.0, 1.0, 0.0, 0.0, 0.0]),
            2 => Matrix([-1.0, 0.0, 0.0, -1.0, 0.0, 0.0]),
            3 => Matrix([0.0, 1.0, -1.0, 0.0, 0.0, 0.0]),
            _ => Matrix::IDENTITY,
        };
        let resources = self
            .inherited(page_id, b"Resources")
            .and_then(|o| o.as_dict().ok());
        let content = self
            .doc
            .get_page_content_with_limit(page_id, MAX_PAGE_CONTENT_BYTES)
            .map_err(|e| {
                ExtractError::Invalid(format!(
                    "PDF page content is too large or broken (limit {MAX_PAGE_CONTENT_BYTES} bytes): {e}"
                ))
            })?;
        let mut out = PageGlyphs::default();
        let mut work = PageWork {
            ops: 0,
            content_bytes: content.len(),
            truncated: false,
        };
        let gs = GState {
            ctm,
            font: None,
            size: 0.0,
            char_spacing: 0.0,
            word_spacing: 0.0,
            hscale: 1.0,
            leading: 0.0,
            rise: 0.0,
        };
        let mut forms = Vec::new();
        self.run(&content, resources, gs, 0, &mut forms, &mut work, &mut out)?;
        if work.truncated {
            tracing::warn!(page = ?page_id, "PDF page exceeded the work limit; text truncated");
        }
        combine_accents(&mut out);
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        content: &[u8],
        resources: Option<&'d Dictionary>,
        gs: GState,
        depth: usize,
        forms: &mut Vec<ObjectId>,
        work: &mut PageWork,
        out: &mut PageGlyphs,
    ) -> Result<(), ExtractError> {
        let mut gs = gs;
        let mut stack: Vec<GState> = Vec::new();
        let mut tm = Matrix::IDENTITY;
        let mut tlm = Matrix::IDENTITY;
        for op in Content::decode_iter(content) {
            let Ok(op) = op else { break };
            work.ops += 1;
            self.ops_total += 1;
            if self.ops_total > MAX_OPS_TOTAL {
                return Err(ExtractError::Invalid(format!(
                    "PDF needs more than {MAX_OPS_TOTAL} content operators to read"
                )));
            }
            if work.ops > MAX_OPS_PER_PAGE || out.glyphs.len() >= MAX_GLYPHS_PER_PAGE {
                work.truncated = true;
                return Ok(());
            }
            let Operation { operator, operands } = op;
            let f = |i: usize| operands.get(i).and_then(num).unwrap_or(0.0);
            match operator.as_str() {
                "q" if stack.len() < MAX_GSTATE_DEPTH => stack.push(gs.clone()),
                "Q" => {
                    if let Some(prev) = stack.pop() {
                        gs = prev;
                    }
                }
                "cm" => {
                    if let Some(m) = Matrix::from_operands(&operands) {
                        gs.ctm = m.then(&gs.ctm);
                    }
                }
                "BT" => {
                    tm = Matrix::IDENTITY;
                    tlm = Matrix::IDENTITY;
                }
                "Tf" => {
                    gs.size = f(1);
                    gs.font = operands
                        .first()
                        .and_then(|o| o.as_name().ok())
                        .map(|name| self.font(resources, name));
                }
                "Tc" => gs.char_spacing = f(0),
                "Tw" => gs.word_spacing = f(0),
                "Tz" => gs.hscale = f(0) / 100.0,
                "TL" => gs.leading = f(0),
                "Ts" => gs.rise = f(0),
                "Td" => {
                    tlm = Matrix::translate(f(0), f(1)).then(&tlm);
                    tm = tlm;
                }
                "TD" => {
                    gs.leading = -f(1);
                    tlm = Matrix::translate(f(0), f(1)).then(&tlm);
                    tm = tlm;
                }
                "Tm" => {
                    if let Some(m) = Matrix::from_operands(&operands) {
                        tlm = m;
                        tm = m;
                    }
                }
                "T*" => {
                    tlm = Matrix::translate(0.0, -gs.leading).then(&tlm);
                    tm = tlm;
                }
                "Tj" | "'" | "\"" => {
                    if operator == "\"" {
                        gs.word_spacing = f(0);
                        gs.char_spacing = f(1);
                    }
                    if operator != "Tj" {
                        tlm = Matrix::translate(0.0, -gs.leading).then(&tlm);
                        tm = tlm;
                    }
                    if let Some(Ok(s)) = operands.last().map(Object::as_str) {
                        show(&gs, &mut tm, s, out);
                    }
                }
                "TJ" => {
                    if let Some(Ok(items)) = operands.first().map(Object::as_array) {
                        for item in items {
                            match item {
                                Object::String(s, _) => show(&gs, &mut tm, s, out),
                                o => {
                                    let adj = num(o).unwrap_or(0.0);
                                    let tx = -adj / 1000.0 * gs.size * gs.hscale;
                                    tm = Matrix::translate(tx, 0.0).then(&tm);
                                }
                            }
                        }
                    }
                }
                "Do" => {
                    if let Some(name) = operands.first().and_then(|o| o.as_name().ok()) {
                        self.form(name, resources, &gs, depth, forms, work, out)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn font(&mut self, resources: Option<&'d Dictionary>, name: &[u8]) -> Rc<Font> {
        let font = resources
            .and_then(|r| r.get(b"Font").ok())
            .and_then(|o| self.doc.dereference(o).ok())
            .and_then(|(_, o)| o.as_dict().ok())
            .and_then(|d| d.get(name).ok());
        match font {
            Some(f) => self.fonts.get(f),
            None => Rc::new(Font::fallback()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn form(
        &mut self,
        name: &[u8],
        resources: Option<&'d Dictionary>,
        gs: &GState,
        depth: usize,
        forms: &mut Vec<ObjectId>,
        work: &mut PageWork,
        out: &mut PageGlyphs,
    ) -> Result<(), ExtractError> {
        if depth >= MAX_FORM_DEPTH {
            return Ok(());
        }
        let doc = self.doc;
        let Some(entry) = resources
            .and_then(|r| r.get(b"XObject").ok())
            .and_then(|o| doc.dereference(o).ok())
            .and_then(|(_, o)| o.as_dict().ok())
            .and_then(|d| d.get(name).ok())
        else {
            return Ok(());
        };
        let Ok((id, obj)) = doc.dereference(entry) else {
            return Ok(());
        };
        let Ok(stream) = obj.as_stream() else {
            return Ok(());
        };
        if stream.dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Form") {
            return Ok(());
        }
        if let Some(id) = id {
            if forms.contains(&id) {
                return Ok(());
            }
            forms.push(id);
        }
        let budget = MAX_PAGE_CONTENT_BYTES.saturating_sub(work.content_bytes);
        let content = match stream.decompressed_content_with_limit(budget) {
            Ok(c) => c,
            Err(_) if stream.dict.get(b"Filter").is_err() && stream.content.len() <= budget => {
                stream.content.clone()
            }
            Err(e) => {
                return Err(ExtractError::Invalid(format!(
                    "PDF form content is too large or broken (limit {MAX_PAGE_CONTENT_BYTES} bytes per page): {e}"
                )))
            }
        };
        work.content_bytes += content.len();
        let mut inner = gs.clone();
        if let Some(m) = stream
            .dict
            .get(b"Matrix")
            .ok()
            .and_then(|o| o.as_array().ok())
            .and_then(|a| Matrix::from_operands(a))
        {
            inner.ctm = m.then(&gs.ctm);
        }
        let form_resources = stream
            .dict
            .get(b"Resources")
            .ok()
            .and_then(|o| doc.dereference(o).ok())
            .and_then(|(_, o)| o.as_dict().ok())
            .or(resources);
        let result = self.run(&content, form_resources, inner, depth + 1, forms, work, out);
        if id.is_some() {
            forms.pop();
        }
        result
    }
}

/// Emits the glyphs of one shown string and advances the text matrix.
fn show(gs: &GState, tm: &mut Matrix, bytes: &[u8], out: &mut PageGlyphs) {
    let font = match &gs.font {
        Some(f) => f.clone(),
        None => Rc::new(Font::fallback()),
    };
    let size = gs.size;
    let params = Matrix([size * gs.hscale, 0.0, 0.0, size * font.vscale, 0.0, gs.rise]);
    font.each_code(bytes, |code| {
        if out.glyphs.len() >= MAX_GLYPHS_PER_PAGE {
            return;
        }
        let w0 = code.width * font.scale;
        let trm = params.then(tm).then(&gs.ctm);
        let advance = (w0 * size
            + gs.char_spacing
            + if code.is_space_code {
                gs.word_spacing
            } else {
                0.0
            })
            * gs.hscale;
        if let Some(text) = code.text {
            let (px, py) = trm.apply(0.0, 0.0);
            let (qx, qy) = trm.apply(w0, 0.0);
            let [a, b, c, d, _, _] = trm.0;
            let orient = if a.abs() >= b.abs() {
                if a >= 0.0 {
                    0
                } else {
                    2
                }
            } else if b > 0.0 {
                1
            } else {
                3
            };
            let upright = |x: f64, y: f64| match orient {
                1 => (y, -x),
                2 => (-x, -y),
                3 => (-y, x),
                _ => (x, y),
            };
            let (x0, y) = upright(px, py);
            let (x1, _) = upright(qx, qy);
            let gsize = c.hypot(d);
            if px.is_finite() && py.is_finite() && gsize.is_finite() && gsize > 0.0 {
                let start = out.text.len();
                push_normalized(&mut out.text, text);
                let end = out.text.len();
                if end > start && start < u32::MAX as usize / 2 {
                    out.glyphs.push(Glyph {
                        x0,
                        x1: x1.max(x0),
                        y,
                        size: gsize,
                        start: start as u32,
                        end: end as u32,
                        orient,
                    });
                }
            }
        }
        *tm = Matrix::translate(advance, 0.0).then(tm);
    });
}

// ---------------------------------------------------------------------------------------------
// Separate accents

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
fn combine_accents(page: &mut PageGlyphs) {
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

// ---------------------------------------------------------------------------------------------
// Layout

/// One line of text on a page, in reading order.
#[derive(Clone, Debug)]
struct Line {
    text: String,
    /// Baseline in display space, for header/footer detection.
    y: f64,
    /// Starts a paragraph (a larger gap, a new column or block, a size change).
    para: bool,
    /// Among the two topmost or bottommost lines of the page.
    edge: bool,
    /// Font size of the line (median of its glyphs), for telling headings from body text.
    size: f64,
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// Lays a page's glyphs out as lines in reading order, one orientation after another
/// (the most common first).
fn layout_page(page: &PageGlyphs) -> Vec<Line> {
    let mut counts = [0usize; 4];
    for g in &page.glyphs {
        counts[usize::from(g.orient)] += 1;
    }
    let mut orients: Vec<u8> = (0..4u8).filter(|&o| counts[usize::from(o)] > 0).collect();
    orients.sort_by_key(|&o| std::cmp::Reverse(counts[usize::from(o)]));
    let mut lines = Vec::new();
    for o in orients {
        let glyphs: Vec<&Glyph> = page.glyphs.iter().filter(|g| g.orient == o).collect();
        let mut part = layout_glyphs(page, &glyphs);
        if let Some(first) = part.first_mut() {
            first.para = true;
        }
        lines.extend(part);
    }
    // Mark the page's edge lines: candidates for running headers, footers and page numbers.
    let mut by_y: Vec<usize> = (0..lines.len()).collect();
    by_y.sort_by(|&a, &b| lines[b].y.total_cmp(&lines[a].y));
    for &i in by_y.iter().take(2).chain(by_y.iter().rev().take(2)) {
        lines[i].edge = true;
    }
    lines
}

/// A row: glyphs sharing a baseline, across the whole page width.
struct Row<'g> {
    y: f64,
    size: f64,
    glyphs: Vec<&'g Glyph>,
}

fn layout_glyphs(page: &PageGlyphs, glyphs: &[&Glyph]) -> Vec<Line> {
    if glyphs.is_empty() {
        return Vec::new();
    }
    let mut sorted: Vec<&Glyph> = glyphs.to_vec();
    sorted.sort_by(|a, b| b.y.total_cmp(&a.y));
    // Rows by baseline, compared with the row's first baseline so rows do not drift.
    let mut rows: Vec<Row<'_>> = Vec::new();
    for g in sorted {
        match rows.last_mut() {
            Some(r) if (r.y - g.y).abs() < 0.5 * r.size.min(g.size).max(1.0) => r.glyphs.push(g),
            _ => rows.push(Row {
                y: g.y,
                size: g.size,
                glyphs: vec![g],
            }),
        }
    }
    for r in &mut rows {
        r.glyphs.sort_by(|a, b| a.x0.total_cmp(&b.x0));
        let mut sizes: Vec<f64> = r.glyphs.iter().map(|g| g.size).collect();
        r.size = median(&mut sizes).unwrap_or(r.size);
    }
    let gutters = find_gutters(page, &rows);

    // Split rows into columns; a row crossing a gutter spans all columns.
    let ncols = gutters.len() + 1;
    let mut lines = Vec::new();
    let mut block: Vec<Vec<Segment>> = vec![Vec::new(); ncols];
    for r in &rows {
        let crosses = r.glyphs.iter().any(|g| {
            gutters
                .iter()
                .any(|&(lo, hi)| g.x0 < hi && g.x1 > lo && !page.text_of(g).trim().is_empty())
        });
        if crosses {
            flush_block(page, &mut block, &mut lines);
            let seg = Segment {
                y: r.y,
                size: r.size,
                glyphs: r.glyphs.clone(),
            };
            emit_column(page, &[seg], &mut lines);
            continue;
        }
        let mut parts: Vec<Vec<&Glyph>> = vec![Vec::new(); ncols];
        for &g in &r.glyphs {
            let mid = (g.x0 + g.x1) / 2.0;
            let col = gutters.iter().filter(|&&(lo, _)| mid >= lo).count();
            parts[col].push(g);
        }
        for (col, glyphs) in parts.into_iter().enumerate() {
            if !glyphs.is_empty() {
                block[col].push(Segment {
                    y: r.y,
                    size: r.size,
                    glyphs,
                });
            }
        }
    }
    flush_block(page, &mut block, &mut lines);
    lines
}

#[derive(Clone)]
struct Segment<'g> {
    y: f64,
    size: f64,
    glyphs: Vec<&'g Glyph>,
}

fn flush_block<'g>(page: &PageGlyphs, block: &mut [Vec<Segment<'g>>], lines: &mut Vec<Line>) {
    for col in block.iter_mut() {
        if !col.is_empty() {
            emit_column(page, col, lines);
            col.clear();
        }
    }
}

/// Lines of one column (or one spanning row), with paragraph breaks from vertical gaps.
fn emit_column(page: &PageGlyphs, segs: &[Segment<'_>], lines: &mut Vec<Line>) {
    let mut gaps: Vec<f64> = segs
        .windows(2)
        .map(|w| w[0].y - w[1].y)
        .filter(|&g| g > 0.0 && g < 3.0 * segs[0].size.max(1.0))
        .collect();
    let typical = median(&mut gaps);
    let mut first = true;
    let mut prev: Option<&Segment<'_>> = None;
    for seg in segs {
        let text = join_glyphs(page, &seg.glyphs);
        if text.trim().is_empty() {
            continue;
        }
        let para = match prev {
            None => first,
            Some(p) => {
                let gap = p.y - seg.y;
                let limit = typical.map_or(1.6 * seg.size, |t| (1.35 * t).max(t + 0.3 * seg.size));
                let size_change = (p.size - seg.size).abs() > 0.2 * p.size.max(seg.size);
                gap > limit || gap < -0.5 * seg.size || size_change
            }
        };
        first = false;
        lines.push(Line {
            text: text.trim().to_owned(),
            y: seg.y,
            para,
            edge: false,
            size: seg.size,
        });
        prev = Some(seg);
    }
}

/// Joins the glyphs of a line (sorted by x), inserting spaces at gaps.
fn join_glyphs(page: &PageGlyphs, glyphs: &[&Glyph]) -> String {
    let mut out = String::new();
    let mut prev: Option<&Glyph> = None;
    let mut pending_space = false;
    for &g in glyphs {
        let t = page.text_of(g);
        if t.trim().is_empty() {
            pending_space = true;
            continue;
        }
        if let Some(p) = prev {
            // Same glyph drawn twice at (almost) the same place: fake bold or shadow.
            if page.text_of(p) == t
                && (g.x0 - p.x0).abs() < 0.3 * (p.x1 - p.x0).max(0.1 * g.size)
                && (g.y - p.y).abs() < 0.2 * g.size
            {
                continue;
            }
            let gap = g.x0 - p.x1;
            let size = p.size.min(g.size);
            if pending_space || gap > 0.15 * size {
                out.push(' ');
            }
        }
        pending_space = false;
        out.push_str(t);
        prev = Some(g);
    }
    out
}

/// Finds vertical gutters: x bands that (almost) no row crosses, with text on both sides.
fn find_gutters(page: &PageGlyphs, rows: &[Row<'_>]) -> Vec<(f64, f64)> {
    if rows.len() < 6 {
        return Vec::new();
    }
    let all = rows.iter().flat_map(|r| r.glyphs.iter());
    let (mut xmin, mut xmax) = (f64::INFINITY, f64::NEG_INFINITY);
    for g in all {
        xmin = xmin.min(g.x0);
        xmax = xmax.max(g.x1);
    }
    let width = xmax - xmin;
    if !(width.is_finite() && width > 1.0) {
        return Vec::new();
    }
    let bins = (width.ceil() as usize).min(4000);
    let bin_w = width / bins as f64;
    let mut crossing = vec![0usize; bins];
    let mut row_left = Vec::with_capacity(rows.len());
    let mut row_right = Vec::with_capacity(rows.len());
    let mut mark = vec![usize::MAX; bins];
    for (ri, r) in rows.iter().enumerate() {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for g in &r.glyphs {
            if page.text_of(g).trim().is_empty() {
                continue;
            }
            lo = lo.min(g.x0);
            hi = hi.max(g.x1);
            let b0 = (((g.x0 - xmin) / bin_w).floor().max(0.0) as usize).min(bins - 1);
            let b1 = (((g.x1 - xmin) / bin_w).ceil().max(0.0) as usize).min(bins);
            for b in b0..b1 {
                if mark[b] != ri {
                    mark[b] = ri;
                    crossing[b] += 1;
                }
            }
        }
        row_left.push(lo);
        row_right.push(hi);
    }
    let mut sizes: Vec<f64> = rows.iter().map(|r| r.size).collect();
    let size = median(&mut sizes).unwrap_or(10.0);
    let min_width = (1.0 * size).max(6.0);
    // A few rows may cross a gutter: a title or a figure caption spanning the columns.
    let tolerance = (rows.len() / 10).max(1);
    let mut gutters = Vec::new();
    let mut b = 0;
    while b < bins {
        if crossing[b] > tolerance {
            b += 1;
            continue;
        }
        let start = b;
        while b < bins && crossing[b] <= tolerance {
            b += 1;
        }
        let lo = xmin + start as f64 * bin_w;
        let hi = xmin + b as f64 * bin_w;
        if hi - lo < min_width || start == 0 || b >= bins {
            continue;
        }
        let left = row_left.iter().filter(|&&x| x < lo).count();
        let right = row_right.iter().filter(|&&x| x > hi).count();
        let both = rows.len() * 3 / 10;
        if left >= both && right >= both {
            gutters.push((lo, hi));
        }
    }
    gutters
}

// ---------------------------------------------------------------------------------------------
// Running headers, footers and page numbers

/// Lines repeated at the same place on many pages, with digits blurred (so "Page 3" and
/// "Page 4" match).
fn running_key(line: &Line) -> (String, i64) {
    // Front matter numbers its pages in roman numerals: "Manual xviii" matches "Manual iv".
    let words: Vec<&str> = line.text.split_whitespace().collect();
    let blurred: Vec<&str> = words
        .iter()
        .map(|w| {
            if words.len() > 1 && is_roman(w) {
                "#"
            } else {
                w
            }
        })
        .collect();
    let text: String = blurred
        .concat()
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                '#'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .filter(|c| !c.is_whitespace())
        .collect();
    (text, (line.y / 4.0).round() as i64)
}

fn is_page_number(text: &str) -> bool {
    let t = text
        .trim()
        .trim_matches(|c: char| matches!(c, '-' | '–' | '—' | '[' | ']' | '(' | ')' | '|' | ' '));
    let t = t
        .strip_prefix("Page ")
        .or_else(|| t.strip_prefix("page "))
        .unwrap_or(t);
    let t = t
        .split(" of ")
        .next()
        .unwrap_or(t)
        .split('/')
        .next()
        .unwrap_or(t)
        .trim();
    (!t.is_empty() && t.len() <= 6 && t.chars().all(|c| c.is_ascii_digit())) || is_roman(t)
}

fn is_roman(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 8
        && (t.chars().all(|c| matches!(c, 'i' | 'v' | 'x' | 'l' | 'c'))
            || t.chars().all(|c| matches!(c, 'I' | 'V' | 'X' | 'L' | 'C')))
}

/// Dot leaders (`Installation . . . . . . 41`, `Index.........7`) carry no words and drown a
/// table of contents' text in punctuation for the embedder: a run of four or more dots
/// (spaced or not) becomes one ` … `.
fn collapse_leaders(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains("....") && !line.contains(". . . .") && !line.contains("\u{2026}\u{2026}") {
        return std::borrow::Cow::Borrowed(line);
    }
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if matches!(chars[i], '.' | '\u{2026}') {
            let mut j = i;
            let mut dots = 0;
            let mut end = i;
            while j < chars.len() && matches!(chars[j], '.' | '\u{2026}' | ' ' | '\u{a0}') {
                if chars[j] != ' ' && chars[j] != '\u{a0}' {
                    dots += if chars[j] == '.' { 1 } else { 3 };
                    end = j + 1;
                }
                j += 1;
            }
            if dots >= 4 {
                let trimmed = out.trim_end().len();
                out.truncate(trimmed);
                out.push_str(if out.is_empty() {
                    "\u{2026} "
                } else {
                    " \u{2026} "
                });
                i = end;
                while i < chars.len() && matches!(chars[i], ' ' | '\u{a0}') {
                    i += 1;
                }
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(out.trim_end().to_owned())
}

fn drop_running_lines(pages: &mut [Vec<Line>]) {
    let min_pages = if pages.len() >= 6 { 3 } else { 2 };
    let mut seen: HashMap<(String, i64), HashSet<usize>> = HashMap::new();
    if pages.len() >= 2 {
        for (p, lines) in pages.iter().enumerate() {
            for l in lines.iter().filter(|l| l.edge) {
                let (text, y) = running_key(l);
                // Tolerate a baseline that moves a little between pages.
                for dy in -1..=1 {
                    seen.entry((text.clone(), y + dy)).or_default().insert(p);
                }
            }
        }
    }
    for lines in pages.iter_mut() {
        lines.retain(|l| {
            if !l.edge {
                return true;
            }
            if is_page_number(&l.text) {
                return false;
            }
            let key = running_key(l);
            seen.get(&key).is_none_or(|p| p.len() < min_pages)
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Output

fn ends_with_hyphen(text: &str) -> bool {
    let mut chars = text.chars().rev();
    matches!(chars.next(), Some('-' | '\u{AD}' | '\u{2010}'))
        && chars.next().is_some_and(char::is_alphabetic)
}

/// Headings: paragraph-starting short lines set clearly larger than the body text (the size
/// most characters have). Each distinct heading size, largest first, is a level (at most 4).
struct Headings {
    /// Heading sizes (rounded to half points), largest first.
    sizes: Vec<i64>,
}

/// Half points, so 10.02 and 9.98 count as one size.
fn size_key(size: f64) -> i64 {
    (size * 2.0).round() as i64
}

impl Headings {
    /// How much larger than the body a heading must be.
    const RATIO: f64 = 1.15;
    /// Longer lines are text set large, not headings.
    const MAX_CHARS: usize = 120;

    fn find(pages: &[Vec<Line>]) -> Self {
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
    fn level(&self, line: &Line) -> Option<usize> {
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

fn assemble(pages: &[Vec<Line>]) -> Result<Extracted, ExtractError> {
    let headings = Headings::find(pages);
    let mut text = String::new();
    let mut sections = Vec::new();
    let mut current: Option<String> = None;
    let location = |page: usize, heading: &Option<String>| {
        let mut location = Map::new();
        location.insert("page".to_owned(), Value::from(page));
        if let Some(h) = heading {
            location.insert("section".to_owned(), Value::String(h.clone()));
        }
        location
    };
    for (i, lines) in pages.iter().enumerate() {
        if lines.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        sections.push(Section {
            start: text.len(),
            location: location(i + 1, &current),
        });
        // The size of the heading being written, so a wrapped heading's next line (same
        // size, no paragraph break) joins it.
        let mut open: Option<i64> = None;
        for (k, line) in lines.iter().enumerate() {
            let level = headings.level(line);
            let continues = !line.para
                && open == Some(size_key(line.size))
                && line.text.chars().count() <= Headings::MAX_CHARS;
            if continues {
                text.push(' ');
                text.push_str(&collapse_leaders(&line.text));
                if let Some(h) = current.as_mut() {
                    h.push(' ');
                    h.push_str(&line.text);
                }
                if let Some(s) = sections.last_mut() {
                    s.location = location(i + 1, &current);
                }
                continue;
            }
            if k > 0 {
                let starts_lower = line.text.chars().next().is_some_and(char::is_lowercase);
                if !line.para && ends_with_hyphen(&text) && starts_lower {
                    text.pop();
                } else if line.para {
                    text.push_str("\n\n");
                } else {
                    text.push('\n');
                }
            }
            open = None;
            if let Some(level) = level {
                current = Some(line.text.clone());
                // The page's own section already starts here: it takes the heading.
                if sections.last().is_some_and(|s| s.start == text.len()) {
                    sections.pop();
                }
                sections.push(Section {
                    start: text.len(),
                    location: location(i + 1, &current),
                });
                text.push_str(&"#".repeat(level));
                text.push(' ');
                open = Some(size_key(line.size));
            }
            text.push_str(&collapse_leaders(&line.text));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(ExtractError::Invalid(format!(
                "PDF text is larger than {MAX_TEXT_BYTES} bytes"
            )));
        }
    }
    // With headings marked the text is Markdown, so chunking can follow them.
    let format = if headings.sizes.is_empty() {
        "text"
    } else {
        "markdown"
    };
    Ok(Extracted {
        text,
        format,
        sections,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use lopdf::{dictionary, Stream};
    use serde_json::json;

    /// A document whose pages show the given content streams with `/F1` = `font`.
    fn document(pages: &[Vec<u8>], font: Dictionary) -> (Document, Vec<ObjectId>) {
        let mut doc = Document::with_version("1.5");
        doc.trailer.set(
            "ID",
            Object::Array(vec![
                Object::string_literal(b"0123456789abcdef"),
                Object::string_literal(b"fedcba9876543210"),
            ]),
        );
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(font);
        let mut ids = Vec::new();
        for content in pages {
            let contents = doc.add_object(Stream::new(dictionary! {}, content.clone()));
            ids.push(doc.add_object(dictionary! {
                "Type" => "Page",
                "Parent" => pages_id,
                "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
                "Resources" => dictionary! { "Font" => dictionary! { "F1" => font_id } },
                "Contents" => contents,
            }));
        }
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages",
                "Kids" => ids.iter().map(|&id| Object::Reference(id)).collect::<Vec<_>>(),
                "Count" => ids.len() as i64,
            }),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog);
        (doc, ids)
    }

    fn courier() -> Dictionary {
        dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => "Courier",
            "Encoding" => "WinAnsiEncoding",
        }
    }

    fn save(doc: &mut Document) -> Vec<u8> {
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    /// A PDF of Courier pages; each page's lines are `(x, y, text)`.
    fn pdf(pages: &[Vec<(f64, f64, &str)>]) -> Vec<u8> {
        let contents: Vec<Vec<u8>> = pages.iter().map(|lines| page_content(lines)).collect();
        save(&mut document(&contents, courier()).0)
    }

    fn page_content(lines: &[(f64, f64, &str)]) -> Vec<u8> {
        let mut c = String::from("BT /F1 10 Tf\n");
        for (x, y, t) in lines {
            c.push_str(&format!("1 0 0 1 {x} {y} Tm ({t}) Tj\n"));
        }
        c.push_str("ET\n");
        c.into_bytes()
    }

    fn text(bytes: &[u8]) -> String {
        extract(bytes).unwrap().text
    }

    /// Paragraph-ish body text: `n` lines starting at `y`, 12 points apart.
    fn body(x: f64, y: f64, words: &[&'static str]) -> Vec<(f64, f64, &'static str)> {
        words
            .iter()
            .enumerate()
            .map(|(i, w)| (x, y - 12.0 * i as f64, *w))
            .collect()
    }

    #[test]
    fn plain_page_text() {
        let bytes = pdf(&[vec![(72.0, 700.0, "Hello world, this is a PDF.")]]);
        assert!(sniff(&bytes));
        let out = extract(&bytes).unwrap();
        assert_eq!(out.text, "Hello world, this is a PDF.");
        assert_eq!(out.sections.len(), 1);
        assert_eq!(out.sections[0].start, 0);
        assert_eq!(out.sections[0].location.get("page"), Some(&Value::from(1)));
        // Routed by content, whatever the name.
        assert_eq!(
            super::super::extract(&bytes, "notes.txt").unwrap().text,
            out.text
        );
    }

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

    #[test]
    fn two_pages_two_sections() {
        let bytes = pdf(&[
            vec![(72.0, 700.0, "First page text.")],
            vec![(72.0, 700.0, "Second page text.")],
        ]);
        let out = extract(&bytes).unwrap();
        assert_eq!(out.text, "First page text.\n\nSecond page text.");
        let starts: Vec<(usize, &Value)> = out
            .sections
            .iter()
            .map(|s| (s.start, s.location.get("page").unwrap()))
            .collect();
        assert_eq!(starts, vec![(0, &Value::from(1)), (18, &Value::from(2))]);
        assert!(out.text[18..].starts_with("Second"));
    }

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

    /// A subset of DejaVu Sans (see tests/fixtures/pdf/README.md).
    const DEJAVU_SUBSET: &[u8] = include_bytes!("../tests/fixtures/pdf/dejavu-subset.ttf");

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

    #[test]
    fn hyphenated_line_ends_are_joined() {
        let bytes = pdf(&[vec![
            (72.0, 700.0, "a good exam-"),
            (72.0, 688.0, "ple of well-"),
            (72.0, 676.0, "Known words"),
        ]]);
        assert_eq!(text(&bytes), "a good example of well-\nKnown words");
    }

    #[test]
    fn paragraphs_from_vertical_gaps() {
        let bytes = pdf(&[vec![
            (72.0, 700.0, "First paragraph line one"),
            (72.0, 688.0, "and line two."),
            (72.0, 676.0, "still the first."),
            (72.0, 640.0, "Second paragraph."),
        ]]);
        assert_eq!(
            text(&bytes),
            "First paragraph line one\nand line two.\nstill the first.\n\nSecond paragraph."
        );
    }

    #[test]
    fn spaces_from_gaps_and_kerning() {
        let content = b"BT /F1 10 Tf 72 700 Td [(Hello)-600(world)] TJ [(ke)20(rn)] TJ \
            1 0 0 1 300 700 Tm (apart) Tj ET"
            .to_vec();
        let bytes = save(&mut document(&[content], courier()).0);
        assert_eq!(text(&bytes), "Hello worldkern apart");
    }

    #[test]
    fn two_columns_read_column_by_column() {
        let left = [
            "left one",
            "left two",
            "left three",
            "left four",
            "left five",
            "left six",
            "left seven",
            "left eight",
        ];
        let right = [
            "right one",
            "right two",
            "right three",
            "right four",
            "right five",
            "right six",
            "right seven",
            "right eight",
        ];
        let mut lines = vec![(
            72.0,
            740.0,
            "A Title Spanning Both Columns Of The Page Here",
        )];
        lines.extend(body(72.0, 700.0, &left));
        lines.extend(body(320.0, 700.0, &right));
        let t = text(&pdf(&[lines]));
        let expected_left = left.join("\n");
        let expected_right = right.join("\n");
        assert_eq!(
            t,
            format!("A Title Spanning Both Columns Of The Page Here\n\n{expected_left}\n\n{expected_right}")
        );
    }

    #[test]
    fn dot_leaders_collapse() {
        assert_eq!(
            collapse_leaders("2.1 Debian tools . . . . . . . . . . 41"),
            "2.1 Debian tools \u{2026} 41"
        );
        assert_eq!(collapse_leaders("Index..........7"), "Index \u{2026} 7");
        assert_eq!(
            collapse_leaders("Wait... what? e.g. x.y.z"),
            "Wait... what? e.g. x.y.z"
        );
        assert_eq!(collapse_leaders("Tail . . . . ."), "Tail \u{2026}");
        assert_eq!(collapse_leaders("....... 3"), "\u{2026} 3");
    }

    #[test]
    fn roman_page_numbers_in_running_lines_match() {
        let line = |text: &str| Line {
            text: text.to_owned(),
            y: 700.0,
            para: false,
            edge: true,
            size: 10.0,
        };
        assert_eq!(
            running_key(&line("Debian Reference xviii")),
            running_key(&line("Debian Reference iv"))
        );
        assert_ne!(running_key(&line("Part I")), running_key(&line("Part Two")));
    }

    #[test]
    fn headers_footers_and_page_numbers_are_dropped() {
        let pages: Vec<Vec<(f64, f64, &str)>> = ["4", "5", "6", "7"]
            .iter()
            .zip([
                "Alpha text here.",
                "Beta text here.",
                "Gamma text here.",
                "Delta text here.",
            ])
            .zip(["More alpha.", "More beta.", "More gamma.", "More delta."])
            .map(|((n, t), more)| {
                vec![
                    (72.0, 760.0, "ACME Widget Manual"),
                    (72.0, 700.0, t),
                    (72.0, 688.0, more),
                    (300.0, 40.0, *n),
                ]
            })
            .collect();
        let t = text(&pdf(&pages));
        assert!(!t.contains("ACME"), "{t}");
        assert!(!t.chars().any(|c| c.is_ascii_digit()), "{t}");
        assert!(
            t.starts_with("Alpha text here.\nMore alpha.\n\nBeta"),
            "{t}"
        );
    }

    #[test]
    fn rotated_page_reads_upright() {
        // Landscape content drawn rotated on a portrait page, shown upright by /Rotate 90.
        let content = b"q 0 1 -1 0 612 0 cm BT /F1 10 Tf 1 0 0 1 72 500 Tm (first line) Tj \
            1 0 0 1 72 488 Tm (second line) Tj ET Q"
            .to_vec();
        let (mut doc, ids) = document(&[content], courier());
        doc.get_dictionary_mut(ids[0]).unwrap().set("Rotate", 90);
        assert_eq!(text(&save(&mut doc)), "first line\nsecond line");
        // The same page without /Rotate still reads in order (text direction is followed).
        let content = b"q 0 1 -1 0 612 0 cm BT /F1 10 Tf 1 0 0 1 72 500 Tm (first line) Tj \
            1 0 0 1 72 488 Tm (second line) Tj ET Q"
            .to_vec();
        assert_eq!(
            text(&save(&mut document(&[content], courier()).0)),
            "first line\nsecond line"
        );
    }

    #[test]
    fn form_xobjects_are_read_and_self_reference_is_bounded() {
        let (mut doc, ids) = document(
            &[b"BT /F1 10 Tf 72 700 Td (page) Tj ET q 1 0 0 1 0 -100 cm /X1 Do Q".to_vec()],
            courier(),
        );
        let font_id = doc
            .get_dictionary(ids[0])
            .unwrap()
            .get(b"Resources")
            .unwrap()
            .as_dict()
            .unwrap()
            .get(b"Font")
            .unwrap()
            .as_dict()
            .unwrap()
            .get(b"F1")
            .unwrap()
            .as_reference()
            .unwrap();
        let form_id = doc.new_object_id();
        let form = Stream::new(
            dictionary! {
                "Type" => "XObject",
                "Subtype" => "Form",
                "BBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
                "Resources" => dictionary! {
                    "Font" => dictionary! { "F1" => font_id },
                    "XObject" => dictionary! { "X1" => form_id },
                },
            },
            b"BT /F1 10 Tf 72 700 Td (form) Tj ET q 1 0 0 1 0 -20 cm /X1 Do Q".to_vec(),
        );
        doc.objects.insert(form_id, Object::Stream(form));
        let page = doc.get_dictionary_mut(ids[0]).unwrap();
        let res = page.get_mut(b"Resources").unwrap().as_dict_mut().unwrap();
        res.set("XObject", dictionary! { "X1" => form_id });
        assert_eq!(text(&save(&mut doc)), "page\n\nform");
    }

    #[test]
    fn object_and_xref_streams() {
        let (mut doc, _) = document(
            &[page_content(&[(72.0, 700.0, "compressed objects")])],
            courier(),
        );
        let mut out = Vec::new();
        doc.save_modern(&mut out).unwrap();
        assert!(
            out.windows(7).any(|w| w == b"/ObjStm"),
            "object streams used"
        );
        assert!(out.windows(5).any(|w| w == b"/XRef"), "xref stream used");
        assert_eq!(text(&out), "compressed objects");
    }

    #[test]
    fn incremental_update_wins() {
        let mut bytes = pdf(&[vec![(72.0, 700.0, "old text")]]);
        let doc = Document::load_mem(&bytes).unwrap();
        let page = doc.page_iter().next().unwrap();
        let contents = doc.get_page_contents(page)[0];
        let prev_xref = doc.xref_start;
        let content = page_content(&[(72.0, 700.0, "new text")]);
        let offset = bytes.len() + 1;
        bytes.extend_from_slice(
            format!(
                "\n{} 0 obj\n<< /Length {} >>\nstream\n",
                contents.0,
                content.len()
            )
            .as_bytes(),
        );
        bytes.extend_from_slice(&content);
        bytes.extend_from_slice(b"\nendstream\nendobj\n");
        let xref = bytes.len();
        let root = doc.trailer.get(b"Root").unwrap().as_reference().unwrap();
        bytes.extend_from_slice(
            format!(
                "xref\n{} 1\n{offset:010} 00000 n \ntrailer\n<< /Size {} /Root {} 0 R /Prev {prev_xref} >>\nstartxref\n{xref}\n%%EOF\n",
                contents.0,
                doc.max_id + 1,
                root.0
            )
            .as_bytes(),
        );
        assert_eq!(text(&bytes), "new text");
    }

    #[test]
    fn encrypted_with_empty_user_password() {
        let (mut doc, _) = document(&[page_content(&[(72.0, 700.0, "secret text")])], courier());
        let state = lopdf::EncryptionState::try_from(lopdf::EncryptionVersion::V2 {
            document: &doc,
            owner_password: "owner",
            user_password: "",
            key_length: 128,
            permissions: lopdf::Permissions::all(),
        })
        .unwrap();
        doc.encrypt(&state).unwrap();
        let bytes = save(&mut doc);
        assert!(
            !bytes.windows(6).any(|w| w == b"secret"),
            "content is encrypted"
        );
        assert_eq!(text(&bytes), "secret text");

        let (mut doc, _) = document(&[page_content(&[(72.0, 700.0, "secret text")])], courier());
        let state = lopdf::EncryptionState::try_from(lopdf::EncryptionVersion::V2 {
            document: &doc,
            owner_password: "owner",
            user_password: "user",
            key_length: 128,
            permissions: lopdf::Permissions::all(),
        })
        .unwrap();
        doc.encrypt(&state).unwrap();
        let err = extract(&save(&mut doc)).unwrap_err();
        assert!(
            matches!(err, ExtractError::Unsupported(ref m) if m.contains("password")),
            "{err:?}"
        );
    }

    #[test]
    fn image_only_is_unsupported() {
        let (mut doc, ids) = document(&[b"q 100 0 0 100 0 0 cm /Im1 Do Q".to_vec()], courier());
        let image = doc.add_object(Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image", "Width" => 1, "Height" => 1,
                "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8,
            },
            vec![0],
        ));
        let page = doc.get_dictionary_mut(ids[0]).unwrap();
        let res = page.get_mut(b"Resources").unwrap().as_dict_mut().unwrap();
        res.set("XObject", dictionary! { "Im1" => image });
        let err = extract(&save(&mut doc)).unwrap_err();
        assert!(
            matches!(err, ExtractError::Unsupported(ref m) if m.contains("has no text layer")),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_is_invalid() {
        for bytes in [
            b"%PDF-1.7\nthis is not really a pdf at all\n".to_vec(),
            b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF".to_vec(),
            {
                let mut b = pdf(&[vec![(72.0, 700.0, "cut short")]]);
                b.truncate(b.len() / 3);
                b
            },
        ] {
            let err = extract(&bytes).unwrap_err();
            assert!(matches!(err, ExtractError::Invalid(_)), "{err:?}");
        }
    }

    #[test]
    fn page_tree_loop_is_bounded() {
        let bytes = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n\
            2 0 obj << /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >> endobj\n\
            3 0 obj << /Type /Pages /Kids [2 0 R] /Parent 3 0 R /Count 1 >> endobj\n\
            trailer << /Root 1 0 R /Size 4 >>\n%%EOF"
            .to_vec();
        let started = std::time::Instant::now();
        let err = extract(&bytes).unwrap_err();
        assert!(matches!(err, ExtractError::Invalid(_)), "{err:?}");
        assert!(started.elapsed().as_secs() < 5);
    }

    /// A PDF written by hand from numbered object bodies (1 = catalog), with a correct xref.
    fn raw_pdf(objects: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }

    fn raw_page(content: &[u8], extra: &[u8]) -> Vec<Vec<u8>> {
        let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        stream.extend_from_slice(content);
        stream.extend_from_slice(b"\nendstream");
        vec![
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            [
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
                  /Resources << /Font << /F1 5 0 R >> >> "
                    .as_slice(),
                extra,
                b" >>",
            ]
            .concat(),
            stream,
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier >>".to_vec(),
        ]
    }

    #[test]
    fn deeply_nested_objects_are_bounded() {
        let mut content = b"BT /F1 10 Tf 72 700 Td (before) Tj ET ".to_vec();
        content.extend(std::iter::repeat_n(b'[', 200_000));
        content.extend_from_slice(b" TJ");
        let mut objects = raw_page(&content, b"/Nested 6 0 R");
        let mut nested = vec![b'['; 100_000];
        nested.extend(vec![b']'; 100_000]);
        objects.push(nested);
        let mut dict = Vec::new();
        for _ in 0..50_000 {
            dict.extend_from_slice(b"<< /A ");
        }
        objects.push(dict);
        let started = std::time::Instant::now();
        match extract(&raw_pdf(&objects)) {
            Ok(out) => assert_eq!(out.text, "before"),
            Err(e) => assert!(matches!(e, ExtractError::Invalid(_)), "{e:?}"),
        }
        assert!(started.elapsed().as_secs() < 10);
    }

    #[test]
    fn decompression_bomb_is_invalid() {
        let mut stream = Stream::new(dictionary! {}, vec![b' '; MAX_PAGE_CONTENT_BYTES + 1024]);
        stream.compress().unwrap();
        assert!(stream.content.len() < 200_000);
        let (mut doc, ids) = document(&[Vec::new()], courier());
        let bomb = doc.add_object(stream);
        doc.get_dictionary_mut(ids[0])
            .unwrap()
            .set("Contents", bomb);
        let err = extract(&save(&mut doc)).unwrap_err();
        assert!(
            matches!(err, ExtractError::Invalid(ref m) if m.contains("too large")),
            "{err:?}"
        );
    }

    #[test]
    fn operator_flood_is_bounded() {
        let mut content = b"BT /F1 10 Tf 72 700 Td (kept) Tj ET\n".to_vec();
        for _ in 0..(MAX_OPS_PER_PAGE + 10) {
            content.extend_from_slice(b"0 0 m\n");
        }
        content.extend_from_slice(b"BT /F1 10 Tf 72 600 Td (dropped) Tj ET\n");
        let mut stream = Stream::new(dictionary! {}, content);
        stream.compress().unwrap();
        let (mut doc, ids) = document(&[Vec::new()], courier());
        let flood = doc.add_object(stream);
        doc.get_dictionary_mut(ids[0])
            .unwrap()
            .set("Contents", flood);
        let started = std::time::Instant::now();
        assert_eq!(text(&save(&mut doc)), "kept");
        assert!(started.elapsed().as_secs() < 60);
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
