//! A small streaming XML walker shared by the ZIP-based formats. It never expands entities
//! beyond the five predefined ones and character references (a DTD is skipped, so
//! "billion laughs" has nothing to expand), bounds nesting depth and refuses malformed UTF-8.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::super::ExtractError;

/// Deeper nesting than this is hostile; real documents stay well below 100.
pub(super) const MAX_DEPTH: usize = 256;

/// An opened element: its local name and its attributes (qualified name, value).
pub(super) struct Tag {
    pub name: String,
    attrs: Vec<(String, String)>,
}

impl Tag {
    /// The attribute `key`: an exact qualified name (`r:id`) or, failing that, a local name.
    pub fn attr(&self, key: &str) -> Option<&str> {
        let exact = self.attrs.iter().find(|(k, _)| k == key);
        let local = || {
            self.attrs
                .iter()
                .find(|(k, _)| k.rsplit_once(':').is_some_and(|(_, l)| l == key))
        };
        exact.or_else(local).map(|(_, v)| v.as_str())
    }
}

pub(super) enum Ev<'a> {
    Open(&'a Tag),
    /// The local name of the closed element.
    Close(&'a str),
    Text(&'a str),
}

/// The text of an XML part: UTF-8 (BOM optional) or UTF-16 with a BOM.
pub(super) fn decode<'a>(bytes: &'a [u8], what: &str) -> Result<Cow<'a, str>, ExtractError> {
    let utf16 = |rest: &[u8], le: bool| {
        let units = rest.chunks_exact(2).map(|p| {
            let pair = [p[0], p[1]];
            if le {
                u16::from_le_bytes(pair)
            } else {
                u16::from_be_bytes(pair)
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map(Cow::Owned)
            .map_err(|_| ExtractError::Invalid(format!("{what} is not valid UTF-16.")))
    };
    if let Some(rest) = bytes.strip_prefix(b"\xff\xfe") {
        return utf16(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xfe\xff") {
        return utf16(rest, false);
    }
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    std::str::from_utf8(bytes)
        .map(Cow::Borrowed)
        .map_err(|e| ExtractError::Invalid(format!("{what} is not valid UTF-8 ({e}).")))
}

fn local(name: &str) -> String {
    name.rsplit_once(':').map_or(name, |(_, l)| l).to_owned()
}

fn tag(start: &BytesStart<'_>) -> Tag {
    let attrs = start
        .attributes()
        .with_checks(false)
        .filter_map(Result::ok)
        .map(|a| {
            let key = a.key.as_ref().to_owned();
            let value = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map(Cow::into_owned)
                .unwrap_or_else(|_| a.value.clone().into_owned());
            (key, value)
        })
        .collect();
    Tag {
        name: local(start.local_name().as_ref()),
        attrs,
    }
}

/// The few HTML entities common in XHTML e-books; any other named entity is dropped.
fn html_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "nbsp" => "\u{a0}",
        "mdash" => "\u{2014}",
        "ndash" => "\u{2013}",
        "hellip" => "\u{2026}",
        "lsquo" => "\u{2018}",
        "rsquo" => "\u{2019}",
        "ldquo" => "\u{201c}",
        "rdquo" => "\u{201d}",
        "laquo" => "\u{ab}",
        "raquo" => "\u{bb}",
        "copy" => "\u{a9}",
        "reg" => "\u{ae}",
        "trade" => "\u{2122}",
        "shy" => "",
        _ => return None,
    })
}

/// Walks `xml`, calling `on` for each element opened and closed and each piece of text.
/// `lenient` (for XHTML) tolerates mismatched end tags and stops quietly at a syntax error,
/// keeping what was read; the depth limit always fails.
pub(super) fn walk(
    xml: &str,
    what: &str,
    lenient: bool,
    mut on: impl FnMut(Ev<'_>) -> Result<(), ExtractError>,
) -> Result<(), ExtractError> {
    let mut reader = Reader::from_str(xml);
    let config = reader.config_mut();
    config.check_end_names = !lenient;
    config.allow_unmatched_ends = lenient;
    config.allow_dangling_amp = lenient;
    let mut depth = 0usize;
    loop {
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(_) if lenient => return Ok(()),
            Err(e) => {
                return Err(ExtractError::Invalid(format!(
                    "{what} is not well-formed XML: {e}."
                )))
            }
        };
        match event {
            Event::Start(s) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ExtractError::Invalid(format!(
                        "{what} nests elements more than {MAX_DEPTH} deep."
                    )));
                }
                on(Ev::Open(&tag(&s)))?;
            }
            Event::Empty(s) => {
                let t = tag(&s);
                on(Ev::Open(&t))?;
                on(Ev::Close(&t.name))?;
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                on(Ev::Close(&local(e.local_name().as_ref())))?;
            }
            Event::Text(t) => on(Ev::Text(&t.xml_content(XmlVersion::Implicit1_0)))?,
            Event::CData(t) => on(Ev::Text(&t.xml10_content()))?,
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(Cow::Owned(c.to_string())),
                    Ok(None) => match &*r {
                        "amp" => Some(Cow::Borrowed("&")),
                        "lt" => Some(Cow::Borrowed("<")),
                        "gt" => Some(Cow::Borrowed(">")),
                        "quot" => Some(Cow::Borrowed("\"")),
                        "apos" => Some(Cow::Borrowed("'")),
                        // Entities declared in a DTD are never expanded.
                        name => html_entity(name).map(Cow::Borrowed),
                    },
                    Err(_) => None,
                };
                if let Some(text) = resolved {
                    on(Ev::Text(&text))?;
                }
            }
            Event::Eof if depth > 0 && !lenient => {
                return Err(ExtractError::Invalid(format!(
                    "{what} ends before its elements are closed (truncated?)."
                )))
            }
            Event::Eof => return Ok(()),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// Skips the subtree of elements whose local name is in `names` (e.g. alternative content
/// that repeats what another branch already holds). Returns `true` while inside one.
#[derive(Default)]
pub(super) struct Skip {
    depth: usize,
}

impl Skip {
    pub fn filter(&mut self, ev: &Ev<'_>, names: &[&str]) -> bool {
        match ev {
            Ev::Open(t) if self.depth > 0 || names.contains(&t.name.as_str()) => {
                self.depth += 1;
                true
            }
            Ev::Close(_) if self.depth > 0 => {
                self.depth -= 1;
                true
            }
            _ => self.depth > 0,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn texts(xml: &str) -> Result<String, ExtractError> {
        let mut out = String::new();
        walk(xml, "x.xml", false, |ev| {
            if let Ev::Text(t) = ev {
                out.push_str(t);
            }
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn resolves_only_predefined_and_char_refs() {
        assert_eq!(
            texts("<a>x &amp; &#65;&#x42; &lt;</a>"),
            Ok("x & AB <".into())
        );
        let laughs = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY l0 \"ha\">{}]><l>&l9;</l>",
            (1..10)
                .map(|i| format!("<!ENTITY l{i} \"{}\">", format!("&l{};", i - 1).repeat(10)))
                .collect::<String>()
        );
        assert_eq!(texts(&laughs), Ok(String::new()));
    }

    #[test]
    fn refuses_deep_nesting_and_bad_utf8() {
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert!(matches!(texts(&deep), Err(ExtractError::Invalid(m)) if m.contains("deep")));
        assert!(matches!(
            decode(b"<a>\xff\xfe\xfd</a>", "x.xml"),
            Err(ExtractError::Invalid(m)) if m.contains("UTF-8")
        ));
        assert!(matches!(texts("<a><b></a>"), Err(ExtractError::Invalid(_))));
    }
}
