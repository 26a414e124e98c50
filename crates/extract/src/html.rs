//! HTML: the main text of a page as Markdown. Scripts, styles, navigation, page headers and
//! footers, forms and elements marked as boilerplate are dropped; `<main>`/`<article>` are
//! preferred when present. Headings become `#` lines and sections, lists `- ` items, table rows
//! `a | b` lines.
//!
//! Built on a WHATWG tokenizer (html5gum) with a small stack of open elements instead of a DOM:
//! memory is linear in the input, the stack is capped, and mis-nested tag soup only costs
//! structure, never text.

use html5gum::{DefaultEmitter, StartTag, Token, Tokenizer};

use super::text::{decode_with, guess_legacy, looks_binary, mostly_utf8};
use super::{ExtractError, Extracted, Section};

/// Largest HTML document read.
pub const MAX_INPUT_BYTES: usize = 64 << 20;
/// Largest text produced.
pub const MAX_OUTPUT_BYTES: usize = 32 << 20;
/// Open elements tracked; deeper ones still give their text, not their structure.
pub const MAX_DEPTH: usize = 256;

/// Whether the bytes start like an HTML document (after a BOM, whitespace, an XML declaration
/// or comments): `<!doctype html`, `<html`, `<head` or `<body`.
pub fn sniff(bytes: &[u8]) -> bool {
    let head = lower_head(bytes);
    let head = head.trim_ascii_start();
    const OPENERS: [&[u8]; 4] = [b"<!doctype html", b"<html", b"<head", b"<body"];
    if OPENERS.iter().any(|o| head.starts_with(o)) {
        return true;
    }
    // XHTML, or a page that starts with a comment.
    (head.starts_with(b"<?xml") || head.starts_with(b"<!--"))
        && OPENERS
            .iter()
            .any(|o| head.windows(o.len()).any(|w| w == *o))
}

/// The first KiB without a UTF-8 BOM, lowercased.
pub(super) fn lower_head(bytes: &[u8]) -> Vec<u8> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    bytes[..bytes.len().min(1024)].to_ascii_lowercase()
}

pub fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ExtractError::Invalid(format!(
            "The HTML file is larger than {} MiB.",
            MAX_INPUT_BYTES >> 20
        )));
    }
    let html = decode_html(bytes)?;
    let mut extracted = Walker::run(&html, true)?;
    if extracted.text.trim().is_empty() {
        // Pages wrapped whole in a <form> or a mislabelled container: keep all but scripts.
        extracted = Walker::run(&html, false)?;
    }
    if extracted.text.trim().is_empty() {
        return Err(ExtractError::Invalid(
            "The HTML file contains no text.".to_owned(),
        ));
    }
    Ok(extracted)
}

/// BOM, then a declared charset (`<meta charset>`, `http-equiv`, XML declaration), then UTF-8
/// or a guessed legacy encoding.
fn decode_html(bytes: &[u8]) -> Result<String, ExtractError> {
    let text = if let Some((encoding, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        decode_with(encoding, &bytes[bom_len..])
    } else if let Some(encoding) = declared_charset(bytes) {
        decode_with(encoding, bytes)
    } else if looks_binary(bytes) {
        return Err(ExtractError::Unsupported(
            "The file is named as HTML but its content is binary.".to_owned(),
        ));
    } else if mostly_utf8(bytes) {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        decode_with(guess_legacy(bytes), bytes)
    };
    if looks_binary(text.as_bytes()) {
        return Err(ExtractError::Unsupported(
            "The file is named as HTML but its content is binary.".to_owned(),
        ));
    }
    Ok(text)
}

pub(super) fn declared_charset(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let head = lower_head(bytes);
    [&b"charset"[..], b"encoding"].iter().find_map(|key| {
        let at = head.windows(key.len()).position(|w| w == *key)? + key.len();
        let rest = head[at..].trim_ascii_start().strip_prefix(b"=")?;
        let rest = rest.trim_ascii_start();
        let rest = rest
            .strip_prefix(b"\"")
            .or(rest.strip_prefix(b"'"))
            .unwrap_or(rest);
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.')))
            .unwrap_or(rest.len());
        let encoding = encoding_rs::Encoding::for_label(&rest[..end])?;
        // A page that reached us as bytes cannot really be UTF-16 when it declares it in ASCII.
        (encoding != encoding_rs::UTF_16LE && encoding != encoding_rs::UTF_16BE).then_some(encoding)
    })
}

/// Separators between pieces of text, weakest first; a stronger request wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Sep {
    None,
    Space,
    Cell,
    Line,
    Para,
}

