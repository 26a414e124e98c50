//! EPUB: `META-INF/container.xml` names the package document (OPF), whose spine orders the
//! XHTML chapters. Each chapter becomes Markdown blocks (headings, paragraphs, list items,
//! table rows) by a plain XML walk; scripts, styles and navigation are dropped.

use std::collections::HashMap;

use percent_encoding::percent_decode_str;
use serde_json::json;

use super::super::{ExtractError, Extracted};
use super::xml::{decode, walk, Ev, Skip, Tag};
use super::{collapse, folder, resolve, table, Doc, Package};

const SKIPPED: &[&str] = &[
    "script", "style", "nav", "noscript", "template", "svg", "math",
];
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "li",
    "blockquote",
    "pre",
    "dt",
    "dd",
    "section",
    "article",
    "aside",
    "header",
    "footer",
    "figure",
    "figcaption",
    "caption",
    "ul",
    "ol",
    "dl",
    "hr",
    "body",
    "main",
    "address",
];

#[derive(Default)]
struct Chapter {
    title: Option<String>,
    heading: Option<String>,
    blocks: Vec<String>,
    buf: String,
    level: Option<usize>,
    /// Open `li` elements and open `ul`/`ol` lists (for indentation).
    list_items: usize,
    lists: usize,
    pre: usize,
    in_title: bool,
    tables: Vec<Vec<Vec<String>>>,
    skip: Skip,
}

impl Chapter {
    fn text(&mut self, s: &str) {
        if self.in_title {
            self.title.get_or_insert_with(String::new).push_str(s);
            return;
        }
        if self.pre > 0 {
            self.buf.push_str(s);
            return;
        }
        for ch in s.chars() {
            if ch.is_whitespace() {
                if !self.buf.is_empty() && !self.buf.ends_with([' ', '\n']) {
                    self.buf.push(' ');
                }
            } else {
                self.buf.push(ch);
            }
        }
    }

