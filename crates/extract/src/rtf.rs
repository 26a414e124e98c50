//! RTF: the body text, one paragraph per `\par` block. Hex escapes are decoded with the
//! document's `\ansicpg` code page, `\uN` escapes as Unicode (skipping the `\ucN` fallback
//! characters), and destinations that are not body text (font and colour tables, stylesheet,
//! document info, pictures, objects, page headers and footers, field instructions, `{\*…}`)
//! are skipped.

use encoding_rs::Encoding;

use super::{ExtractError, Extracted, Section};

/// Marks a heading paragraph in the raw output (followed by its level digit, 1-6) and its end;
/// [`headings`] turns them into `#` lines and sections. The same characters coming from the
/// document are dropped, so they cannot forge a heading.
const HEADING_START: char = '\u{E000}';
const HEADING_END: char = '\u{E001}';

/// Largest RTF document read.
pub const MAX_INPUT_BYTES: usize = 64 << 20;
/// Largest text produced.
pub const MAX_OUTPUT_BYTES: usize = 32 << 20;
/// Group states kept; deeper groups inherit their parent's state.
pub const MAX_DEPTH: usize = 512;

/// Whether the bytes start like RTF (`{\rtf`, after whitespace or a UTF-8 BOM).
pub fn sniff(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    bytes.trim_ascii_start().starts_with(b"{\\rtf")
}

/// Destinations whose content is not body text.
const SKIPPED_DESTINATIONS: &[&[u8]] = &[
    b"fonttbl",
    b"colortbl",
    b"stylesheet",
    b"info",
    b"pict",
    b"object",
    b"objdata",
    b"header",
    b"headerl",
    b"headerr",
    b"headerf",
    b"footer",
    b"footerl",
    b"footerr",
    b"footerf",
    b"listtable",
    b"listoverridetable",
    b"revtbl",
    b"rsidtbl",
    b"generator",
    b"xmlnstbl",
    b"themedata",
    b"colorschememapping",
    b"datastore",
    b"latentstyles",
    b"fldinst",
    b"listtext",
    b"pntext",
    b"pntxta",
    b"pntxtb",
    b"nonshppict",
    b"filetbl",
    b"pgdsctbl",
    b"mmathPr",
    b"datafield",
    b"bkmkstart",
    b"bkmkend",
    b"shpinst",
    b"sp",
    b"sn",
    b"sv",
    b"template",
    b"atnid",
    b"atnauthor",
    b"annotation",
    b"ftnsep",
    b"ftnsepc",
    b"ftncn",
    b"aftnsep",
    b"aftnsepc",
    b"aftncn",
    b"private",
    b"userprops",
];

#[derive(Clone, Copy)]
struct Group {
    /// Inside a destination whose text is dropped.
    skip: bool,
    /// Fallback characters after each `\uN` (`\ucN`).
    uc: usize,
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    encoding: &'static Encoding,
    groups: Vec<Group>,
    /// Groups opened past [`MAX_DEPTH`], still to be closed.
    overflow: usize,
    /// Fallback characters still to drop after a `\uN`.
    to_skip: usize,
    /// Code-page bytes not yet decoded (a double-byte character may span two `\'hh`).
    bytes: Vec<u8>,
    high_surrogate: Option<u16>,
    out: String,
    /// Whether `\ansicpg` may still change the encoding (only before any text).
    seen_text: bool,
    /// The current paragraph's `\outlinelevelN` (0 = heading 1), reset by `\pard`.
    outline: Option<u8>,
    /// A heading marker is open in `out`.
    in_heading: bool,
}