impl Sep {
    fn as_str(self) -> &'static str {
        match self {
            Sep::None => "",
            Sep::Space => " ",
            Sep::Cell => " | ",
            Sep::Line => "\n",
            Sep::Para => "\n\n",
        }
    }
}

/// One output: the text written so far and the separator and prefix owed before the next word.
#[derive(Default)]
struct Writer {
    text: String,
    sections: Vec<Section>,
    pending: Option<Sep>,
    prefix: Option<String>,
    /// The current heading's prefix is pending (`None`) or was written at this offset.
    heading: Option<Option<usize>>,
}

impl Writer {
    fn sep(&mut self, sep: Sep) {
        self.pending = Some(self.pending.map_or(sep, |p| p.max(sep)));
    }

    fn flush(&mut self) {
        if !self.text.is_empty() {
            self.text.push_str(self.pending.map_or("", |p| p.as_str()));
        }
        self.pending = Some(Sep::None);
        if let Some(prefix) = self.prefix.take() {
            if let Some(at @ None) = self.heading.as_mut() {
                *at = Some(self.text.len());
            }
            self.text.push_str(&prefix);
        }
    }

    fn word(&mut self, word: &str) {
        self.flush();
        self.text.push_str(word);
    }

    fn raw(&mut self, text: &str) {
        self.flush();
        self.text.push_str(text);
    }

    fn start_heading(&mut self, level: usize) {
        self.sep(Sep::Para);
        self.prefix = Some(format!("{} ", "#".repeat(level)));
        self.heading = Some(None);
    }

    fn end_heading(&mut self, title: &str) {
        if let Some(Some(start)) = self.heading.take() {
            self.sections.push(Section::heading(start, title));
        }
        self.prefix = None;
        self.sep(Sep::Para);
    }
}

/// What an open element means for the walk.
struct Open {
    name: Vec<u8>,
    skip: bool,
    main: bool,
}

struct Walker {
    strict: bool,
    stack: Vec<Open>,
    /// Open elements whose content is dropped.
    skipping: usize,
    /// Open `<main>`/`<article>` elements.
    in_main: usize,
    /// Inside a raw-text element (script, style, …) that is dropped wherever it is.
    in_raw: bool,
    in_pre: usize,
    pre_fresh: bool,
    lists: usize,
    heading: Option<String>,
    all: Writer,
    main: Writer,
}

