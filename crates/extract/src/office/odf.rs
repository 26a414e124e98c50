//! OpenDocument: ODT (headings, paragraphs, lists, tables, notes as Markdown) and ODS
//! (sheets as table rows), both from `content.xml`.

use serde_json::json;

use super::super::{ExtractError, Extracted};
use super::xml::{decode, walk, Ev, Skip, Tag};
use super::{collapse, table, too_many_cells, Doc, Package, MAX_CELLS};

/// Comments, tracked deletions and the like are not document text.
const SKIPPED: &[&str] = &["annotation", "tracked-changes", "note-citation-body"];
/// Repeated rows/columns holding text are expanded at most this many times (a sheet often
/// repeats empty cells to the last column; those are never expanded).
const MAX_REPEAT: usize = 1_000;
/// A row is never padded wider than this many columns.
const MAX_COLUMNS: usize = 16_384;

#[derive(Default)]
struct Table {
    name: String,
    rows: Vec<Vec<String>>,
    /// Repeat count of the open row.
    row_repeat: usize,
    /// Empty cells seen since the last non-empty one in the open row.
    pending_empty: usize,
    cell: Option<Cell>,
}

/// An open table cell: its value attribute, its paragraphs, its repeat count.
struct Cell {
    value: String,
    paras: Vec<String>,
    repeat: usize,
}

enum Block {
    Heading(String, usize),
    Para(String, Option<usize>),
    Table(Table),
}

#[derive(Default)]
struct Body {
    blocks: Vec<Block>,
    notes: Vec<String>,
    /// Open paragraphs (a frame's text box can sit inside a paragraph): text, heading level.
    paras: Vec<(String, Option<usize>)>,
    tables: Vec<Table>,
    list_depth: usize,
    /// Inside `text:note`: its citation and body paragraphs.
    note: Option<(String, Vec<String>)>,
    in_citation: bool,
    skip: Skip,
    /// Table cells held, padding and repeats included (see [`MAX_CELLS`]).
    cells: usize,
}

fn repeat(t: &Tag, key: &str) -> usize {
    t.attr(key)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, MAX_REPEAT)
}

impl Body {
    fn push(&mut self, s: &str) {
        if self.in_citation {
            if let Some((c, _)) = self.note.as_mut() {
                c.push_str(s);
            }
            return;
        }
        let Some((p, _)) = self.paras.last_mut() else {
            return;
        };
        // Layout whitespace collapses; text:s / text:tab / text:line-break are explicit.
        for ch in s.chars() {
            if ch.is_whitespace() {
                if !p.ends_with(' ') && !p.is_empty() {
                    p.push(' ');
                }
            } else {
                p.push(ch);
            }
        }
    }

    fn push_raw(&mut self, s: &str) {
        if let Some((p, _)) = self.paras.last_mut() {
            p.push_str(s);
        }
    }

    fn open(&mut self, t: &Tag) {
        match t.name.as_str() {
            // A "Title" paragraph is the document's top heading.
            "p" => {
                let title = t.attr("style-name") == Some("Title");
                self.paras.push((String::new(), title.then_some(1)));
            }
            "h" => {
                let level = t
                    .attr("outline-level")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(1)
                    .clamp(1, 6);
                self.paras.push((String::new(), Some(level)));
            }
            "s" => {
                let n = t
                    .attr("c")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(1);
                self.push_raw(&" ".repeat(n.clamp(1, 100)));
            }
            "tab" => self.push_raw("\t"),
            "line-break" => self.push_raw("\n"),
            "list" => self.list_depth += 1,
            "note" => self.note = Some((String::new(), Vec::new())),
            "note-citation" => self.in_citation = true,
            "table" => self.tables.push(Table {
                name: t.attr("name").unwrap_or_default().to_owned(),
                ..Table::default()
            }),
            "table-row" => {
                if let Some(tb) = self.tables.last_mut() {
                    tb.rows.push(Vec::new());
                    tb.row_repeat = repeat(t, "number-rows-repeated");
                    tb.pending_empty = 0;
                }
            }
            "table-cell" | "covered-table-cell" => {
                // A cell without paragraphs may still carry its value as an attribute.
                let value = ["string-value", "value", "boolean-value", "date-value"]
                    .iter()
                    .find_map(|k| t.attr(k))
                    .unwrap_or_default()
                    .to_owned();
                if let Some(tb) = self.tables.last_mut() {
                    let n = t
                        .attr("number-columns-repeated")
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(1)
                        .max(1);
                    tb.cell = Some(Cell {
                        value,
                        paras: Vec::new(),
                        repeat: n,
                    });
                }
            }
            _ => {}
        }
    }

