//! Content-stream interpretation: runs a page's operators (text state, graphics state, Form
//! XObjects) and emits each shown glyph positioned in upright display space.

use std::rc::Rc;

use lopdf::content::{Content, Operation};
use lopdf::{Dictionary, Document, Object, ObjectId};

use super::accents::combine_accents;
use super::fonts::{push_normalized, Font, FontCache};
use super::{
    num, ExtractError, MAX_CONTENT_BYTES_TOTAL, MAX_FORM_DEPTH, MAX_GLYPHS_PER_PAGE,
    MAX_GSTATE_DEPTH, MAX_OPS_PER_PAGE, MAX_OPS_TOTAL, MAX_PAGE_CONTENT_BYTES,
};

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

/// A glyph positioned in upright display space (y grows upwards).
#[derive(Clone, Debug)]
pub(super) struct Glyph {
    pub(super) x0: f64,
    pub(super) x1: f64,
    /// Baseline.
    pub(super) y: f64,
    pub(super) size: f64,
    /// Byte range in [`PageGlyphs::text`].
    pub(super) start: u32,
    pub(super) end: u32,
    /// Text direction on the display: 0 (left to right), 1, 2, 3 quarter turns.
    pub(super) orient: u8,
}

#[derive(Default)]
pub(super) struct PageGlyphs {
    pub(super) glyphs: Vec<Glyph>,
    pub(super) text: String,
}

impl PageGlyphs {
    pub(super) fn text_of(&self, g: &Glyph) -> &str {
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

pub(super) struct PageReader<'d> {
    doc: &'d Document,
    fonts: FontCache<'d>,
    ops_total: usize,
    /// Decompressed content read so far, against [`MAX_CONTENT_BYTES_TOTAL`].
    content_total: usize,
}

fn over_budget() -> ExtractError {
    ExtractError::Invalid(format!(
        "PDF page content adds up to more than {} MiB; the document is too costly to read",
        MAX_CONTENT_BYTES_TOTAL >> 20
    ))
}

/// Work done on one page, to enforce the per-page limits.
struct PageWork {
    ops: usize,
    content_bytes: usize,
    truncated: bool,
}

impl<'d> PageReader<'d> {
    pub(super) fn new(doc: &'d Document) -> Self {
        PageReader {
            doc,
            fonts: FontCache::new(doc),
            ops_total: 0,
            content_total: 0,
        }
    }

    /// The most content the next stream may decompress to, and whether the document's budget
    /// (rather than the page's) is what bounds it.
    fn content_limit(&self, page_left: usize) -> (usize, bool) {
        let doc_left = MAX_CONTENT_BYTES_TOTAL.saturating_sub(self.content_total);
        (page_left.min(doc_left), doc_left < page_left)
    }

    fn spend_content(&mut self, n: usize) -> Result<(), ExtractError> {
        self.content_total += n;
        if self.content_total > MAX_CONTENT_BYTES_TOTAL {
            return Err(over_budget());
        }
        Ok(())
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

    pub(super) fn page(&mut self, page_id: ObjectId) -> Result<PageGlyphs, ExtractError> {
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
        let (limit, by_document) = self.content_limit(MAX_PAGE_CONTENT_BYTES);
        let content = self
            .doc
            .get_page_content_with_limit(page_id, limit)
            .map_err(|e| {
                if by_document {
                    return over_budget();
                }
                ExtractError::Invalid(format!(
                    "PDF page content is too large or broken (limit {MAX_PAGE_CONTENT_BYTES} bytes): {e}"
                ))
            })?;
        self.spend_content(content.len())?;
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
        let (budget, by_document) =
            self.content_limit(MAX_PAGE_CONTENT_BYTES.saturating_sub(work.content_bytes));
        let content = match stream.decompressed_content_with_limit(budget) {
            Ok(c) => c,
            Err(_) if stream.dict.get(b"Filter").is_err() && stream.content.len() <= budget => {
                stream.content.clone()
            }
            Err(_) if by_document => return Err(over_budget()),
            Err(e) => {
                return Err(ExtractError::Invalid(format!(
                    "PDF form content is too large or broken (limit {MAX_PAGE_CONTENT_BYTES} bytes per page): {e}"
                )))
            }
        };
        work.content_bytes += content.len();
        self.spend_content(content.len())?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use lopdf::{dictionary, Stream};

    use super::super::tests::{courier, document, save, text};
    use super::super::{extract, ExtractError};
    use super::*;

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

    /// Pages that all show one large stream cost its decompression once per page: the budget
    /// is the document's, so a small file cannot buy hours of work.
    #[test]
    fn pages_sharing_one_huge_stream_spend_one_document_budget() {
        let mut stream = Stream::new(dictionary! {}, vec![b' '; MAX_PAGE_CONTENT_BYTES - 1024]);
        stream.compress().unwrap();
        let pages = vec![Vec::new(); 200];
        let (mut doc, ids) = document(&pages, courier());
        let shared = doc.add_object(stream);
        for id in &ids {
            doc.get_dictionary_mut(*id).unwrap().set("Contents", shared);
        }
        let bytes = save(&mut doc);
        assert!(bytes.len() < 200_000, "a small file");
        let err = extract(&bytes).unwrap_err();
        assert!(
            matches!(err, ExtractError::Invalid(ref m) if m.contains("too costly")),
            "{err:?}"
        );
        // Ten pages sharing it (320 MiB in all) are within the budget: read, and found blank.
        let mut stream = Stream::new(dictionary! {}, vec![b' '; MAX_PAGE_CONTENT_BYTES - 1024]);
        stream.compress().unwrap();
        let (mut doc, ids) = document(&vec![Vec::new(); 10], courier());
        let shared = doc.add_object(stream);
        for id in &ids {
            doc.get_dictionary_mut(*id).unwrap().set("Contents", shared);
        }
        let blank = extract(&save(&mut doc)).unwrap_err();
        assert!(
            matches!(blank, ExtractError::Unsupported(ref m) if m.contains("no text layer")),
            "{blank:?}"
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
        // "dropped" comes after the bound: only the text before it is read.
        assert_eq!(text(&save(&mut doc)), "kept");
    }
}