/// Elements whose content is never text for a reader.
const DROPPED: &[&[u8]] = &[
    b"script",
    b"style",
    b"noscript",
    b"template",
    b"svg",
    b"math",
    b"iframe",
    b"object",
    b"embed",
    b"canvas",
    b"head",
    b"title",
    b"select",
    b"button",
    b"textarea",
    b"dialog",
];
/// Page furniture, dropped in strict mode.
const BOILERPLATE: &[&[u8]] = &[b"nav", b"aside", b"form", b"menu"];
/// Class/id words that mark navigation and boilerplate.
const BOILERPLATE_WORDS: &[&str] = &[
    "nav",
    "navbar",
    "navigation",
    "navheader",
    "navfooter",
    "menu",
    "menubar",
    "breadcrumb",
    "breadcrumbs",
    "sidebar",
    "footer",
    "cookie",
    "cookies",
    "skiplink",
];
const BOILERPLATE_ROLES: &[&str] = &[
    "navigation",
    "menu",
    "menubar",
    "banner",
    "contentinfo",
    "complementary",
    "search",
];
/// Elements that may hold `<head>` content; anything else closes an open head.
const HEAD_CONTENT: &[&[u8]] = &[
    b"title",
    b"meta",
    b"link",
    b"style",
    b"script",
    b"base",
    b"noscript",
    b"template",
];
const VOID: &[&[u8]] = &[
    b"area", b"base", b"br", b"col", b"embed", b"hr", b"img", b"input", b"link", b"meta", b"param",
    b"source", b"track", b"wbr",
];
const BLOCK: &[&[u8]] = &[
    b"address",
    b"article",
    b"aside",
    b"blockquote",
    b"body",
    b"caption",
    b"center",
    b"dd",
    b"details",
    b"dialog",
    b"dir",
    b"div",
    b"dl",
    b"dt",
    b"fieldset",
    b"figcaption",
    b"figure",
    b"footer",
    b"form",
    b"header",
    b"hgroup",
    b"hr",
    b"html",
    b"legend",
    b"main",
    b"menu",
    b"nav",
    b"ol",
    b"p",
    b"pre",
    b"section",
    b"summary",
    b"table",
    b"tbody",
    b"tfoot",
    b"thead",
    b"ul",
    b"li",
    b"tr",
    b"h1",
    b"h2",
    b"h3",
    b"h4",
    b"h5",
    b"h6",
];
/// Phrasing elements: a `<p>` stays open across them.
const INLINE: &[&[u8]] = &[
    b"a", b"abbr", b"b", b"bdi", b"bdo", b"cite", b"code", b"data", b"dfn", b"em", b"font", b"i",
    b"kbd", b"mark", b"q", b"s", b"samp", b"small", b"span", b"strong", b"sub", b"sup", b"time",
    b"tt", b"u", b"var", b"label", b"big", b"strike", b"del", b"ins", b"nobr",
];

fn heading_level(name: &[u8]) -> Option<usize> {
    match name {
        [b'h', d @ b'1'..=b'6'] => Some(usize::from(d - b'0')),
        _ => None,
    }
}

fn attr<'t>(tag: &'t StartTag<()>, name: &str) -> Option<&'t [u8]> {
    tag.attributes
        .get(name.as_bytes())
        .map(|v| v.value.as_slice())
}

/// Whether class/id/role/hidden mark the element as boilerplate. `has-sidebar`-style state
/// classes on wrappers do not count.
fn marked_boilerplate(tag: &StartTag<()>) -> bool {
    if tag.attributes.contains_key(&b"hidden"[..])
        || attr(tag, "aria-hidden").is_some_and(|v| v.eq_ignore_ascii_case(b"true"))
    {
        return true;
    }
    if let Some(role) = attr(tag, "role") {
        let role = String::from_utf8_lossy(role).to_ascii_lowercase();
        if BOILERPLATE_ROLES.contains(&role.trim()) {
            return true;
        }
    }
    ["class", "id"]
        .iter()
        .filter_map(|a| attr(tag, a))
        .any(|value| {
            let value = String::from_utf8_lossy(value).to_ascii_lowercase();
            value.split_ascii_whitespace().any(|token| {
                let mut words = token.split(['-', '_']);
                let first = words.next().unwrap_or_default();
                !matches!(
                    first,
                    "has" | "no" | "with" | "without" | "show" | "hide" | "is"
                ) && std::iter::once(first)
                    .chain(words)
                    .any(|w| BOILERPLATE_WORDS.contains(&w))
            })
        })
}