    fn emit(&mut self, text: String, level: Option<usize>) {
        if let Some((_, body)) = self.note.as_mut().filter(|_| !self.in_citation) {
            body.push(text);
            return;
        }
        if let Some(tb) = self.tables.last_mut() {
            if let Some(cell) = tb.cell.as_mut() {
                cell.paras.push(text);
            }
            return;
        }
        match level {
            Some(level) => self.blocks.push(Block::Heading(text, level)),
            None => {
                let list = self.list_depth.checked_sub(1);
                self.blocks.push(Block::Para(text, list));
            }
        }
    }

    fn close(&mut self, name: &str) {
        match name {
            "p" | "h" => {
                let Some((text, level)) = self.paras.pop() else {
                    return;
                };
                let text = text.trim();
                if !text.is_empty() {
                    self.emit(text.to_owned(), level);
                }
            }
            "list" => self.list_depth = self.list_depth.saturating_sub(1),
            "note-citation" => self.in_citation = false,
            "note" => {
                if let Some((citation, body)) = self.note.take() {
                    let mark = collapse(&citation);
                    self.push_raw(&format!("[^{mark}]"));
                    self.notes.push(format!("[^{mark}]: {}", body.join(" ")));
                }
            }
            "table-cell" | "covered-table-cell" => {
                let Some(tb) = self.tables.last_mut() else {
                    return;
                };
                let Some(cell) = tb.cell.take() else { return };
                let n = cell.repeat;
                // Paragraphs are what is displayed; the value attribute is the fallback.
                let text = if cell.paras.is_empty() {
                    cell.value
                } else {
                    cell.paras.join(" ")
                };
                let Some(row) = tb.rows.last_mut() else {
                    return;
                };
                if text.trim().is_empty() {
                    tb.pending_empty = tb.pending_empty.saturating_add(n);
                    return;
                }
                let pad = tb.pending_empty.min(MAX_COLUMNS.saturating_sub(row.len()));
                let copies = n
                    .min(MAX_REPEAT)
                    .min(MAX_COLUMNS.saturating_sub(row.len() + pad));
                self.cells += pad + copies;
                if self.cells > MAX_CELLS {
                    return;
                }
                row.resize(row.len() + pad, String::new());
                tb.pending_empty = 0;
                row.extend(std::iter::repeat_n(text, copies));
            }
            "table-row" => {
                let Some(tb) = self.tables.last_mut() else {
                    return;
                };
                match tb.rows.last() {
                    Some(r) if r.is_empty() => {
                        tb.rows.pop();
                    }
                    Some(r) => {
                        let copies = tb.row_repeat - 1;
                        self.cells += r.len() * copies;
                        if self.cells > MAX_CELLS {
                            return;
                        }
                        let r = r.clone();
                        tb.rows.extend(std::iter::repeat_n(r, copies));
                    }
                    None => {}
                }
            }
            "table" => {
                let Some(tb) = self.tables.pop() else { return };
                if self.tables.is_empty() && self.note.is_none() {
                    self.blocks.push(Block::Table(tb));
                } else {
                    let flat: Vec<String> = tb.rows.iter().map(|r| r.join(" ")).collect();
                    self.emit(flat.join("; "), None);
                }
            }
            _ => {}
        }
    }
}