pub fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    if !sniff(bytes) {
        return Err(ExtractError::Invalid(
            "The file is named as RTF but does not start with {\\rtf.".to_owned(),
        ));
    }
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ExtractError::Invalid(format!(
            "The RTF file is larger than {} MiB.",
            MAX_INPUT_BYTES >> 20
        )));
    }
    let mut reader = Reader {
        input: bytes,
        pos: 0,
        encoding: encoding_rs::WINDOWS_1252,
        groups: vec![Group { skip: false, uc: 1 }],
        overflow: 0,
        to_skip: 0,
        bytes: Vec::new(),
        high_surrogate: None,
        out: String::new(),
        seen_text: false,
        outline: None,
        in_heading: false,
    };
    reader.run()?;
    let (text, sections) = headings(&tidy(&reader.out));
    if text.trim().is_empty() {
        return Err(ExtractError::Invalid(
            "The RTF file contains no text.".to_owned(),
        ));
    }
    // With headings the text is Markdown (`#` lines), so chunking can follow them.
    let format = if sections.is_empty() {
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

/// Replaces the heading markers with `#` prefixes and records each heading as a section.
fn headings(raw: &str) -> (String, Vec<Section>) {
    if !raw.contains(HEADING_START) {
        return (raw.replace(HEADING_END, ""), Vec::new());
    }
    let mut text = String::with_capacity(raw.len());
    let mut sections = Vec::new();
    let mut rest = raw;
    while let Some(at) = rest.find(HEADING_START) {
        text.push_str(&rest[..at].replace(HEADING_END, ""));
        rest = &rest[at + HEADING_START.len_utf8()..];
        let mut chars = rest.chars();
        let level = chars
            .next()
            .and_then(|c| c.to_digit(10))
            .unwrap_or(1)
            .clamp(1, 6);
        rest = chars.as_str();
        // A heading ends at its marker, or at the line's end if its paragraph never closed.
        let (end, next) = match (rest.find(HEADING_END), rest.find('\n')) {
            (Some(m), Some(l)) if l < m => (l, l),
            (Some(m), _) => (m, m + HEADING_END.len_utf8()),
            (None, Some(l)) => (l, l),
            (None, None) => (rest.len(), rest.len()),
        };
        let title = rest[..end].replace(HEADING_START, "");
        let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
        rest = &rest[next..];
        if title.is_empty() {
            continue;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push_str("\n\n");
        }
        sections.push(Section::heading(text.len(), &title));
        text.push_str(&"#".repeat(level as usize));
        text.push(' ');
        text.push_str(&title);
    }
    text.push_str(&rest.replace(HEADING_END, ""));
    (text, sections)
}

/// Trailing spaces off every line; at most one blank line between paragraphs.
fn tidy(raw: &str) -> String {
    let mut text = String::with_capacity(raw.len());
    let mut blank_run = 0;
    for line in raw.split('\n').map(str::trim_end) {
        if line.trim().is_empty() {
            blank_run += 1;
            continue;
        }
        if !text.is_empty() {
            text.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        text.push_str(line);
    }
    text
}

/// The encoding of a Windows/Mac code page number; `None` for ones we do not know.
fn code_page(number: i32) -> Option<&'static Encoding> {
    let label: &[u8] = match number {
        437 | 850 | 1252 | 28591 | 20127 => b"windows-1252",
        65001 => b"utf-8",
        10000 => b"macintosh",
        10007 => b"x-mac-cyrillic",
        932 => b"shift_jis",
        936 => b"gbk",
        949 => b"euc-kr",
        950 => b"big5",
        866 => b"ibm866",
        874 => b"windows-874",
        1250..=1258 => return Encoding::for_label(format!("windows-{number}").as_bytes()),
        20866 => b"koi8-r",
        21866 => b"koi8-u",
        28592..=28606 => {
            return Encoding::for_label(format!("iso-8859-{}", number - 28590).as_bytes())
        }
        _ => return None,
    };
    Encoding::for_label(label)
}

impl Reader<'_> {
    fn group(&self) -> Group {
        self.groups
            .last()
            .copied()
            .unwrap_or(Group { skip: false, uc: 1 })
    }

    fn group_mut(&mut self) -> Option<&mut Group> {
        self.groups.last_mut()
    }

    fn run(&mut self) -> Result<(), ExtractError> {
        while let Some(&b) = self.input.get(self.pos) {
            self.pos += 1;
            match b {
                b'{' => {
                    self.flush();
                    self.to_skip = 0;
                    if self.groups.len() < MAX_DEPTH {
                        self.groups.push(self.group());
                    } else {
                        self.overflow += 1;
                    }
                }
                b'}' => {
                    self.flush();
                    self.to_skip = 0;
                    if self.overflow > 0 {
                        self.overflow -= 1;
                    } else if self.groups.len() > 1 {
                        self.groups.pop();
                    } else {
                        // The document's closing brace: anything after it is not RTF.
                        break;
                    }
                }
                b'\\' => self.control()?,
                b'\r' | b'\n' => {}
                _ => self.text_byte(b),
            }
            if self.out.len() > MAX_OUTPUT_BYTES {
                return Err(ExtractError::Invalid(format!(
                    "The RTF file yields more than {} MiB of text.",
                    MAX_OUTPUT_BYTES >> 20
                )));
            }
        }
        self.flush();
        Ok(())
    }

    fn text_byte(&mut self, b: u8) {
        if self.to_skip > 0 {
            self.to_skip -= 1;
            return;
        }
        if !self.group().skip {
            self.seen_text = true;
            self.bytes.push(b);
        }
    }

    /// Decodes pending code-page bytes into the output.
    fn flush(&mut self) {
        if !self.bytes.is_empty() {
            let (text, _) = self.encoding.decode_without_bom_handling(&self.bytes);
            let text = text.into_owned();
            self.bytes.clear();
            self.emit(&text);
        }
    }

    fn push_str(&mut self, s: &str) {
        if !self.group().skip {
            self.flush();
            self.seen_text = true;
            self.emit(s);
        }
    }

    /// Visible text into the output, opening a heading marker at the first visible character
    /// of an outline-level paragraph.
    fn emit(&mut self, s: &str) {
        if let (Some(level), false) = (self.outline, self.in_heading) {
            if s.chars().any(|c| !c.is_whitespace()) {
                self.out.push(HEADING_START);
                self.out.push(char::from(b'1' + level));
                self.in_heading = true;
            }
        }
        if s.contains([HEADING_START, HEADING_END]) {
            self.out.extend(
                s.chars()
                    .filter(|&c| c != HEADING_START && c != HEADING_END),
            );
        } else {
            self.out.push_str(s);
        }
    }

    /// A paragraph ends: close its heading marker, if any.
    fn end_paragraph(&mut self) {
        if !self.group().skip {
            self.flush();
            if self.in_heading {
                self.out.push(HEADING_END);
                self.in_heading = false;
            }
        }
    }

    fn control(&mut self) -> Result<(), ExtractError> {
        let Some(&c) = self.input.get(self.pos) else {
            return Ok(());
        };
        self.pos += 1;
        match c {
            b'\'' => {
                let hex = self.input.get(self.pos..self.pos + 2);
                let byte = hex
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = byte {
                    self.pos += 2;
                    self.text_byte(byte);
                }
            }
            b'\\' | b'{' | b'}' => self.text_byte(c),
            b'*' => {
                if let Some(g) = self.group_mut() {
                    g.skip = true;
                }
            }
            b'~' => self.push_str("\u{a0}"),
            b'_' => self.push_str("\u{2011}"),
            b'\r' | b'\n' => self.push_str("\n\n"),
            c if c.is_ascii_alphabetic() => self.control_word()?,
            _ => {}
        }
        Ok(())
    }

    fn control_word(&mut self) -> Result<(), ExtractError> {
        let start = self.pos - 1;
        while self
            .input
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_alphabetic())
            && self.pos - start < 32
        {
            self.pos += 1;
        }
        let word = &self.input[start..self.pos];
        let digits_start = self.pos;
        if self.input.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        while self.input.get(self.pos).is_some_and(u8::is_ascii_digit)
            && self.pos - digits_start < 11
        {
            self.pos += 1;
        }
        let param = std::str::from_utf8(&self.input[digits_start..self.pos])
            .ok()
            .and_then(|p| p.parse::<i64>().ok());
        if self.input.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
        if word != b"u" {
            // Only \'hh and plain characters count as \u fallbacks; a control word ends them.
            self.to_skip = 0;
        }
        match word {
            b"par" | b"sect" | b"page" => {
                self.end_paragraph();
                self.push_str("\n\n");
            }
            b"pard" => {
                self.end_paragraph();
                self.outline = None;
            }
            // Word, LibreOffice and pandoc mark heading paragraphs with their outline level.
            b"outlinelevel" => {
                self.outline = param.and_then(|p| u8::try_from(p).ok()).filter(|&p| p < 6);
            }
            b"line" | b"row" => self.push_str("\n"),
            b"tab" => self.push_str("\t"),
            b"cell" => self.push_str(" | "),
            b"emdash" => self.push_str("\u{2014}"),
            b"endash" => self.push_str("\u{2013}"),
            b"bullet" => self.push_str("\u{2022}"),
            b"lquote" => self.push_str("\u{2018}"),
            b"rquote" => self.push_str("\u{2019}"),
            b"ldblquote" => self.push_str("\u{201c}"),
            b"rdblquote" => self.push_str("\u{201d}"),
            b"emspace" | b"enspace" | b"qmspace" => self.push_str(" "),
            b"uc" => {
                let uc = param.unwrap_or(1).clamp(0, 16) as usize;
                if let Some(g) = self.group_mut() {
                    g.uc = uc;
                }
            }
            b"u" => {
                let unit = param.unwrap_or(0).rem_euclid(65_536) as u16;
                self.unicode(unit);
                self.to_skip = self.group().uc;
            }
            b"ansicpg" => {
                if let Some(encoding) = param
                    .and_then(|p| i32::try_from(p).ok())
                    .and_then(code_page)
                {
                    if !self.seen_text {
                        self.flush();
                        self.encoding = encoding;
                    }
                }
            }
            b"mac" if !self.seen_text => self.encoding = encoding_rs::MACINTOSH,
            b"bin" => {
                // Raw binary data of the given length.
                self.flush();
                let len = usize::try_from(param.unwrap_or(0).max(0)).unwrap_or(usize::MAX);
                self.pos = self.pos.saturating_add(len).min(self.input.len());
            }
            w if SKIPPED_DESTINATIONS.contains(&w) => {
                if let Some(g) = self.group_mut() {
                    g.skip = true;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn unicode(&mut self, unit: u16) {
        let units: Vec<u16> = match (self.high_surrogate.take(), unit) {
            (None, 0xd800..=0xdbff) => {
                self.high_surrogate = Some(unit);
                return;
            }
            (Some(high), 0xdc00..=0xdfff) => vec![high, unit],
            (Some(high), _) => vec![high, unit],
            (None, _) => vec![unit],
        };
        let s: String = char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect();
        self.push_str(&s);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn text(rtf: &[u8]) -> String {
        extract(rtf).unwrap().text
    }

    #[test]
    fn outline_levels_become_headings_and_sections() {
        // As pandoc and Word write them: \outlinelevelN in the paragraph's properties.
        let rtf = br#"{\rtf1\ansi{\fonttbl{\f0 Times;}}
{\pard \ql \f0 \sa180 \outlinelevel0 \b \fs36 Field {\i Guide}\par}
{\pard \ql \f0 \sa180 Intro text \u57344? here.\par}
{\pard \ql \f0 \outlinelevel1 \b Counts\par}
{\pard \ql Heron 12\par}
\pard\outlinelevel2 Unclosed heading}"#;
        let e = extract(rtf).unwrap();
        assert_eq!(
            e.text,
            "# Field Guide\n\nIntro text  here.\n\n## Counts\n\nHeron 12\n\n### Unclosed heading"
        );
        assert_eq!(e.format, "markdown");
        let got: Vec<(&str, &str)> = e
            .sections
            .iter()
            .map(|s| {
                (
                    e.text[s.start..].lines().next().unwrap(),
                    s.location["section"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("# Field Guide", "Field Guide"),
                ("## Counts", "Counts"),
                ("### Unclosed heading", "Unclosed heading")
            ]
        );
        // Without outline levels: plain text, no sections.
        let e = extract(br"{\rtf1 Just text\par}").unwrap();
        assert_eq!((e.format, e.sections.len()), ("text", 0));
    }

    #[test]
    fn reads_body_paragraphs_and_escapes() {
        let rtf = br#"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0\fswiss Helvetica;}{\f1 Times;}}
{\colortbl;\red255\green0\blue0;}{\stylesheet{\s1 heading 1;}}
{\info{\title Secret title}{\author Someone}}
{\*\generator Writer 1.0;}{\header Page header\par}
\pard\plain\f0 Hello \b bold\b0  world.\par
Caf\'e9 cr\'e8me \ldblquote quoted\rdblquote\par
\par
Unicode: \u8364\'80 and \uc2\u26085\'93\'fa done\uc1\par
{\*\bkmkstart x}Tab\tab stop\line next line\par
{\pict\pngblip 89504e470d0a1a0a}Escaped \{braces\} and \\backslash\par
{\field{\*\fldinst HYPERLINK "http://x"}{\fldrslt link text}}\par
Surrogates: \u-10179?\u-8704?\par}"#;
        assert_eq!(
            text(rtf),
            "Hello bold world.\n\nCafé crème \u{201c}quoted\u{201d}\n\n\
             Unicode: € and 日 done\n\nTab\tstop\nnext line\n\n\
             Escaped {braces} and \\backslash\n\nlink text\n\nSurrogates: 😀"
        );
    }

    #[test]
    fn decodes_with_the_declared_code_page() {
        // "日本" in Shift-JIS is 93 fa 96 7b.
        assert_eq!(text(br"{\rtf1\ansi\ansicpg932 \'93\'fa\'96\'7b}"), "日本");
        assert_eq!(
            text(br"{\rtf1\ansi\ansicpg1251 \'cf\'f0\'e8\'e2\'e5\'f2}"),
            "Привет"
        );
    }

    #[test]
    fn refuses_non_rtf_and_empty() {
        assert!(matches!(extract(b"hello"), Err(ExtractError::Invalid(_))));
        assert!(matches!(
            extract(br"{\rtf1{\fonttbl{\f0 Arial;}}}"),
            Err(ExtractError::Invalid(_))
        ));
        assert!(sniff(b"\xef\xbb\xbf \n{\\rtf1 x}"));
    }

    #[test]
    fn hostile_inputs_are_bounded() {
        let mut deep = b"{\\rtf1 ".to_vec();
        deep.extend(std::iter::repeat_n(b'{', 100_000));
        deep.extend_from_slice(b"deep");
        deep.extend(std::iter::repeat_n(b'}', 100_000));
        deep.extend_from_slice(b" after}");
        assert_eq!(text(&deep), "deep after");
        let mut unclosed = b"{\\rtf1 start".to_vec();
        unclosed.extend(std::iter::repeat_n(b'{', 200_000));
        assert_eq!(text(&unclosed), "start");
        let line = format!("{{\\rtf1 {}}}", "word ".repeat(400_000));
        assert_eq!(text(line.as_bytes()).len(), 400_000 * 5 - 1);
        assert_eq!(text(b"{\\rtf1 a\\bin99999999999999999999 zzz}"), "a");
        assert!(text(b"{\\rtf1 x\\u99999999999999999 \\uc99999999 y\\").ends_with('y'));
        assert_eq!(
            text(b"{\\rtf1 bad \\'zz utf8 \xff\xfe}"),
            "bad zz utf8 \u{ff}\u{fe}"
        );
    }
}