impl Walker {
    fn run(html: &str, strict: bool) -> Result<Extracted, ExtractError> {
        let mut emitter = DefaultEmitter::default();
        emitter.naively_switch_states(true);
        let mut walker = Walker {
            strict,
            stack: Vec::new(),
            skipping: 0,
            in_main: 0,
            in_raw: false,
            in_pre: 0,
            pre_fresh: false,
            lists: 0,
            heading: None,
            all: Writer::default(),
            main: Writer::default(),
        };
        for token in Tokenizer::new_with_emitter(html, emitter) {
            let Ok(token) = token;
            match token {
                Token::StartTag(tag) => walker.start(&tag),
                Token::EndTag(tag) => walker.end(&tag.name),
                Token::String(s) => walker.chars(&String::from_utf8_lossy(&s.value)),
                Token::Comment(_) | Token::Doctype(_) | Token::Error(_) => {}
            }
            if walker.all.text.len() > MAX_OUTPUT_BYTES {
                return Err(ExtractError::Invalid(format!(
                    "The HTML file yields more than {} MiB of text.",
                    MAX_OUTPUT_BYTES >> 20
                )));
            }
        }
        while !walker.stack.is_empty() {
            walker.pop();
        }
        let out = if walker.main.text.trim().is_empty() {
            walker.all
        } else {
            walker.main
        };
        Ok(Extracted {
            text: out.text,
            format: "markdown",
            sections: out.sections,
        })
    }

    fn writers(&mut self) -> impl Iterator<Item = &mut Writer> {
        let main = self.in_main > 0;
        std::iter::once(&mut self.all).chain(main.then_some(&mut self.main))
    }

    fn visible(&self) -> bool {
        self.skipping == 0 && !self.in_raw
    }

    fn sep(&mut self, sep: Sep) {
        if self.visible() {
            self.writers().for_each(|w| w.sep(sep));
        }
    }

    fn start(&mut self, tag: &StartTag<()>) {
        let name = tag.name.as_slice();
        if self.in_raw {
            return;
        }
        if name != b"head" && !HEAD_CONTENT.contains(&name) {
            self.close(b"head");
        }
        self.implied_ends(name);
        if name == b"br" {
            self.sep(Sep::Line);
            return;
        }
        if VOID.contains(&name) {
            if name == b"hr" {
                self.sep(Sep::Para);
            }
            if name == b"img" && self.visible() {
                // An image's text alternative is part of what the page says.
                if let Some(alt) = attr(tag, "alt").map(String::from_utf8_lossy) {
                    if alt.chars().any(char::is_alphanumeric) {
                        self.chars(&format!(" {} ", alt.trim()));
                    }
                }
            }
            return;
        }
        let raw = html5gum::naive_next_state(name).is_some();
        let drop = DROPPED.contains(&name)
            || (self.strict
                && !matches!(name, b"html" | b"body" | b"main" | b"article")
                && (BOILERPLATE.contains(&name)
                    || (matches!(name, b"header" | b"footer") && self.in_main == 0)
                    || marked_boilerplate(tag)));
        if raw && drop {
            // The tokenizer reads everything up to the matching end tag as one string (even
            // after `<script/>`): drop it without tracking the element.
            self.in_raw = true;
            return;
        }
        if tag.self_closing {
            return;
        }
        let main = self.strict
            && (matches!(name, b"main" | b"article")
                || attr(tag, "role").is_some_and(|r| r.eq_ignore_ascii_case(b"main")));
        self.open_effects(name);
        if self.stack.len() < MAX_DEPTH {
            self.skipping += usize::from(drop);
            self.in_main += usize::from(main);
            self.stack.push(Open {
                name: name.to_vec(),
                skip: drop,
                main,
            });
        }
    }

    /// Tags that close an open sibling without an end tag (`<p>`, `<li>`, cells, rows).
    fn implied_ends(&mut self, name: &[u8]) {
        let closes: &[&[u8]] = match name {
            b"li" => &[b"li"],
            b"dt" | b"dd" => &[b"dt", b"dd"],
            b"tr" => &[b"tr", b"td", b"th"],
            b"td" | b"th" => &[b"td", b"th"],
            _ => &[],
        };
        let scope: &[&[u8]] = match name {
            b"li" => &[b"ul", b"ol", b"menu"],
            b"dt" | b"dd" => &[b"dl"],
            b"tr" | b"td" | b"th" => &[b"table"],
            _ => &[],
        };
        for open in self.stack.iter().rev().take_while(|_| !closes.is_empty()) {
            if scope.contains(&open.name.as_slice()) {
                break;
            }
            if closes.contains(&open.name.as_slice()) {
                let target = open.name.clone();
                self.close(&target);
                break;
            }
        }
        if BLOCK.contains(&name) {
            // A block start closes a <p> open across inline elements only.
            for open in self.stack.iter().rev() {
                if open.name == b"p" {
                    self.close(b"p");
                    break;
                }
                if !INLINE.contains(&open.name.as_slice()) {
                    break;
                }
            }
        }
    }