fn content(pkg: &mut Package<'_>, kind: &str) -> Result<Body, ExtractError> {
    let bytes = pkg.require("content.xml", kind)?;
    let mut body = Body::default();
    walk(
        &decode(&bytes, "content.xml")?,
        "content.xml",
        false,
        |ev| {
            if body.cells > MAX_CELLS {
                return Err(too_many_cells(kind));
            }
            if body.skip.filter(&ev, SKIPPED) {
                return Ok(());
            }
            match ev {
                Ev::Open(t) => body.open(t),
                Ev::Close(name) => body.close(name),
                Ev::Text(s) => body.push(s),
            }
            Ok(())
        },
    )?;
    if body.cells > MAX_CELLS {
        return Err(too_many_cells(kind));
    }
    Ok(body)
}

pub(super) fn odt(pkg: &mut Package<'_>) -> Result<Extracted, ExtractError> {
    let body = content(pkg, "ODT")?;
    let mut doc = Doc::default();
    for block in body.blocks {
        match block {
            Block::Heading(text, level) => {
                let text = collapse(&text);
                doc.section(json!({ "section": text }));
                doc.block(&format!("{} {text}", "#".repeat(level)))?;
            }
            Block::Para(text, None) => doc.block(&text)?,
            Block::Para(text, Some(depth)) => {
                doc.block(&format!("{}- {text}", "  ".repeat(depth.min(8))))?;
            }
            Block::Table(tb) => doc.block(&table(&tb.rows))?,
        }
    }
    if !body.notes.is_empty() {
        doc.section(json!({ "section": "Notes" }));
        for n in &body.notes {
            doc.block(n)?;
        }
    }
    doc.finish("ODT")
}

