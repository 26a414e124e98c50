//! Text formats: plain text, Markdown, JSON, CSV/TSV, source code (kept verbatim). Binary
//! content is refused as `unsupported_file`.

use super::{ExtractError, Extracted};

/// Magic numbers of common binary formats, with the name used in the error message.
const BINARY_MAGIC: &[(&[u8], &str)] = &[
    (b"%PDF", "PDF"),
    (
        b"PK\x03\x04",
        "a ZIP-based document (DOCX, XLSX, PPTX, EPUB, ODT or ZIP)",
    ),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "an executable"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xd0\xcf\x11\xe0", "an OLE document (DOC, XLS, PPT)"),
    (b"ID3", "an audio file"),
    (b"OggS", "an audio file"),
    (b"RIFF", "a RIFF media file"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ", "an xz archive"),
];

fn extension(filename: &str) -> String {
    filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

fn format_for(filename: &str) -> &'static str {
    match extension(filename).as_str() {
        "md" | "markdown" | "mdx" => "markdown",
        "json" | "jsonl" | "ndjson" => "json",
        "csv" | "tsv" => "csv",
        "rs" | "py" | "js" | "ts" | "tsx" | "jsx" | "go" | "java" | "c" | "h" | "cc" | "cpp"
        | "hpp" | "cs" | "rb" | "php" | "sh" | "swift" | "kt" | "scala" | "sql" | "css"
        | "toml" | "yaml" | "yml" | "ini" | "lua" | "pl" | "r" | "m" | "tex" => "code",
        _ => "text",
    }
}

/// UTF-16 with a byte-order mark.
fn decode_utf16(bytes: &[u8], little_endian: bool) -> Option<String> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let units = bytes.chunks_exact(2).map(|p| {
        if little_endian {
            u16::from_le_bytes([p[0], p[1]])
        } else {
            u16::from_be_bytes([p[0], p[1]])
        }
    });
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()
}

/// Decodes text: UTF-8 (BOM optional), UTF-16 with BOM, else Latin-1 when the bytes look like
/// text. `None` for binary content.
fn decode(bytes: &[u8]) -> Option<String> {
    if let Some(rest) = bytes.strip_prefix(b"\xef\xbb\xbf") {
        return std::str::from_utf8(rest).ok().map(str::to_owned);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xff\xfe") {
        return decode_utf16(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xfe\xff") {
        return decode_utf16(rest, false);
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return (!looks_binary(s.as_bytes())).then(|| s.to_owned());
    }
    if looks_binary(bytes) {
        return None;
    }
    Some(bytes.iter().map(|&b| b as char).collect())
}

/// NUL bytes, or many control characters, mean binary.
fn looks_binary(bytes: &[u8]) -> bool {
    let sample = &bytes[..bytes.len().min(64 * 1024)];
    if sample.contains(&0) {
        return true;
    }
    let control = sample
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0c))
        .count();
    control * 20 > sample.len().max(1)
}

pub fn extract(bytes: &[u8], filename: &str) -> Result<Extracted, ExtractError> {
    for (magic, what) in BINARY_MAGIC {
        if bytes.starts_with(magic) {
            return Err(ExtractError::Unsupported(format!(
                "The file looks like {what}; this server cannot read text from it yet."
            )));
        }
    }
    let text = decode(bytes).ok_or_else(|| {
        ExtractError::Unsupported(
            "The file is binary and not a format this server reads.".to_owned(),
        )
    })?;
    let text = text.replace("\r\n", "\n");
    if text.trim().is_empty() {
        return Err(ExtractError::Invalid(
            "The file contains no text.".to_owned(),
        ));
    }
    Ok(Extracted {
        text,
        format: format_for(filename),
        sections: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_formats() {
        let e = extract(b"# Title\n\nBody", "notes.md");
        assert_eq!(e.as_ref().map(|e| e.format), Ok("markdown"));
        assert!(e.as_ref().is_ok_and(Extracted::is_markdown));
        assert_eq!(extract(b"a,b\n1,2\n", "t.csv").map(|e| e.format), Ok("csv"));
        assert_eq!(
            extract(b"fn main() {}", "main.rs").map(|e| e.format),
            Ok("code")
        );
        assert_eq!(
            extract(b"{\"a\": 1}", "x.json").map(|e| e.format),
            Ok("json")
        );
        assert_eq!(
            extract(b"line\r\nline", "x").map(|e| e.text),
            Ok("line\nline".to_owned())
        );
    }

    #[test]
    fn decodes_common_encodings() {
        assert_eq!(
            extract(b"\xef\xbb\xbfhello", "a.txt").map(|e| e.text),
            Ok("hello".into())
        );
        let utf16: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain("héllo".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(extract(&utf16, "a.txt").map(|e| e.text), Ok("héllo".into()));
        assert_eq!(
            extract(b"caf\xe9 cr\xe8me", "a.txt").map(|e| e.text),
            Ok("café crème".into())
        );
    }

    #[test]
    fn refuses_binary_and_empty() {
        assert!(matches!(
            extract(b"%PDF-1.7\n...", "a.pdf"),
            Err(ExtractError::Unsupported(_))
        ));
        assert!(matches!(
            extract(b"PK\x03\x04....", "a.docx"),
            Err(ExtractError::Unsupported(_))
        ));
        assert!(matches!(
            extract(&[0u8, 1, 2, 3, 0, 0, 9], "a.bin"),
            Err(ExtractError::Unsupported(_))
        ));
        assert!(matches!(
            extract(b"   \n\t ", "a.txt"),
            Err(ExtractError::Invalid(_))
        ));
    }
}
