//! Generic XML: the text content of the elements, one block per element that holds text.
//! Elements that start in the middle of text (`<para>Run <cmd>ls</cmd> now</para>`) stay inline.
//! Entities are never expanded beyond the five predefined ones and character references, so
//! a DTD cannot multiply the input (billion laughs); attributes, comments and processing
//! instructions are not text.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::{ExtractError, Extracted};

/// Largest XML document read.
pub const MAX_INPUT_BYTES: usize = 64 << 20;
/// Largest text produced.
pub const MAX_OUTPUT_BYTES: usize = 32 << 20;
/// Nesting tracked; deeper elements are treated as inline.
pub const MAX_DEPTH: usize = 256;

/// `<?xml`, after a BOM and whitespace.
pub fn sniff_declaration(bytes: &[u8]) -> bool {
    start(bytes).starts_with(b"<?xml")
}

/// A whole document in one root element (`<name …>…</name>`, or a comment or doctype first
/// and a tag last): a weaker sign of XML than the declaration, so text that merely starts with
/// a tag is not taken for XML.
pub fn sniff_root(bytes: &[u8]) -> bool {
    let tail = bytes.trim_ascii_end();
    let Some(rest) = start(bytes).strip_prefix(b"<") else {
        return false;
    };
    if rest.starts_with(b"!--") || rest.starts_with(b"!DOCTYPE") {
        return tail.ends_with(b">");
    }
    if !rest
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
    {
        return false;
    }
    let name_len = rest
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.')))
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    tail.strip_suffix(b">")
        .map(<[u8]>::trim_ascii_end)
        .and_then(|t| t.strip_suffix(name))
        .is_some_and(|t| t.ends_with(b"</"))
}

fn start(bytes: &[u8]) -> &[u8] {
    bytes
        .strip_prefix(b"\xef\xbb\xbf")
        .unwrap_or(bytes)
        .trim_ascii_start()
}

pub fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ExtractError::Invalid(format!(
            "The XML file is larger than {} MiB.",
            MAX_INPUT_BYTES >> 20
        )));
    }
    let xml = decode(bytes)?;
    let mut reader = Reader::from_str(&xml);
    let config = reader.config_mut();
    config.check_end_names = false;
    config.allow_unmatched_ends = true;
    config.allow_dangling_amp = true;

    let mut out = Blocks::default();
    let mut skipped_entities = false;
    // Per open element: whether it started inside running text (inline).
    let mut inline: Vec<bool> = Vec::new();
    let mut overflow = 0usize;
    loop {
        let event = reader.read_event().map_err(|e| {
            ExtractError::Invalid(format!(
                "The XML file is malformed near byte {}: {e}",
                reader.error_position()
            ))
        })?;
        match event {
            Event::Start(_) => {
                if inline.len() < MAX_DEPTH {
                    let is_inline = out.has_pending_text();
                    if !is_inline {
                        out.flush();
                    }
                    inline.push(is_inline);
                } else {
                    overflow += 1;
                }
            }
            Event::End(_) => {
                if overflow > 0 {
                    overflow -= 1;
                } else if !inline.pop().unwrap_or(false) {
                    out.flush();
                }
            }
            Event::Empty(_) => {
                if !out.has_pending_text() {
                    out.flush();
                }
            }
            Event::Text(t) => out.push(&t.xml10_content()),
            Event::CData(t) => out.push(&t.xml10_content()),
            Event::GeneralRef(r) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    out.push(c.encode_utf8(&mut [0; 4]));
                } else if let Some(s) = quick_xml::escape::resolve_xml_entity(&r.xml10_content()) {
                    out.push(s);
                } else {
                    // Other entities come from a DTD: never expanded (billion laughs).
                    skipped_entities = true;
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
        if out.text.len() > MAX_OUTPUT_BYTES {
            return Err(ExtractError::Invalid(format!(
                "The XML file yields more than {} MiB of text.",
                MAX_OUTPUT_BYTES >> 20
            )));
        }
    }
    out.flush();
    if out.text.is_empty() {
        return Err(ExtractError::Invalid(if skipped_entities {
            "The XML file contains no text outside entities its DTD declares, and this server \
             does not expand DTD entities."
                .to_owned()
        } else {
            "The XML file contains no text.".to_owned()
        }));
    }
    Ok(Extracted {
        text: out.text,
        format: "text",
        sections: Vec::new(),
    })
}