pub(super) fn ods(pkg: &mut Package<'_>) -> Result<Extracted, ExtractError> {
    let body = content(pkg, "ODS")?;
    let mut doc = Doc::default();
    for block in body.blocks {
        match block {
            Block::Table(tb) if !tb.rows.is_empty() => {
                doc.section(json!({ "sheet": tb.name }));
                doc.block(&format!("## {}", tb.name))?;
                doc.block(&table(&tb.rows))?;
            }
            // Text outside sheets (rare: shapes, forms) is kept as is.
            Block::Heading(text, _) | Block::Para(text, _) => doc.block(&text)?,
            Block::Table(_) => {}
        }
    }
    doc.finish("ODS")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::{json, Value};

    use super::super::extract;
    use super::super::tests::{loc, zip_of};
    use crate::ExtractError;

    fn odf(mime: &str, body: &str) -> Vec<u8> {
        let content = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="o" xmlns:text="t" xmlns:table="tb"><office:automatic-styles/><office:body>{body}</office:body></office:document-content>"#
        );
        zip_of(&[
            ("mimetype", mime.as_bytes()),
            ("META-INF/manifest.xml", b"<manifest/>"),
            ("content.xml", content.as_bytes()),
        ])
    }

    #[test]
    fn odt_headings_paragraphs_lists_tables_notes() {
        let body = r#"<office:text><text:h text:outline-level="1">Intro</text:h><text:p>Hello   <text:span>big</text:span><text:s text:c="2"/>world<text:note text:id="n1" text:note-class="footnote"><text:note-citation>1</text:note-citation><text:note-body><text:p>The note.</text:p></text:note-body></text:note>.</text:p><office:annotation><text:p>a comment</text:p></office:annotation><text:list><text:list-item><text:p>one</text:p><text:list><text:list-item><text:p>two</text:p></text:list-item></text:list></text:list-item></text:list><text:h text:outline-level="2">Data</text:h><table:table table:name="T"><table:table-header-rows><table:table-row><table:table-cell><text:p>k</text:p></table:table-cell><table:table-cell><text:p>v</text:p></table:table-cell></table:table-row></table:table-header-rows><table:table-row><table:table-cell><text:p>a</text:p></table:table-cell><table:table-cell><text:p>1</text:p></table:table-cell></table:table-row></table:table></office:text>"#;
        let e = extract(&odf("application/vnd.oasis.opendocument.text", body)).unwrap();
        assert_eq!(e.format, "markdown");
        assert_eq!(
            e.text,
            "# Intro\n\nHello big  world[^1].\n\n- one\n\n  - two\n\n## Data\n\n| k | v |\n| --- | --- |\n| a | 1 |\n\n[^1]: The note."
        );
        let locs: Vec<Value> = loc(&e).into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            locs,
            vec![
                json!({"section": "Intro"}),
                json!({"section": "Data"}),
                json!({"section": "Notes"})
            ]
        );
    }

    #[test]
    fn ods_sheets_with_repeats() {
        let body = r#"<office:spreadsheet><table:table table:name="Budget"><table:table-column table:number-columns-repeated="1024"/><table:table-row><table:table-cell office:value-type="string"><text:p>Item</text:p></table:table-cell><table:table-cell table:number-columns-repeated="2"/><table:table-cell><text:p>Cost</text:p></table:table-cell><table:table-cell table:number-columns-repeated="1020"/></table:table-row><table:table-row table:number-rows-repeated="2"><table:table-cell office:value-type="float" office:value="1.5"><text:p>1.50</text:p></table:table-cell><table:table-cell office:value-type="float" office:value="7"/></table:table-row><table:table-row table:number-rows-repeated="1048000"><table:table-cell table:number-columns-repeated="1024"/></table:table-row></table:table><table:table table:name="Blank"><table:table-row><table:table-cell/></table:table-row></table:table><table:table table:name="Two"><table:table-row><table:table-cell><text:p>x</text:p></table:table-cell></table:table-row></table:table></office:spreadsheet>"#;
        let e = extract(&odf("application/vnd.oasis.opendocument.spreadsheet", body)).unwrap();
        assert_eq!(
            e.text,
            "## Budget\n\n| Item |  |  | Cost |\n| --- | --- | --- | --- |\n| 1.50 | 7 |\n| 1.50 | 7 |\n\n## Two\n\n| x |\n| --- |"
        );
        let locs: Vec<Value> = loc(&e).into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            locs,
            vec![json!({"sheet": "Budget"}), json!({"sheet": "Two"})]
        );
    }

    #[test]
    fn odf_hostile_and_missing() {
        let z = zip_of(&[("mimetype", b"application/vnd.oasis.opendocument.text")]);
        assert!(matches!(extract(&z), Err(ExtractError::Invalid(m)) if m.contains("content.xml")));
        let huge = r#"<office:spreadsheet><table:table table:name="S"><table:table-row table:number-rows-repeated="999999999"><table:table-cell table:number-columns-repeated="999999999"><text:p>x</text:p></table:table-cell></table:table-row></table:table></office:spreadsheet>"#;
        let e = extract(&odf("application/vnd.oasis.opendocument.spreadsheet", huge)).unwrap();
        assert!(e.text.len() < 5 << 20, "{}", e.text.len());
        // Repeats multiply: a few such rows would ask for billions of cells.
        let rows = r#"<table:table-row table:number-rows-repeated="999999999"><table:table-cell table:number-columns-repeated="999999999"><text:p>x</text:p></table:table-cell></table:table-row>"#.repeat(10);
        let many = format!(
            r#"<office:spreadsheet><table:table table:name="S">{rows}</table:table></office:spreadsheet>"#
        );
        assert!(matches!(
            extract(&odf("application/vnd.oasis.opendocument.spreadsheet", &many)),
            Err(ExtractError::Invalid(m)) if m.contains("cells")
        ));
    }
}