    fn open_effects(&mut self, name: &[u8]) {
        if !self.visible() {
            return;
        }
        if let Some(level) = heading_level(name) {
            self.heading = Some(String::new());
            self.writers().for_each(|w| w.start_heading(level));
            return;
        }
        match name {
            b"ul" | b"ol" | b"menu" | b"dir" => {
                self.lists += 1;
                self.sep(if self.lists > 1 { Sep::Line } else { Sep::Para });
            }
            b"li" => {
                let prefix = format!("{}- ", "  ".repeat(self.lists.saturating_sub(1)));
                self.writers().for_each(|w| {
                    w.sep(Sep::Line);
                    w.prefix = Some(prefix.clone());
                });
            }
            b"tr" => self.sep(Sep::Line),
            b"td" | b"th" => self.sep(Sep::Cell),
            b"pre" => {
                self.sep(Sep::Para);
                self.writers().for_each(|w| w.raw("```\n"));
                self.in_pre += 1;
                self.pre_fresh = true;
            }
            _ if BLOCK.contains(&name) => self.sep(Sep::Para),
            _ => {}
        }
    }

    fn close_effects(&mut self, name: &[u8]) {
        if !self.visible() {
            return;
        }
        if heading_level(name).is_some() {
            let title = self.heading.take().unwrap_or_default();
            let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
            self.writers().for_each(|w| w.end_heading(&title));
            return;
        }
        match name {
            b"ul" | b"ol" | b"menu" | b"dir" => {
                self.lists = self.lists.saturating_sub(1);
                self.sep(Sep::Para);
            }
            b"li" | b"tr" => self.sep(Sep::Line),
            b"pre" => {
                self.in_pre = self.in_pre.saturating_sub(1);
                self.writers().for_each(|w| {
                    if !w.text.ends_with('\n') {
                        w.raw("\n");
                    }
                    w.raw("```");
                    w.sep(Sep::Para);
                });
            }
            _ if BLOCK.contains(&name) => self.sep(Sep::Para),
            _ => {}
        }
    }

    fn end(&mut self, name: &[u8]) {
        if self.in_raw {
            // In a raw-text state the tokenizer only ends at the element's own end tag.
            self.in_raw = false;
            return;
        }
        if name == b"br" {
            self.sep(Sep::Line);
            return;
        }
        self.close(name);
    }

    /// Closes the innermost open element called `name` and everything opened inside it.
    fn close(&mut self, name: &[u8]) {
        if let Some(at) = self.stack.iter().rposition(|o| o.name == name) {
            while self.stack.len() > at {
                self.pop();
            }
        }
    }

    fn pop(&mut self) {
        if let Some(open) = self.stack.pop() {
            self.close_effects(&open.name);
            self.skipping -= usize::from(open.skip);
            self.in_main -= usize::from(open.main);
        }
    }

