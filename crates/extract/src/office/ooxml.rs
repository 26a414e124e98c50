//! Office Open XML: DOCX (Markdown with headings, lists, tables, notes), PPTX (slides in
//! presentation order with their notes), XLSX (sheets as table rows).

use std::collections::HashMap;

use serde_json::json;

use super::super::{ExtractError, Extracted};
use super::xml::{decode, walk, Ev, Skip, Tag};
use super::{collapse, folder, resolve, table, too_many_cells, Doc, Package, MAX_CELLS};

/// Alternative content repeats what the chosen branch holds; deleted revisions and field
/// codes are not document text.
const SKIPPED: &[&str] = &["Fallback", "delText", "instrText", "rPh"];

/// A relationship: id -> (type, target part name).
type Rels = HashMap<String, (String, String)>;

/// The relationships of `part` (`ppt/presentation.xml` -> `ppt/_rels/presentation.xml.rels`).
fn rels(pkg: &mut Package<'_>, part: &str) -> Result<Rels, ExtractError> {
    let dir = folder(part);
    let name = format!("{dir}_rels/{}.rels", &part[dir.len()..]);
    let mut out = Rels::new();
    let Some(bytes) = pkg.read(&name)? else {
        return Ok(out);
    };
    walk(&decode(&bytes, &name)?, &name, false, |ev| {
        if let Ev::Open(t) = ev {
            if t.name == "Relationship" && t.attr("TargetMode") != Some("External") {
                if let (Some(id), Some(target)) = (t.attr("Id"), t.attr("Target")) {
                    let kind = t.attr("Type").unwrap_or_default();
                    out.insert(id.to_owned(), (kind.to_owned(), resolve(dir, target)));
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

fn heading_level(name: &str) -> Option<usize> {
    let n = name.to_ascii_lowercase().replace(' ', "");
    if n == "title" {
        return Some(1);
    }
    let level = n.strip_prefix("heading")?.parse::<usize>().ok()?;
    (1..=6).contains(&level).then_some(level)
}

/// Style id -> heading level, from `word/styles.xml` (names "heading 1", "Title", or an
/// outline level), so localized style ids still count as headings.
fn heading_styles(pkg: &mut Package<'_>) -> Result<HashMap<String, usize>, ExtractError> {
    let mut out = HashMap::new();
    let Some(bytes) = pkg.read("word/styles.xml")? else {
        return Ok(out);
    };
    let mut id: Option<String> = None;
    walk(
        &decode(&bytes, "word/styles.xml")?,
        "word/styles.xml",
        false,
        |ev| {
            match ev {
                Ev::Open(t) if t.name == "style" => {
                    id = t.attr("styleId").map(str::to_owned);
                    if let Some(level) = id.as_deref().and_then(heading_level) {
                        out.insert(id.clone().unwrap_or_default(), level);
                    }
                }
                Ev::Open(t) if t.name == "name" => {
                    if let (Some(id), Some(level)) = (&id, t.attr("val").and_then(heading_level)) {
                        out.insert(id.clone(), level);
                    }
                }
                Ev::Open(t) if t.name == "outlineLvl" => {
                    let level = t.attr("val").and_then(|v| v.parse::<usize>().ok());
                    if let (Some(id), Some(level @ 0..=5)) = (&id, level) {
                        out.entry(id.clone()).or_insert(level + 1);
                    }
                }
                _ => {}
            }
            Ok(())
        },
    )?;
    Ok(out)
}

#[derive(Default)]
struct Para {
    text: String,
    style: Option<String>,
    outline: Option<usize>,
    list_level: Option<usize>,
}

/// Word body text as Markdown blocks: `(block, heading text if a heading)`.
struct WordBody<'s> {
    styles: &'s HashMap<String, usize>,
    /// Footnote/endnote reference marks, by element name.
    blocks: Vec<(String, Option<String>)>,
    paras: Vec<Para>,
    tables: Vec<Vec<Vec<String>>>,
    in_ppr: bool,
    in_text: bool,
    skip: Skip,
}

impl<'s> WordBody<'s> {
    fn new(styles: &'s HashMap<String, usize>) -> Self {
        WordBody {
            styles,
            blocks: Vec::new(),
            paras: Vec::new(),
            tables: Vec::new(),
            in_ppr: false,
            in_text: false,
            skip: Skip::default(),
        }
    }

    fn push_text(&mut self, s: &str) {
        if let Some(p) = self.paras.last_mut() {
            p.text.push_str(s);
        }
    }

    fn open(&mut self, t: &Tag) {
        match t.name.as_str() {
            "p" => self.paras.push(Para::default()),
            "pPr" => self.in_ppr = true,
            "t" => self.in_text = true,
            "pStyle" if self.in_ppr => {
                if let Some(p) = self.paras.last_mut() {
                    p.style = t.attr("val").map(str::to_owned);
                }
            }
            "outlineLvl" if self.in_ppr => {
                if let Some(p) = self.paras.last_mut() {
                    p.outline = t.attr("val").and_then(|v| v.parse().ok());
                }
            }
            "numPr" if self.in_ppr => {
                if let Some(p) = self.paras.last_mut() {
                    p.list_level.get_or_insert(0);
                }
            }
            "ilvl" if self.in_ppr => {
                if let Some(p) = self.paras.last_mut() {
                    p.list_level = t.attr("val").and_then(|v| v.parse().ok());
                }
            }
            "tab" if !self.in_ppr => self.push_text("\t"),
            "br" | "cr" if !self.in_ppr => self.push_text("\n"),
            "noBreakHyphen" => self.push_text("-"),
            "footnoteReference" => {
                let id = t.attr("id").unwrap_or_default().to_owned();
                self.push_text(&format!("[^{id}]"));
            }
            "endnoteReference" => {
                let id = t.attr("id").unwrap_or_default().to_owned();
                self.push_text(&format!("[^e{id}]"));
            }
            "tbl" => self.tables.push(Vec::new()),
            "tr" => {
                if let Some(tbl) = self.tables.last_mut() {
                    tbl.push(Vec::new());
                }
            }
            "tc" => {
                if let Some(row) = self.tables.last_mut().and_then(|t| t.last_mut()) {
                    row.push(String::new());
                }
            }
            _ => {}
        }
    }

    /// Where finished text goes: the innermost open table cell, else a block of its own.
    fn emit(&mut self, text: String, heading: Option<String>) {
        if let Some(cell) = self
            .tables
            .last_mut()
            .and_then(|t| t.last_mut())
            .and_then(|r| r.last_mut())
        {
            if !cell.is_empty() {
                cell.push(' ');
            }
            cell.push_str(&text);
        } else {
            self.blocks.push((text, heading));
        }
    }

    fn close(&mut self, name: &str) {
        match name {
            "pPr" => self.in_ppr = false,
            "t" => self.in_text = false,
            "p" => {
                let Some(p) = self.paras.pop() else { return };
                let text = p.text.trim();
                if text.is_empty() {
                    return;
                }
                let level = p
                    .style
                    .as_deref()
                    .and_then(|s| self.styles.get(s).copied().or_else(|| heading_level(s)))
                    .or(p.outline.filter(|l| *l < 6).map(|l| l + 1));
                let in_table = !self.tables.is_empty();
                match (level, p.list_level) {
                    (Some(level), _) if !in_table => {
                        let heading = collapse(text);
                        self.emit(format!("{} {heading}", "#".repeat(level)), Some(heading));
                    }
                    (_, Some(depth)) if !in_table => {
                        let indent = "  ".repeat(depth.min(8));
                        self.emit(format!("{indent}- {text}"), None);
                    }
                    _ => self.emit(text.to_owned(), None),
                }
            }
            "tbl" => {
                let Some(rows) = self.tables.pop() else {
                    return;
                };
                if self.tables.is_empty() {
                    self.emit(table(&rows), None);
                } else {
                    // A table nested in a cell is flattened into the cell's text.
                    let flat: Vec<String> = rows.iter().map(|r| r.join(" ")).collect();
                    self.emit(flat.join("; "), None);
                }
            }
            _ => {}
        }
    }

    fn feed(&mut self, ev: Ev<'_>) {
        if self.skip.filter(&ev, SKIPPED) {
            return;
        }
        match ev {
            Ev::Open(t) => self.open(t),
            Ev::Close(name) => self.close(name),
            Ev::Text(s) if self.in_text => self.push_text(s),
            Ev::Text(_) => {}
        }
    }
}

/// Footnotes or endnotes as `[^id]: text` blocks, in document order.
fn notes(
    pkg: &mut Package<'_>,
    part: &str,
    element: &str,
    mark: &str,
    styles: &HashMap<String, usize>,
) -> Result<Vec<String>, ExtractError> {
    let Some(bytes) = pkg.read(part)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut body = WordBody::new(styles);
    let mut current: Option<String> = None;
    walk(&decode(&bytes, part)?, part, false, |ev| {
        match &ev {
            // Separator "notes" hold only layout.
            Ev::Open(t) if t.name == element => {
                current = t
                    .attr("type")
                    .is_none()
                    .then(|| t.attr("id").unwrap_or_default().to_owned());
                body.blocks.clear();
            }
            Ev::Close(name) if *name == element => {
                if let Some(id) = current.take() {
                    let text: Vec<String> = body.blocks.drain(..).map(|(b, _)| b).collect();
                    let text = text.join(" ");
                    if !text.trim().is_empty() {
                        out.push(format!("[^{mark}{id}]: {}", text.trim()));
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        body.feed(ev);
        Ok(())
    })?;
    Ok(out)
}

pub(super) fn docx(pkg: &mut Package<'_>) -> Result<Extracted, ExtractError> {
    let styles = heading_styles(pkg)?;
    let bytes = pkg.require("word/document.xml", "DOCX")?;
    let mut body = WordBody::new(&styles);
    walk(
        &decode(&bytes, "word/document.xml")?,
        "word/document.xml",
        false,
        |ev| {
            body.feed(ev);
            Ok(())
        },
    )?;
    let mut doc = Doc::default();
    for (block, heading) in std::mem::take(&mut body.blocks) {
        if let Some(h) = heading {
            doc.section(json!({ "section": h }));
        }
        doc.block(&block)?;
    }
    let footnotes = notes(pkg, "word/footnotes.xml", "footnote", "", &styles)?;
    let endnotes = notes(pkg, "word/endnotes.xml", "endnote", "e", &styles)?;
    if !footnotes.is_empty() || !endnotes.is_empty() {
        doc.section(json!({ "section": "Notes" }));
        for n in footnotes.iter().chain(&endnotes) {
            doc.block(n)?;
        }
    }
    doc.finish("DOCX")
}

/// DrawingML text (`a:p` paragraphs of `a:t` runs) of one slide or notes part, grouped by
/// shape; placeholders in `skip_placeholders` (slide numbers, dates…) are left out.
/// Returns the title (if a title placeholder has text) and the body blocks.
fn slide_text(
    xml: &str,
    part: &str,
    skip_placeholders: &[&str],
) -> Result<(Option<String>, Vec<String>), ExtractError> {
    let mut title: Option<String> = None;
    let mut blocks: Vec<String> = Vec::new();
    let mut shape: Vec<String> = Vec::new();
    let mut shape_kind: Option<String> = None;
    let mut para = String::new();
    let mut in_text = false;
    let mut row: Option<Vec<String>> = None;
    let mut skip = Skip::default();
    walk(xml, part, false, |ev| {
        if skip.filter(&ev, &["Fallback"]) {
            return Ok(());
        }
        match ev {
            Ev::Open(t) => match t.name.as_str() {
                "sp" | "graphicFrame" => {
                    shape.clear();
                    shape_kind = None;
                }
                "ph" => shape_kind = Some(t.attr("type").unwrap_or("body").to_owned()),
                "t" => in_text = true,
                "br" => para.push('\n'),
                "tab" => para.push('\t'),
                "tr" => row = Some(Vec::new()),
                "tc" => {
                    if let Some(r) = row.as_mut() {
                        r.push(String::new());
                    }
                }
                _ => {}
            },
            Ev::Text(s) if in_text => para.push_str(s),
            Ev::Text(_) => {}
            Ev::Close(name) => match name {
                "t" => in_text = false,
                "p" => {
                    let text = std::mem::take(&mut para);
                    let text = text.trim();
                    if text.is_empty() {
                        return Ok(());
                    }
                    match row.as_mut().and_then(|r| r.last_mut()) {
                        Some(cell) => {
                            if !cell.is_empty() {
                                cell.push(' ');
                            }
                            cell.push_str(text);
                        }
                        None => shape.push(text.to_owned()),
                    }
                }
                "tr" => {
                    if let Some(r) = row.take() {
                        let cells: Vec<String> = r.iter().map(|c| collapse(c)).collect();
                        if cells.iter().any(|c| !c.is_empty()) {
                            shape.push(cells.join(" | "));
                        }
                    }
                }
                "sp" | "graphicFrame" => {
                    let kind = shape_kind.take();
                    let text = std::mem::take(&mut shape).join("\n");
                    match kind.as_deref() {
                        Some(k) if skip_placeholders.contains(&k) => {}
                        Some("title" | "ctrTitle") if title.is_none() && !text.is_empty() => {
                            title = Some(collapse(&text));
                        }
                        _ if !text.is_empty() => blocks.push(text),
                        _ => {}
                    }
                }
                _ => {}
            },
        }
        Ok(())
    })?;
    Ok((title, blocks))
}

const NOTES_REL: &str = "/notesSlide";
const SLIDE_REL: &str = "/slide";

pub(super) fn pptx(pkg: &mut Package<'_>) -> Result<Extracted, ExtractError> {
    let part = "ppt/presentation.xml";
    let bytes = pkg.require(part, "PPTX")?;
    let mut order: Vec<String> = Vec::new();
    walk(&decode(&bytes, part)?, part, false, |ev| {
        if let Ev::Open(t) = ev {
            if t.name == "sldId" {
                if let Some(id) = t.attr("r:id") {
                    order.push(id.to_owned());
                }
            }
        }
        Ok(())
    })?;
    let rels = rels(pkg, part)?;
    let mut doc = Doc::default();
    let mut slides = 0usize;
    for id in order {
        let Some((kind, target)) = rels.get(&id) else {
            continue;
        };
        if !kind.ends_with(SLIDE_REL) {
            continue;
        }
        slides += 1;
        let Some(bytes) = pkg.read(target)? else {
            return Err(ExtractError::Invalid(format!(
                "The PPTX file lists slide {target} but does not contain it."
            )));
        };
        let (title, blocks) = slide_text(
            &decode(&bytes, target)?,
            target,
            &["sldNum", "dt", "ftr", "hdr"],
        )?;
        doc.section(json!({ "slide": slides }));
        match title {
            Some(t) => doc.block(&format!("## Slide {slides}: {t}"))?,
            None => doc.block(&format!("## Slide {slides}"))?,
        }
        for b in &blocks {
            doc.block(b)?;
        }
        let slide_rels = self::rels(pkg, target)?;
        let notes = slide_rels.values().find(|(k, _)| k.ends_with(NOTES_REL));
        if let Some((_, notes_part)) = notes {
            if let Some(bytes) = pkg.read(notes_part)? {
                let (_, notes) = slide_text(
                    &decode(&bytes, notes_part)?,
                    notes_part,
                    &["sldNum", "dt", "ftr", "hdr", "sldImg", "title"],
                )?;
                if !notes.is_empty() {
                    doc.block(&format!("Notes:\n{}", notes.join("\n")))?;
                }
            }
        }
    }
    doc.finish("PPTX")
}

/// Column number (0-based) of a cell reference like `AB12`.
fn column_of(reference: &str) -> Option<usize> {
    let mut col = 0usize;
    let mut any = false;
    for c in reference.chars().take_while(char::is_ascii_alphabetic) {
        col = col * 26 + (c.to_ascii_uppercase() as usize - 'A' as usize + 1);
        any = true;
        if col > MAX_COLUMNS {
            return None;
        }
    }
    any.then(|| col - 1)
}

/// Excel's last column is XFD (16384).
const MAX_COLUMNS: usize = 16_384;

fn shared_strings(pkg: &mut Package<'_>, part: &str) -> Result<Vec<String>, ExtractError> {
    let mut out = Vec::new();
    let Some(bytes) = pkg.read(part)? else {
        return Ok(out);
    };
    let mut current = String::new();
    let mut in_text = false;
    let mut skip = Skip::default();
    walk(&decode(&bytes, part)?, part, false, |ev| {
        if skip.filter(&ev, SKIPPED) {
            return Ok(());
        }
        match ev {
            Ev::Open(t) if t.name == "si" => current.clear(),
            Ev::Open(t) if t.name == "t" => in_text = true,
            Ev::Close("t") => in_text = false,
            Ev::Close("si") => out.push(std::mem::take(&mut current)),
            Ev::Text(s) if in_text => current.push_str(s),
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

/// How a number-format shows a serial number: as it is, or as a date and/or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Shown {
    date: bool,
    time: bool,
}

/// Built-in number formats that are dates or times (ECMA-376 18.8.30, plus the East Asian
/// date ids Excel uses).
fn builtin_format(id: u32) -> Shown {
    match id {
        14..=17 | 27..=31 | 34..=36 | 50..=58 => Shown {
            date: true,
            time: false,
        },
        18..=21 | 32 | 33 | 45..=47 => Shown {
            date: false,
            time: true,
        },
        22 => Shown {
            date: true,
            time: true,
        },
        _ => Shown::default(),
    }
}

/// Reads a format code like `yyyy-mm-dd`, `[$-409]d/m/yy h:mm AM/PM` or `0.00"d"`: quoted
/// text, escaped characters and bracketed colours/locales do not count; `m` is a month unless
/// the code has hours or seconds.
fn custom_format(code: &str) -> Shown {
    let mut letters = String::new();
    let mut chars = code.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                for q in chars.by_ref() {
                    if q == '"' {
                        break;
                    }
                }
            }
            '\\' | '_' | '*' => {
                chars.next();
            }
            '[' => {
                let inner: String = chars.by_ref().take_while(|&b| b != ']').collect();
                // Elapsed time: [h]:mm, [mm]:ss.
                if matches!(
                    inner.to_ascii_lowercase().chars().next(),
                    Some('h' | 'm' | 's')
                ) {
                    letters.push('h');
                }
            }
            ';' => break, // the first section decides
            c => letters.push(c.to_ascii_lowercase()),
        }
    }
    if letters == "general" {
        return Shown::default();
    }
    let time = letters.contains(['h', 's']);
    let date = letters.contains(['y', 'd']) || (letters.contains('m') && !time);
    Shown { date, time }
}

/// Cell style index -> how its number format shows serials, from the styles part.
fn cell_formats(pkg: &mut Package<'_>, part: &str) -> Result<Vec<Shown>, ExtractError> {
    let mut out = Vec::new();
    let Some(bytes) = pkg.read(part)? else {
        return Ok(out);
    };
    let mut custom: HashMap<u32, Shown> = HashMap::new();
    let mut in_cell_xfs = false;
    walk(&decode(&bytes, part)?, part, false, |ev| {
        match ev {
            Ev::Open(t) if t.name == "numFmt" => {
                if let Some(id) = t.attr("numFmtId").and_then(|v| v.parse().ok()) {
                    custom.insert(id, custom_format(t.attr("formatCode").unwrap_or_default()));
                }
            }
            Ev::Open(t) if t.name == "cellXfs" => in_cell_xfs = true,
            Ev::Close("cellXfs") => in_cell_xfs = false,
            Ev::Open(t) if t.name == "xf" && in_cell_xfs => {
                let id = t.attr("numFmtId").and_then(|v| v.parse().ok()).unwrap_or(0);
                out.push(
                    custom
                        .get(&id)
                        .copied()
                        .unwrap_or_else(|| builtin_format(id)),
                );
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

/// A serial date-time as ISO 8601 text (`2023-03-15`, `14:30`, `2023-03-15 14:30:05`), or
/// `None` when the number is not a plausible date. Serial 60 is the 29 February 1900 that
/// Lotus and Excel pretend existed; in the 1904 system day 0 is 1904-01-01.
fn serial_to_text(serial: f64, shown: Shown, date1904: bool) -> Option<String> {
    if !serial.is_finite() || !(0.0..2_958_466.0).contains(&serial) {
        return None;
    }
    let mut days = serial.floor() as i64;
    let mut secs = ((serial - serial.floor()) * 86_400.0).round() as i64;
    if secs >= 86_400 {
        days += 1;
        secs -= 86_400;
    }
    let time = format!("{:02}:{:02}", secs / 3600, secs / 60 % 60);
    let time = if secs % 60 == 0 {
        time
    } else {
        format!("{time}:{:02}", secs % 60)
    };
    let show_date = shown.date && (days > 0 || date1904);
    if !show_date {
        return Some(time);
    }
    let base = if date1904 {
        chrono::NaiveDate::from_ymd_opt(1904, 1, 1)
    } else if days < 60 {
        chrono::NaiveDate::from_ymd_opt(1899, 12, 31)
    } else {
        chrono::NaiveDate::from_ymd_opt(1899, 12, 30)
    }?;
    let date = base.checked_add_days(chrono::Days::new(u64::try_from(days).ok()?))?;
    let date = date.format("%Y-%m-%d").to_string();
    Some(if shown.time && secs > 0 {
        format!("{date} {time}")
    } else {
        date
    })
}

/// What a workbook's cells need besides their own XML.
struct Workbook<'a> {
    strings: &'a [String],
    formats: &'a [Shown],
    date1904: bool,
}

/// The rows of one worksheet, cells placed by their reference. `cells` counts the cells held
/// so far in the workbook, padding included.
fn sheet_rows(
    xml: &str,
    part: &str,
    book: &Workbook<'_>,
    cells: &mut usize,
) -> Result<Vec<Vec<String>>, ExtractError> {
    let strings = book.strings;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut cell_type = String::new();
    let mut cell_style = Shown::default();
    let mut cell_col: Option<usize> = None;
    let mut value = String::new();
    let mut in_value = false;
    let mut skip = Skip::default();
    walk(xml, part, false, |ev| {
        if skip.filter(&ev, SKIPPED) {
            return Ok(());
        }
        match ev {
            Ev::Open(t) => match t.name.as_str() {
                "row" => row.clear(),
                "c" => {
                    cell_type = t.attr("t").unwrap_or("n").to_owned();
                    cell_style = t
                        .attr("s")
                        .and_then(|s| s.parse::<usize>().ok())
                        .and_then(|i| book.formats.get(i).copied())
                        .unwrap_or_default();
                    cell_col = t.attr("r").and_then(column_of);
                    value.clear();
                }
                "v" | "t" => in_value = true,
                _ => {}
            },
            Ev::Text(s) if in_value => value.push_str(s),
            Ev::Text(_) => {}
            Ev::Close(name) => match name {
                "v" | "t" => in_value = false,
                "c" => {
                    let text = match cell_type.as_str() {
                        "s" => value
                            .trim()
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| strings.get(i))
                            .cloned()
                            .unwrap_or_default(),
                        "b" => match value.trim() {
                            "1" => "TRUE".to_owned(),
                            "0" => "FALSE".to_owned(),
                            v => v.to_owned(),
                        },
                        "n" if cell_style != Shown::default() => value
                            .trim()
                            .parse::<f64>()
                            .ok()
                            .and_then(|n| serial_to_text(n, cell_style, book.date1904))
                            .unwrap_or_else(|| std::mem::take(&mut value)),
                        _ => std::mem::take(&mut value),
                    };
                    let col = cell_col.unwrap_or(row.len()).max(row.len());
                    if !text.trim().is_empty() {
                        *cells += col + 1 - row.len();
                        if *cells > MAX_CELLS {
                            return Err(too_many_cells("XLSX"));
                        }
                        row.resize(col, String::new());
                        row.push(text);
                    }
                }
                "row" if !row.is_empty() => rows.push(std::mem::take(&mut row)),
                _ => {}
            },
        }
        Ok(())
    })?;
    Ok(rows)
}

pub(super) fn xlsx(pkg: &mut Package<'_>) -> Result<Extracted, ExtractError> {
    let part = "xl/workbook.xml";
    let bytes = pkg.require(part, "XLSX")?;
    let mut sheets: Vec<(String, String)> = Vec::new();
    let mut date1904 = false;
    walk(&decode(&bytes, part)?, part, false, |ev| {
        if let Ev::Open(t) = ev {
            if t.name == "workbookPr" {
                date1904 = matches!(t.attr("date1904"), Some("1" | "true"));
            }
            if t.name == "sheet" {
                if let Some(id) = t.attr("r:id") {
                    let name = t.attr("name").unwrap_or_default();
                    sheets.push((name.to_owned(), id.to_owned()));
                }
            }
        }
        Ok(())
    })?;
    let rels = rels(pkg, part)?;
    let strings_part = rels
        .values()
        .find(|(k, _)| k.ends_with("/sharedStrings"))
        .map_or_else(|| "xl/sharedStrings.xml".to_owned(), |(_, t)| t.clone());
    let strings = shared_strings(pkg, &strings_part)?;
    let styles_part = rels
        .values()
        .find(|(k, _)| k.ends_with("/styles"))
        .map_or_else(|| "xl/styles.xml".to_owned(), |(_, t)| t.clone());
    let formats = cell_formats(pkg, &styles_part)?;
    let book = Workbook {
        strings: &strings,
        formats: &formats,
        date1904,
    };
    let mut doc = Doc::default();
    let mut cells = 0usize;
    for (name, id) in sheets {
        // Chart sheets and macro sheets have no cells.
        let Some((kind, target)) = rels.get(&id) else {
            continue;
        };
        if !kind.ends_with("/worksheet") {
            continue;
        }
        let Some(bytes) = pkg.read(target)? else {
            return Err(ExtractError::Invalid(format!(
                "The XLSX file lists sheet {name} ({target}) but does not contain it."
            )));
        };
        let rows = sheet_rows(&decode(&bytes, target)?, target, &book, &mut cells)?;
        if rows.is_empty() {
            continue;
        }
        doc.section(json!({ "sheet": name }));
        doc.block(&format!("## {name}"))?;
        doc.block(&table(&rows))?;
    }
    doc.finish("XLSX")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::{json, Value};

    use super::super::extract;
    use super::super::tests::{loc, zip_of};
    use crate::ExtractError;

    const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;

    fn docx(body: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let doc = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><w:document {W}><w:body>{body}</w:body></w:document>"#
        );
        let mut entries: Vec<(&str, &[u8])> = vec![
            ("[Content_Types].xml", b"<Types/>"),
            ("word/document.xml", doc.as_bytes()),
        ];
        entries.extend(extra.iter().map(|(n, d)| (*n, d.as_bytes())));
        zip_of(&entries)
    }

    fn p(style: &str, text: &str) -> String {
        let ppr = if style.is_empty() {
            String::new()
        } else {
            format!(
                r#"<w:pPr><w:pStyle w:val="{style}"/><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>"#
            )
        };
        format!(r#"<w:p>{ppr}<w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>"#)
    }

    #[test]
    fn docx_paragraphs_headings_lists_tables_notes() {
        let list = r#"<w:p><w:pPr><w:numPr><w:ilvl w:val="1"/><w:numId w:val="3"/></w:numPr></w:pPr><w:r><w:t>nested item</w:t></w:r></w:p>"#;
        let tbl = r#"<w:tbl><w:tblPr/><w:tr><w:tc><w:p><w:r><w:t>Name</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Qty</w:t></w:r></w:p></w:tc></w:tr><w:tr><w:tc><w:p><w:r><w:t>apple</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>3</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"#;
        let note_ref = r#"<w:p><w:r><w:t>See this</w:t></w:r><w:r><w:footnoteReference w:id="2"/></w:r><w:r><w:t>.</w:t></w:r><w:r><w:delText>gone</w:delText></w:r></w:p>"#;
        let body = format!(
            "{}{}{}{}{}{}{}",
            p("Title", "The Book"),
            p("", "First &amp; plain."),
            p("Kop2", "Localized Heading"),
            list,
            tbl,
            note_ref,
            p("Heading1", "Last"),
        );
        let styles = format!(
            r#"<w:styles {W}><w:style w:styleId="Kop2"><w:name w:val="heading 2"/></w:style></w:styles>"#
        );
        let footnotes = format!(
            r#"<w:footnotes {W}><w:footnote w:type="separator" w:id="0"><w:p><w:r><w:separator/></w:r></w:p></w:footnote><w:footnote w:id="2"><w:p><w:r><w:t>A footnote.</w:t></w:r></w:p></w:footnote></w:footnotes>"#
        );
        let z = docx(
            &body,
            &[
                ("word/styles.xml", &styles),
                ("word/footnotes.xml", &footnotes),
            ],
        );
        let e = extract(&z).unwrap();
        assert_eq!(e.format, "markdown");
        assert_eq!(
            e.text,
            "# The Book\n\nFirst & plain.\n\n## Localized Heading\n\n  - nested item\n\n\
             | Name | Qty |\n| --- | --- |\n| apple | 3 |\n\nSee this[^2].\n\n# Last\n\n[^2]: A footnote."
        );
        assert_eq!(
            loc(&e),
            vec![
                ("# The Book".into(), json!({"section": "The Book"})),
                (
                    "## Localized Heading".into(),
                    json!({"section": "Localized Heading"})
                ),
                ("# Last".into(), json!({"section": "Last"})),
                ("[^2]: A footnote.".into(), json!({"section": "Notes"})),
            ]
        );
    }

    #[test]
    fn docx_missing_or_broken_parts() {
        let z = zip_of(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("word/document.xml", b"<w:document><w:body>"),
        ]);
        assert!(
            matches!(extract(&z), Err(ExtractError::Invalid(m)) if m.contains("word/document.xml"))
        );
        let z = zip_of(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("word/document.xml", b"<a>\xc3\x28</a>"),
        ]);
        assert!(matches!(extract(&z), Err(ExtractError::Invalid(m)) if m.contains("UTF-8")));
        let z = docx("", &[]);
        assert!(matches!(extract(&z), Err(ExtractError::Invalid(m)) if m.contains("no text")));
        let deep = format!("{}{}", "<w:sdt>".repeat(300), "</w:sdt>".repeat(300));
        assert!(
            matches!(extract(&docx(&deep, &[])), Err(ExtractError::Invalid(m)) if m.contains("deep"))
        );
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]><w:document><w:body><w:p><w:r><w:t>x&d;&d;&d;&d;y</w:t></w:r></w:p></w:body></w:document>"#;
        let z = zip_of(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("word/document.xml", laughs.as_bytes()),
        ]);
        assert_eq!(extract(&z).map(|e| e.text), Ok("xy".into()));
    }

    const PRES_RELS: &str = r#"<Relationships><Relationship Id="rId7" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/slide" Target="slides/slide1.xml"/><Relationship Id="rId8" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/slide" Target="slides/slide2.xml"/><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/slideMaster" Target="slideMasters/slideMaster1.xml"/></Relationships>"#;

    fn slide(title: &str, body: &[&str]) -> String {
        let paras: String = body
            .iter()
            .map(|b| format!("<a:p><a:r><a:t>{b}</a:t></a:r></a:p>"))
            .collect();
        format!(
            r#"<p:sld xmlns:a="a" xmlns:p="p"><p:cSld><p:spTree><p:sp><p:nvSpPr><p:nvPr><p:ph type="title"/></p:nvPr></p:nvSpPr><p:txBody><a:p><a:r><a:t>{title}</a:t></a:r></a:p></p:txBody></p:sp><p:sp><p:txBody>{paras}</p:txBody></p:sp><p:sp><p:nvSpPr><p:nvPr><p:ph type="sldNum"/></p:nvPr></p:nvSpPr><p:txBody><a:p><a:r><a:t>99</a:t></a:r></a:p></p:txBody></p:sp></p:spTree></p:cSld></p:sld>"#
        )
    }

    #[test]
    fn pptx_slides_in_presentation_order_with_notes() {
        // Slide 2's part is listed first in the presentation: order comes from sldIdLst.
        let pres = r#"<p:presentation xmlns:p="p" xmlns:r="r"><p:sldIdLst><p:sldId id="256" r:id="rId8"/><p:sldId id="257" r:id="rId7"/></p:sldIdLst></p:presentation>"#;
        let s1 = slide("Second", &["b1", "b2"]);
        let s2 = slide("First", &["a &lt; b"]);
        let s1_rels = r#"<Relationships><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/notesSlide" Target="../notesSlides/notesSlide1.xml"/></Relationships>"#;
        let notes = r#"<p:notes xmlns:a="a" xmlns:p="p"><p:cSld><p:spTree><p:sp><p:nvSpPr><p:nvPr><p:ph type="sldImg"/></p:nvPr></p:nvSpPr></p:sp><p:sp><p:nvSpPr><p:nvPr><p:ph type="body" idx="1"/></p:nvPr></p:nvSpPr><p:txBody><a:p><a:r><a:t>Say </a:t></a:r><a:r><a:t>hello.</a:t></a:r></a:p></p:txBody></p:sp><p:sp><p:nvSpPr><p:nvPr><p:ph type="sldNum"/></p:nvPr></p:nvSpPr><p:txBody><a:p><a:r><a:t>1</a:t></a:r></a:p></p:txBody></p:sp></p:spTree></p:cSld></p:notes>"#;
        let z = zip_of(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("ppt/presentation.xml", pres.as_bytes()),
            ("ppt/_rels/presentation.xml.rels", PRES_RELS.as_bytes()),
            ("ppt/slides/slide1.xml", s1.as_bytes()),
            ("ppt/slides/slide2.xml", s2.as_bytes()),
            ("ppt/slides/_rels/slide1.xml.rels", s1_rels.as_bytes()),
            ("ppt/notesSlides/notesSlide1.xml", notes.as_bytes()),
        ]);
        let e = extract(&z).unwrap();
        assert_eq!(
            e.text,
            "## Slide 1: First\n\na < b\n\n## Slide 2: Second\n\nb1\nb2\n\nNotes:\nSay hello."
        );
        let locs: Vec<Value> = loc(&e).into_iter().map(|(_, l)| l).collect();
        assert_eq!(locs, vec![json!({"slide": 1}), json!({"slide": 2})]);
        // A listed slide that is missing is an invalid file.
        let z = zip_of(&[
            ("ppt/presentation.xml", pres.as_bytes()),
            ("ppt/_rels/presentation.xml.rels", PRES_RELS.as_bytes()),
        ]);
        assert!(matches!(extract(&z), Err(ExtractError::Invalid(m)) if m.contains("slide")));
    }

    #[test]
    fn xlsx_sheets_as_rows() {
        let wb = r#"<workbook xmlns:r="r"><sheets><sheet name="Data" sheetId="1" r:id="rId1"/><sheet name="Empty" sheetId="2" r:id="rId2"/><sheet name="Q&amp;A" sheetId="3" r:id="rId3"/></sheets></workbook>"#;
        let rels = r#"<Relationships><Relationship Id="rId1" Type="http://x/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://x/worksheet" Target="/xl/worksheets/sheet2.xml"/><Relationship Id="rId3" Type="http://x/worksheet" Target="worksheets/sheet3.xml"/><Relationship Id="rId9" Type="http://x/sharedStrings" Target="sharedStrings.xml"/></Relationships>"#;
        let sst = r#"<sst><si><t>Name</t></si><si><r><t>Pri</t></r><r><t>ce</t></r><rPh><t>ignored</t></rPh></si><si><t>widget</t></si></sst>"#;
        let s1 = r#"<worksheet><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row><row r="2"><c r="A2" t="s"><v>2</v></c><c r="B2"><v>3.50</v></c><c r="D2" t="b"><v>1</v></c></row><row r="3"><c r="A3" t="inlineStr"><is><t>inline</t></is></c><c r="B3"><f>B2*2</f><v>7</v></c></row></sheetData></worksheet>"#;
        let s2 = r#"<worksheet><sheetData/></worksheet>"#;
        let s3 = r#"<worksheet><sheetData><row><c t="str"><v>answer</v></c><c><v>42</v></c></row></sheetData></worksheet>"#;
        let z = zip_of(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("xl/workbook.xml", wb.as_bytes()),
            ("xl/_rels/workbook.xml.rels", rels.as_bytes()),
            ("xl/sharedStrings.xml", sst.as_bytes()),
            ("xl/worksheets/sheet1.xml", s1.as_bytes()),
            ("xl/worksheets/sheet2.xml", s2.as_bytes()),
            ("xl/worksheets/sheet3.xml", s3.as_bytes()),
        ]);
        let e = extract(&z).unwrap();
        assert_eq!(
            e.text,
            "## Data\n\n| Name | Price |  |  |\n| --- | --- | --- | --- |\n| widget | 3.50 |  | TRUE |\n| inline | 7 |\n\n## Q&A\n\n| answer | 42 |\n| --- | --- |"
        );
        let locs: Vec<Value> = loc(&e).into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            locs,
            vec![json!({"sheet": "Data"}), json!({"sheet": "Q&A"})]
        );
    }

    #[test]
    fn xlsx_dates_and_times_read_as_iso() {
        let wb = r#"<workbook xmlns:r="r"><workbookPr date1904="0"/><sheets><sheet name="Log" sheetId="1" r:id="rId1"/></sheets></workbook>"#;
        let rels = r#"<Relationships><Relationship Id="rId1" Type="http://x/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://x/styles" Target="styles.xml"/></Relationships>"#;
        // Styles: 0 General, 1 built-in date (14), 2 custom date-time, 3 built-in time (20),
        // 4 a number format with quoted letters (not a date), 5 elapsed hours.
        let styles = r#"<styleSheet><numFmts count="3"><numFmt numFmtId="164" formatCode="[$-409]d/m/yyyy\ h:mm;@"/><numFmt numFmtId="165" formatCode="0.0&quot; days&quot;"/><numFmt numFmtId="166" formatCode="[h]:mm"/></numFmts><cellStyleXfs><xf numFmtId="14"/></cellStyleXfs><cellXfs><xf numFmtId="0"/><xf numFmtId="14"/><xf numFmtId="164"/><xf numFmtId="20"/><xf numFmtId="165"/><xf numFmtId="166"/></cellXfs></styleSheet>"#;
        let s1 = r#"<worksheet><sheetData><row><c s="1"><v>45000</v></c><c s="2"><v>45000.6047453704</v></c><c s="3"><v>0.5</v></c><c s="4"><v>12.5</v></c><c s="0"><v>45000</v></c><c s="1"><v>1</v></c><c s="1"><v>61</v></c><c s="1"><v>-3</v></c><c s="5"><v>0.75</v></c><c t="d"><v>2024-02-29T10:00:00</v></c></row></sheetData></worksheet>"#;
        let mk = |wb: &str| {
            zip_of(&[
                ("[Content_Types].xml", b"<Types/>"),
                ("xl/workbook.xml", wb.as_bytes()),
                ("xl/_rels/workbook.xml.rels", rels.as_bytes()),
                ("xl/styles.xml", styles.as_bytes()),
                ("xl/worksheets/sheet1.xml", s1.as_bytes()),
            ])
        };
        let e = extract(&mk(wb)).unwrap();
        assert_eq!(
            e.text,
            "## Log\n\n| 2023-03-15 | 2023-03-15 14:30:50 | 12:00 | 12.5 | 45000 | 1900-01-01 | 1900-03-01 | -3 | 18:00 | 2024-02-29T10:00:00 |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        // The 1904 date system starts four years and a day later.
        let e = extract(&mk(&wb.replace("date1904=\"0\"", "date1904=\"1\""))).unwrap();
        assert!(e.text.starts_with("## Log\n\n| 2027-03-16 |"), "{}", e.text);
    }

    #[test]
    fn xlsx_huge_column_reference_is_bounded() {
        let wb = r#"<workbook><sheets><sheet name="S" r:id="rId1"/></sheets></workbook>"#;
        let rels = r#"<Relationships><Relationship Id="rId1" Type="x/worksheet" Target="s.xml"/></Relationships>"#;
        let s = r#"<worksheet><sheetData><row><c r="ZZZZZZZZZZZZ1"><v>1</v></c><c r="XFD2"><v>2</v></c></row></sheetData></worksheet>"#;
        let z = zip_of(&[
            ("xl/workbook.xml", wb.as_bytes()),
            ("xl/_rels/workbook.xml.rels", rels.as_bytes()),
            ("xl/s.xml", s.as_bytes()),
        ]);
        let e = extract(&z).unwrap();
        assert!(e.text.len() < 200_000, "{}", e.text.len());
        // Each 40-byte row asks for 16384 padded cells: refused long before memory runs out.
        let rows: String = (1..=5_000)
            .map(|i| format!(r#"<row><c r="XFD{i}"><v>1</v></c></row>"#))
            .collect();
        let s = format!("<worksheet><sheetData>{rows}</sheetData></worksheet>");
        let z = zip_of(&[
            ("xl/workbook.xml", wb.as_bytes()),
            ("xl/_rels/workbook.xml.rels", rels.as_bytes()),
            ("xl/s.xml", s.as_bytes()),
        ]);
        assert!(matches!(extract(&z), Err(ExtractError::Invalid(m)) if m.contains("cells")));
    }
}
