//! Validation of JSONL (`purpose=batch`): every non-blank line is one JSON object. Lines are
//! streamed into the parser, so memory stays flat however long a line is.

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;
use std::io::{BufRead, Read};

/// Accepts a JSON object and nothing else, without keeping any of it.
struct AnyObject;

impl<'de> Deserialize<'de> for AnyObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyObject, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyObject)
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads one line of the underlying reader (without its `\n`), then reports end of input.
struct Line<'a, R: BufRead> {
    inner: &'a mut R,
    done: bool,
    /// Whether the line held anything but whitespace.
    non_blank: bool,
}

impl<R: BufRead> Read for Line<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.done || out.is_empty() {
            return Ok(0);
        }
        let buf = self.inner.fill_buf()?;
        if buf.is_empty() {
            self.done = true;
            return Ok(0);
        }
        let (take, newline) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i.min(out.len()), i <= out.len()),
            None => (buf.len().min(out.len()), false),
        };
        out[..take].copy_from_slice(&buf[..take]);
        if !self.non_blank {
            self.non_blank = out[..take].iter().any(|b| !b.is_ascii_whitespace());
        }
        if newline {
            self.inner.consume(take + 1);
            self.done = true;
        } else {
            self.inner.consume(take);
        }
        Ok(take)
    }
}

/// `Ok(lines)` with the number of objects, or a message naming the first bad line.
pub fn validate(mut input: impl BufRead) -> Result<u64, String> {
    let mut objects = 0u64;
    for line_no in 1u64.. {
        // Fast path: the whole line is already buffered, parse it in place.
        let buf = input.fill_buf().map_err(read_error)?;
        if buf.is_empty() {
            break;
        }
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line = &buf[..end];
            let blank = line.iter().all(u8::is_ascii_whitespace);
            let parsed = serde_json::from_slice::<AnyObject>(line).map(|_| ());
            input.consume(end + 1);
            match parsed {
                _ if blank => {}
                Ok(()) => objects += 1,
                Err(e) => return Err(bad_line(line_no, &e)),
            }
            continue;
        }
        // Slow path: a line longer than the buffer streams through the parser.
        let mut line = Line {
            inner: &mut input,
            done: false,
            non_blank: false,
        };
        let mut de = serde_json::Deserializer::from_reader(&mut line);
        let parsed = AnyObject::deserialize(&mut de).and_then(|_| de.end());
        match parsed {
            Ok(()) => objects += 1,
            Err(e) if e.is_io() => return Err(format!("could not read the file: {e}")),
            Err(_) if !line.non_blank => {}
            Err(e) => return Err(bad_line(line_no, &e)),
        }
        // Skip whatever the parser did not read of this line (a blank tail).
        std::io::copy(&mut line, &mut std::io::sink()).map_err(read_error)?;
    }
    if objects == 0 {
        return Err("the file holds no JSON lines".to_owned());
    }
    Ok(objects)
}

fn read_error(e: std::io::Error) -> String {
    format!("could not read the file: {e}")
}

fn bad_line(line_no: u64, e: &serde_json::Error) -> String {
    format!(
        "line {line_no} is not a JSON object ({})",
        strip_position(e)
    )
}

fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => format!("{} at column {}", &s[..i], e.column()),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::validate;

    fn v(s: &str) -> Result<u64, String> {
        validate(std::io::Cursor::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn accepts_objects_per_line() {
        assert_eq!(v("{\"a\":1}\n{\"b\":[1,2,{\"c\":null}]}\n"), Ok(2));
        assert_eq!(v("{\"a\":1}"), Ok(1));
        assert_eq!(v("{\"a\":1}\r\n{}\r\n"), Ok(2));
        assert_eq!(v("{\"a\":1}\n\n  \n{}\n"), Ok(2));
    }

    #[test]
    fn rejects_everything_else() {
        assert!(v("").is_err());
        assert!(v("\n\n").is_err());
        assert!(v("[1,2]\n").is_err());
        assert!(v("{\"a\":1} {\"b\":2}\n").is_err());
        assert!(v("{\"a\":\n1}\n").is_err());
        let e = v("{}\n{}\nnot json\n").err().unwrap_or_default();
        assert!(e.contains("line 3"), "{e}");
        assert!(v("\u{0}\u{1}binary").is_err());
    }

    #[test]
    fn long_lines_are_streamed() {
        let big = format!("{{\"k\":\"{}\"}}\n", "x".repeat(1 << 20));
        let input = big.repeat(3);
        // A small buffer forces the parser across many refills of one line.
        let r = std::io::BufReader::with_capacity(64, std::io::Cursor::new(input.into_bytes()));
        assert_eq!(validate(r), Ok(3));
    }
}