    fn chars(&mut self, text: &str) {
        if !self.in_raw
            && self.stack.last().is_some_and(|o| o.name == b"head")
            && !text.trim().is_empty()
        {
            // Text directly in <head> starts the body.
            self.close(b"head");
        }
        if !self.visible() {
            return;
        }
        if self.in_pre > 0 {
            let text = if std::mem::take(&mut self.pre_fresh) {
                text.strip_prefix('\n').unwrap_or(text)
            } else {
                text
            };
            self.writers().for_each(|w| w.raw(text));
            return;
        }
        if let Some(heading) = self.heading.as_mut() {
            heading.push_str(text);
        }
        if text.starts_with(char::is_whitespace) {
            self.sep(Sep::Space);
        }
        let mut words = text.split_whitespace().peekable();
        while let Some(word) = words.next() {
            self.writers().for_each(|w| w.word(word));
            if words.peek().is_some() {
                self.sep(Sep::Space);
            }
        }
        if text.ends_with(char::is_whitespace) {
            self.sep(Sep::Space);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn text(html: &str) -> String {
        extract(html.as_bytes()).unwrap().text
    }

    #[test]
    fn sniffs_html_openings() {
        assert!(sniff(b"<!DOCTYPE html><p>x"));
        assert!(sniff(b"\xef\xbb\xbf  \n<HTML lang=en>"));
        assert!(sniff(b"<head><title>t</title>"));
        assert!(sniff(
            b"<?xml version=\"1.0\"?>\n<html xmlns=\"http://www.w3.org/1999/xhtml\">"
        ));
        assert!(sniff(b"<!-- saved page -->\n<html>"));
        assert!(!sniff(b"<?xml version=\"1.0\"?><note>hi</note>"));
        assert!(!sniff(b"plain text mentioning <html> later"));
    }

    #[test]
    fn keeps_main_text_as_markdown() {
        let page = r##"<!doctype html><html><head><title>T</title>
            <style>body { color: red }</style><script>var x = "<p>no</p>";</script></head>
            <body><nav><a href="/">Home</a> | <a href="/a">About</a></nav>
            <header class="site-header">Site name</header>
            <div class="cookie-banner">We use cookies</div>
            <main><h1>Intro &amp; Scope</h1><p>First   paragraph with a <a href="#">link</a>.
            <p>Second&nbsp;one &lt;b&gt;</p>
            <h2>Steps</h2><ul><li>one<li>two<ul><li>nested</li></ul></ul>
            <table><tr><th>k<th>v<tr><td>a<td>1</table>
            <pre>
let x = 1;
  indented</pre>
            </main><footer>Copyright</footer><aside>Related</aside></body></html>"##;
        let e = extract(page.as_bytes()).unwrap();
        assert_eq!(e.format, "markdown");
        assert_eq!(
            e.text,
            "# Intro & Scope\n\nFirst paragraph with a link.\n\nSecond one <b>\n\n\
             ## Steps\n\n- one\n- two\n  - nested\n\nk | v\na | 1\n\n\
             ```\nlet x = 1;\n  indented\n```"
        );
        let sections: Vec<_> = e
            .sections
            .iter()
            .map(|s| (s.start, s.location["section"].as_str().unwrap().to_owned()))
            .collect();
        let steps = e.text.find("## Steps").unwrap();
        assert_eq!(
            sections,
            [(0, "Intro & Scope".to_owned()), (steps, "Steps".to_owned())]
        );
    }

    #[test]
    fn without_main_reads_body_minus_boilerplate() {
        let t = text(
            "<html><body><div id=\"sidebar\">Side</div><div class=\"has-sidebar\">\
             <p>Body text</p><ul class=\"menu\"><li>Menu item</ul></div>\
             <form><input name=q>Search</form><p hidden>Hidden</p></body></html>",
        );
        assert_eq!(t, "Body text");
    }

    #[test]
    fn a_documents_own_contents_and_image_text_are_kept() {
        // A table of contents is part of the document (a page may be nothing else); the site
        // navigation around it is not. Decorative images (empty alt) add nothing.
        let t = text(
            "<html><body><div class=\"navheader\"><a href=p>Prev</a></div>\
             <div class=\"toc\"><p>Table of Contents</p><dl><dt>2.1. Basics</dt></dl></div>\
             <p><img alt=\"[Tip]\" src=t.png><img alt=\"\" src=s.png>Read this.</p></body></html>",
        );
        assert_eq!(t, "Table of Contents\n\n2.1. Basics\n\n[Tip] Read this.");
    }

    #[test]
    fn a_page_inside_one_form_still_yields_text() {
        assert_eq!(
            text("<html><body><form><p>Only content</p></form>"),
            "Only content"
        );
    }

    #[test]
    fn head_without_close_does_not_swallow_the_page() {
        assert_eq!(text("<html><head><title>T</title><p>Body"), "Body");
    }

    #[test]
    fn decodes_declared_and_guessed_charsets() {
        let mut page = b"<html><head><meta charset=\"windows-1252\"></head><p>".to_vec();
        page.extend_from_slice(b"\x93quoted\x94 caf\xe9</p>");
        assert_eq!(extract(&page).unwrap().text, "\u{201c}quoted\u{201d} café");
        let (sjis, _, _) =
            encoding_rs::SHIFT_JIS.encode("<html><p>日本語の文章です。これはテストです。</p>");
        assert_eq!(
            extract(&sjis).unwrap().text,
            "日本語の文章です。これはテストです。"
        );
    }

    #[test]
    fn misnamed_files_are_routed_by_content() {
        use crate::extract as dispatch;
        let html = dispatch(
            b"<!DOCTYPE html><title>t</title><h1>Notes</h1><p>x</p>",
            "notes.txt",
        );
        assert_eq!(html.as_ref().map(|e| e.format), Ok("markdown"));
        assert_eq!(html.map(|e| e.text), Ok("# Notes\n\nx".into()));
        let rtf = dispatch(b"{\\rtf1\\ansi Hello\\par}", "letter.txt");
        assert_eq!(rtf.map(|e| e.text), Ok("Hello".into()));
        let xml = dispatch(
            b"<?xml version=\"1.0\"?><a><b>x</b><c>y</c></a>",
            "data.bin",
        );
        assert_eq!(xml.map(|e| e.text), Ok("x\n\ny".into()));
        let root = dispatch(b"<feed><entry>x</entry></feed>", "feed");
        assert_eq!(root.map(|e| e.text), Ok("x".into()));
        // Text that starts with a tag but is no XML stays text; Markdown stays Markdown.
        let md = dispatch(b"<div>intro</div>\n\n# Title", "readme.md");
        assert_eq!(md.map(|e| e.format), Ok("markdown"));
        let loose = dispatch(b"<b>bold</b> and <i>unclosed", "n.txt");
        assert_eq!(
            loose.map(|e| e.text),
            Ok("<b>bold</b> and <i>unclosed".into())
        );
        // A (broken) PDF named .txt goes to the PDF reader, never read as text.
        assert!(matches!(
            dispatch(b"%PDF-1.7\n%binary", "report.txt"),
            Err(ExtractError::Invalid(_))
        ));
        assert!(matches!(
            dispatch(&[0x7f, b'E', b'L', b'F', 0, 1, 2, 0, 0], "page.html"),
            Err(ExtractError::Unsupported(_))
        ));
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert!(matches!(
            dispatch(&garbage, "page.html"),
            Err(ExtractError::Unsupported(_))
        ));
    }

    #[test]
    fn hostile_inputs_are_bounded() {
        let deep = format!(
            "<html><body>{}deep text{}",
            "<div>".repeat(100_000),
            "</div>".repeat(100_000)
        );
        assert_eq!(text(&deep), "deep text");
        let deep_unclosed = format!("<html>{}x", "<b><i><span>".repeat(40_000));
        assert_eq!(text(&deep_unclosed), "x");
        let line = format!("<html><p>{}</p>", "word ".repeat(400_000));
        assert_eq!(text(&line).len(), 400_000 * 5 - 1);
        assert!(matches!(
            extract(&[0u8, 159, 146, 150, 0, 1, 2, 3, 4, 5, 0, 0, 7]),
            Err(ExtractError::Unsupported(_))
        ));
        let mut bad = b"<html><p>ok \xff\xfe\xc3 fine \xe2\x82</p>".to_vec();
        bad.extend_from_slice(format!("<p>{}</p>", "é è ê ë ".repeat(5)).as_bytes());
        assert!(extract(&bad).unwrap().text.starts_with("ok \u{fffd}"));
        assert!(matches!(
            extract(b"<html><script>x</script>"),
            Err(ExtractError::Invalid(_))
        ));
    }
}