/// BOM, then the declared encoding, then the text decoder's detection.
fn decode(bytes: &[u8]) -> Result<String, ExtractError> {
    if let Some((encoding, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        return Ok(super::text::decode_with(encoding, &bytes[bom_len..]));
    }
    if let Some(encoding) = super::html::declared_charset(bytes) {
        return Ok(super::text::decode_with(encoding, bytes));
    }
    super::text::decode(bytes).ok_or_else(|| {
        ExtractError::Unsupported("The file is named as XML but its content is binary.".to_owned())
    })
}

/// Text blocks separated by blank lines; whitespace inside a block collapsed.
#[derive(Default)]
struct Blocks {
    text: String,
    current: String,
}

impl Blocks {
    fn has_pending_text(&self) -> bool {
        !self.current.trim().is_empty()
    }

    fn push(&mut self, s: &str) {
        self.current.push_str(s);
        if self.current.len() > MAX_OUTPUT_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let mut words = self.current.split_whitespace().peekable();
        if words.peek().is_some() {
            if !self.text.is_empty() {
                self.text.push_str("\n\n");
            }
            for (i, word) in words.enumerate() {
                if i > 0 {
                    self.text.push(' ');
                }
                self.text.push_str(word);
            }
        }
        self.current.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn text(xml: &str) -> String {
        extract(xml.as_bytes()).unwrap().text
    }

    #[test]
    fn one_block_per_element_with_text() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- catalogue -->
<catalog xmlns:x="urn:x">
  <book id="1"><title>Rust &amp; XML</title><x:price currency="EUR">10</x:price></book>
  <book id="2"><title><![CDATA[<raw> text]]></title><empty/>
    <para>Run <cmd>ls   -l</cmd> now &#x263A;.</para></book>
</catalog>"#;
        assert_eq!(
            text(xml),
            "Rust & XML\n\n10\n\n<raw> text\n\nRun ls -l now \u{263a}."
        );
        assert!(sniff_declaration(xml.as_bytes()));
        assert!(sniff_root(b"\n<catalog a=\"1\"><x>y</x></catalog >\n"));
        assert!(!sniff_root(b"<b>bold</b> and <i>more"));
        assert!(!sniff_root(b"< not a tag"));
    }

    #[test]
    fn decodes_declared_encoding() {
        let mut xml = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>caf".to_vec();
        xml.extend_from_slice(b"\xe9</a>");
        assert_eq!(extract(&xml).unwrap().text, "café");
    }

    #[test]
    fn hostile_inputs_are_bounded() {
        let mut laughs =
            String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
        for i in 1..10 {
            let prev = if i == 1 {
                "lol".to_owned()
            } else {
                format!("lol{}", i - 1)
            };
            laughs.push_str(&format!(
                "<!ENTITY lol{i} \"{}\">\n",
                format!("&{prev};").repeat(10)
            ));
        }
        laughs.push_str("]>\n<lolz>before &lol9; after</lolz>");
        assert_eq!(text(&laughs), "before after");
        let only = laughs.replace("before &lol9; after", "&lol9;");
        assert!(
            matches!(extract(only.as_bytes()), Err(ExtractError::Invalid(m)) if m.contains("does not expand DTD entities"))
        );

        let deep = format!(
            "<r>{}deep{}</r>",
            "<a>".repeat(100_000),
            "</a>".repeat(100_000)
        );
        assert_eq!(text(&deep), "deep");
        let line = format!("<r>{}</r>", "word ".repeat(400_000));
        assert_eq!(text(&line).len(), 400_000 * 5 - 1);
        assert!(matches!(extract(b"<a><b"), Err(ExtractError::Invalid(_))));
        let mut bad = b"<a>ok \xff\xfe\xc3 ".to_vec();
        bad.extend_from_slice(format!("{}</a>", "é".repeat(20)).as_bytes());
        assert!(extract(&bad).unwrap().text.starts_with("ok \u{fffd}"));
        assert!(matches!(
            extract(&[0, 0, 1, 2, 0, 3]),
            Err(ExtractError::Unsupported(_))
        ));
    }
}