    /// Ends the block being gathered: into the open table cell, else as a block.
    fn flush(&mut self) {
        let text = std::mem::take(&mut self.buf);
        let text = if self.pre > 0 {
            text.trim_end().to_owned()
        } else {
            text.trim().to_owned()
        };
        if text.is_empty() {
            return;
        }
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
            return;
        }
        let block = if let Some(level) = self.level {
            let h = collapse(&text);
            self.heading.get_or_insert_with(|| h.clone());
            format!("{} {h}", "#".repeat(level))
        } else if self.list_items > 0 {
            let indent = "  ".repeat(self.lists.saturating_sub(1).min(8));
            format!("{indent}- {text}")
        } else {
            text
        };
        self.blocks.push(block);
    }

    fn open(&mut self, t: &Tag) {
        let name = t.name.to_ascii_lowercase();
        match name.as_str() {
            "title" => self.in_title = self.title.is_none(),
            "br" => self.buf.push('\n'),
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.flush();
                self.level = name[1..].parse().ok();
            }
            "table" => {
                self.flush();
                self.tables.push(Vec::new());
            }
            "tr" => {
                self.flush();
                if let Some(tb) = self.tables.last_mut() {
                    tb.push(Vec::new());
                }
            }
            "td" | "th" => {
                self.flush();
                if let Some(row) = self.tables.last_mut().and_then(|t| t.last_mut()) {
                    row.push(String::new());
                }
            }
            n if BLOCKS.contains(&n) => {
                self.flush();
                if n == "pre" {
                    self.pre += 1;
                }
                match n {
                    "li" => self.list_items += 1,
                    "ul" | "ol" => self.lists += 1,
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "title" => self.in_title = false,
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.flush();
                self.level = None;
            }
            "td" | "th" | "tr" => self.flush(),
            "table" => {
                self.flush();
                if let Some(rows) = self.tables.pop() {
                    if self.tables.is_empty() {
                        self.blocks.push(table(&rows));
                    } else {
                        let flat: Vec<String> = rows.iter().map(|r| r.join(" ")).collect();
                        self.buf = flat.join("; ");
                        self.flush();
                    }
                }
            }
            n if BLOCKS.contains(&n) => {
                self.flush();
                if n == "pre" {
                    self.pre = self.pre.saturating_sub(1);
                }
                match n {
                    "li" => self.list_items = self.list_items.saturating_sub(1),
                    "ul" | "ol" => self.lists = self.lists.saturating_sub(1),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

fn chapter(xhtml: &str, part: &str) -> Result<Chapter, ExtractError> {
    let mut ch = Chapter::default();
    walk(xhtml, part, true, |ev| {
        if ch.skip.filter(&ev, SKIPPED) {
            return Ok(());
        }
        match ev {
            Ev::Open(t) => ch.open(t),
            Ev::Close(name) => ch.close(name),
            Ev::Text(s) => ch.text(s),
        }
        Ok(())
    })?;
    ch.flush();
    Ok(ch)
}

/// The spine: chapter part names in reading order.
fn spine(pkg: &mut Package<'_>) -> Result<Vec<String>, ExtractError> {
    let container = pkg.require("META-INF/container.xml", "EPUB")?;
    let mut opf: Option<String> = None;
    let part = "META-INF/container.xml";
    walk(&decode(&container, part)?, part, false, |ev| {
        if let Ev::Open(t) = ev {
            if t.name == "rootfile" && opf.is_none() {
                opf = t.attr("full-path").map(str::to_owned);
            }
        }
        Ok(())
    })?;
    let opf = opf.ok_or_else(|| {
        ExtractError::Invalid("The EPUB file's container.xml names no package document.".into())
    })?;
    let bytes = pkg.require(&opf, "EPUB")?;
    let dir = folder(&opf);
    let mut items: HashMap<String, (String, String)> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    walk(&decode(&bytes, &opf)?, &opf, false, |ev| {
        if let Ev::Open(t) = ev {
            match t.name.as_str() {
                "item" => {
                    if let (Some(id), Some(href)) = (t.attr("id"), t.attr("href")) {
                        let href = percent_decode_str(href).decode_utf8_lossy();
                        let media = t.attr("media-type").unwrap_or_default();
                        items.insert(id.to_owned(), (resolve(dir, &href), media.to_owned()));
                    }
                }
                "itemref" => {
                    if let Some(id) = t.attr("idref") {
                        order.push(id.to_owned());
                    }
                }
                _ => {}
            }
        }
        Ok(())
    })?;
    Ok(order
        .iter()
        .filter_map(|id| items.get(id))
        .filter(|(_, media)| media.is_empty() || media.contains("html") || media.contains("xml"))
        .map(|(part, _)| part.clone())
        .collect())
}

pub(super) fn epub(pkg: &mut Package<'_>) -> Result<Extracted, ExtractError> {
    let parts = spine(pkg)?;
    let mut doc = Doc::default();
    let mut n = 0usize;
    for part in parts {
        // Books in the wild list parts they do not ship; the rest is still readable.
        let Some(bytes) = pkg.read(&part)? else {
            continue;
        };
        let ch = chapter(&decode(&bytes, &part)?, &part)?;
        if ch.blocks.is_empty() {
            continue;
        }
        n += 1;
        let title = ch
            .heading
            .or(ch.title.map(|t| collapse(&t)))
            .filter(|t| !t.is_empty());
        doc.section(json!({ "chapter": n, "title": title }));
        for b in &ch.blocks {
            doc.block(b)?;
        }
    }
    doc.finish("EPUB")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::{json, Value};

    use super::super::extract;
    use super::super::tests::{loc, zip_of};
    use crate::ExtractError;

    const CONTAINER: &[u8] = br#"<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles></container>"#;
    const OPF: &[u8] = br#"<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0"><manifest><item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/><item id="c2" href="text/ch%202.xhtml" media-type="application/xhtml+xml"/><item id="c1" href="text/ch1.xhtml" media-type="application/xhtml+xml"/><item id="css" href="s.css" media-type="text/css"/><item id="gone" href="text/missing.xhtml" media-type="application/xhtml+xml"/></manifest><spine><itemref idref="nav" linear="no"/><itemref idref="c1"/><itemref idref="gone"/><itemref idref="c2"/></spine></package>"#;

    #[test]
    fn epub_chapters_in_spine_order() {
        let nav = r#"<html xmlns="http://www.w3.org/1999/xhtml"><body><nav><ol><li>Contents</li></ol></nav></body></html>"#;
        let c1 = r#"<?xml version="1.0" encoding="utf-8"?><!DOCTYPE html><html xmlns="http://www.w3.org/1999/xhtml"><head><title>One</title><style>p { color: red }</style><script>alert(1)</script></head><body><h1>Chapter  One</h1><p>It was a <em>dark</em>&nbsp;night &amp; more.</p><ul><li>first</li><li>second</li></ul><table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table><pre>  code
  kept</pre></body></html>"#;
        let c2 = r#"<html><head><title>Second title</title></head><body><div><p>Only text<br/>here.</p></div></body></html>"#;
        let z = zip_of(&[
            ("mimetype", b"application/epub+zip"),
            ("META-INF/container.xml", CONTAINER),
            ("OEBPS/content.opf", OPF),
            ("OEBPS/nav.xhtml", nav.as_bytes()),
            ("OEBPS/text/ch1.xhtml", c1.as_bytes()),
            ("OEBPS/text/ch 2.xhtml", c2.as_bytes()),
        ]);
        let e = extract(&z).unwrap();
        assert_eq!(e.format, "markdown");
        assert_eq!(
            e.text,
            "# Chapter One\n\nIt was a dark night & more.\n\n- first\n\n- second\n\n\
             | k | v |\n| --- | --- |\n| a | 1 |\n\n  code\n  kept\n\nOnly text\nhere."
        );
        let locs: Vec<Value> = loc(&e).into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            locs,
            vec![
                json!({"chapter": 1, "title": "Chapter One"}),
                json!({"chapter": 2, "title": "Second title"})
            ]
        );
    }

    #[test]
    fn epub_missing_parts_and_hostile_chapters() {
        let z = zip_of(&[("mimetype", b"application/epub+zip")]);
        assert!(
            matches!(extract(&z), Err(ExtractError::Invalid(m)) if m.contains("container.xml"))
        );
        let z = zip_of(&[
            ("mimetype", b"application/epub+zip"),
            ("META-INF/container.xml", CONTAINER),
        ]);
        assert!(matches!(extract(&z), Err(ExtractError::Invalid(m)) if m.contains("content.opf")));
        let deep = format!("<html><body>{}</body></html>", "<div>".repeat(1000));
        let z = zip_of(&[
            ("mimetype", b"application/epub+zip"),
            ("META-INF/container.xml", CONTAINER),
            ("OEBPS/content.opf", OPF),
            ("OEBPS/text/ch1.xhtml", deep.as_bytes()),
        ]);
        assert!(matches!(extract(&z), Err(ExtractError::Invalid(m)) if m.contains("deep")));
        let bad = b"<html><body><p>caf\xe9</p></body></html>";
        let z = zip_of(&[
            ("mimetype", b"application/epub+zip"),
            ("META-INF/container.xml", CONTAINER),
            ("OEBPS/content.opf", OPF),
            ("OEBPS/text/ch1.xhtml", bad),
        ]);
        assert!(matches!(extract(&z), Err(ExtractError::Invalid(m)) if m.contains("UTF-8")));
    }
}
