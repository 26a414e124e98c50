//! Text formats: plain text, Markdown, JSON, CSV/TSV, source code (kept verbatim). Binary
//! content is refused as `unsupported_file`.

use super::{ExtractError, Extracted, Section};

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

pub(super) fn extension(filename: &str) -> String {
    filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

pub(super) fn format_for(filename: &str) -> &'static str {
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

/// How much of the input the encoding guessers look at: enough to decide, bounded work.
const SNIFF_BYTES: usize = 64 * 1024;

/// Decodes text in any common encoding; `None` for binary content. Order: a byte-order mark
/// (UTF-8, UTF-16LE/BE); UTF-16 without a mark when the NUL pattern clearly says so; UTF-8 when
/// the bytes are (almost all) valid UTF-8, damaged sequences becoming U+FFFD; else the legacy
/// encoding `chardetng` guesses (Windows-1252, Shift-JIS, EUC-JP, GBK, Big5, …).
pub(super) fn decode(bytes: &[u8]) -> Option<String> {
    if let Some((encoding, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        let text = decode_with(encoding, &bytes[bom_len..]);
        return (!looks_binary(text.as_bytes())).then_some(text);
    }
    if let Some(encoding) = utf16_without_bom(bytes) {
        let text = decode_with(encoding, bytes);
        return (!looks_binary(text.as_bytes())).then_some(text);
    }
    if looks_binary(bytes) {
        return None;
    }
    if mostly_utf8(bytes) {
        return Some(String::from_utf8_lossy(bytes).into_owned());
    }
    Some(decode_with(guess_legacy(bytes), bytes))
}

/// Decodes without BOM sniffing; malformed sequences become U+FFFD.
pub(super) fn decode_with(encoding: &'static encoding_rs::Encoding, bytes: &[u8]) -> String {
    encoding.decode_without_bom_handling(bytes).0.into_owned()
}

/// The legacy encoding `chardetng` finds most likely for these (non-UTF-8) bytes.
pub(super) fn guess_legacy(bytes: &[u8]) -> &'static encoding_rs::Encoding {
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(&bytes[..bytes.len().min(SNIFF_BYTES)], true);
    detector.guess(None, chardetng::Utf8Detection::Allow)
}

/// Valid UTF-8, or UTF-8 with a few damaged sequences: at least four valid multi-byte
/// characters per invalid sequence. Legacy 8-bit text almost never forms valid sequences.
pub(super) fn mostly_utf8(bytes: &[u8]) -> bool {
    let sample = &bytes[..bytes.len().min(SNIFF_BYTES)];
    let (mut multibyte, mut invalid) = (0usize, 0usize);
    for chunk in sample.utf8_chunks() {
        multibyte += chunk.valid().chars().filter(|c| !c.is_ascii()).count();
        invalid += usize::from(!chunk.invalid().is_empty());
    }
    // A sequence cut by the sample's end is not damage.
    if sample.len() < bytes.len() && invalid > 0 {
        invalid -= 1;
    }
    invalid == 0 || multibyte >= invalid * 4
}

/// UTF-16 without a byte-order mark: in ASCII-heavy text one byte of most code units is NUL,
/// always at the same parity.
fn utf16_without_bom(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let sample = &bytes[..bytes.len().min(SNIFF_BYTES) & !1];
    let units = sample.len() / 2;
    if units < 2 {
        return None;
    }
    let (mut even, mut odd) = (0usize, 0usize);
    for pair in sample.chunks_exact(2) {
        even += usize::from(pair[0] == 0);
        odd += usize::from(pair[1] == 0);
    }
    // At least 30% of units with a NUL high byte, and (almost) none with a NUL low byte.
    if odd * 10 >= units * 3 && even * 50 <= units {
        Some(encoding_rs::UTF_16LE)
    } else if even * 10 >= units * 3 && odd * 50 <= units {
        Some(encoding_rs::UTF_16BE)
    } else {
        None
    }
}

/// NUL bytes, or many control characters, mean binary.
pub(super) fn looks_binary(bytes: &[u8]) -> bool {
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
    refuse_binary_magic(bytes)?;
    let text = decode(bytes).ok_or_else(binary)?;
    finish(text, filename)
}

/// [`extract`] of bytes the caller gives up: valid UTF-8 becomes the text without a copy.
pub fn extract_owned(bytes: Vec<u8>, filename: &str) -> Result<Extracted, ExtractError> {
    refuse_binary_magic(&bytes)?;
    let plain_utf8 = encoding_rs::Encoding::for_bom(&bytes).is_none()
        && utf16_without_bom(&bytes).is_none()
        && !looks_binary(&bytes);
    let text = match plain_utf8 {
        true => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => decode(e.as_bytes()).ok_or_else(binary)?,
        },
        false => decode(&bytes).ok_or_else(binary)?,
    };
    finish(text, filename)
}

fn refuse_binary_magic(bytes: &[u8]) -> Result<(), ExtractError> {
    for (magic, what) in BINARY_MAGIC {
        if bytes.starts_with(magic) {
            return Err(ExtractError::Unsupported(format!(
                "The file looks like {what}; this server cannot read text from it yet."
            )));
        }
    }
    Ok(())
}

fn binary() -> ExtractError {
    ExtractError::Unsupported("The file is binary and not a format this server reads.".to_owned())
}

fn finish(text: String, filename: &str) -> Result<Extracted, ExtractError> {
    // Only a copy when there is something to replace (a file's text can be 100+ MB).
    let text = if text.contains("\r\n") {
        text.replace("\r\n", "\n")
    } else {
        text
    };
    if text.trim().is_empty() {
        return Err(ExtractError::Invalid(
            "The file contains no text.".to_owned(),
        ));
    }
    let format = format_for(filename);
    let sections = if format == "markdown" {
        markdown_sections(&text)
    } else {
        Vec::new()
    };
    Ok(Extracted {
        text,
        format,
        sections,
    })
}

/// The title of a Markdown ATX heading line (`## Title`, `## Title ##`), indentation already
/// removed; `None` for any other line.
pub fn atx_heading(line: &str) -> Option<&str> {
    let hashes = line.bytes().take_while(|&b| b == b'#').count();
    let rest = &line[hashes..];
    ((1..=6).contains(&hashes) && (rest.is_empty() || rest.starts_with([' ', '\t'])))
        // Closing hashes are decoration: `## Title ##`.
        .then(|| rest.trim().trim_end_matches('#').trim_end())
}

/// A Markdown file's headings (ATX `## Title` and setext `Title` over `===`/`---`), outside
/// fenced code blocks, as `{"section": "Title"}` locations.
fn markdown_sections(text: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut fence: Option<&str> = None;
    let mut prev: Option<(usize, &str)> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let line = line.trim_end_matches(['\n', '\r']);
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(marker) = fence {
            if indent < 4 && trimmed.starts_with(marker) {
                fence = None;
            }
            prev = None;
            continue;
        }
        if indent < 4 && (trimmed.starts_with("```") || trimmed.starts_with("~~~")) {
            fence = Some(&trimmed[..3]);
            prev = None;
            continue;
        }
        let mut heading = None;
        if indent < 4 {
            if let Some(title) = atx_heading(trimmed) {
                heading = Some((start, title));
            } else if let Some((prev_start, prev_text)) = prev {
                let underline = trimmed.trim_end();
                if !underline.is_empty()
                    && (underline.bytes().all(|b| b == b'=')
                        || underline.bytes().all(|b| b == b'-'))
                {
                    heading = Some((prev_start, prev_text.trim()));
                }
            }
        }
        if let Some((at, title)) = heading {
            if !title.is_empty() {
                let mut location = serde_json::Map::new();
                location.insert("section".to_owned(), title.into());
                if sections.last().is_some_and(|s: &Section| s.start == at) {
                    sections.pop();
                }
                sections.push(Section {
                    start: at,
                    location,
                });
            }
            prev = None;
            continue;
        }
        // Only a paragraph line can be a setext heading's text.
        let list_or_quote = trimmed.starts_with(['-', '*', '+', '>', '|'])
            || trimmed
                .split_once(". ")
                .is_some_and(|(n, _)| n.bytes().all(|b| b.is_ascii_digit()));
        prev = (!trimmed.is_empty() && indent < 4 && !list_or_quote).then_some((start, line));
    }
    sections
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
    fn markdown_headings_are_sections() {
        let md = "Intro line\n\n# Install ##\n\nText\n\n```sh\n# not a heading\n```\n\n\
                  Usage\n=====\n\n- item\n---\n\nSub part\n--------\n\n####### seven\n#hashtag\n";
        let e = extract(md.as_bytes(), "README.md").unwrap();
        let got: Vec<(String, String)> = e
            .sections
            .iter()
            .map(|s| {
                (
                    e.text[s.start..].lines().next().unwrap_or("").to_owned(),
                    s.location["section"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("# Install ##", "Install"),
                ("Usage", "Usage"),
                ("Sub part", "Sub part")
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        // Other text formats have no sections.
        assert!(extract(b"# x\n", "notes.txt").unwrap().sections.is_empty());
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
    fn detects_legacy_and_bomless_encodings() {
        let japanese = "日本語のテキストです。これは文字コードの判定を確かめるための文章です。";
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(japanese);
        assert_eq!(extract(&sjis, "a.txt").map(|e| e.text), Ok(japanese.into()));
        let (euc, _, _) = encoding_rs::EUC_JP.encode(japanese);
        assert_eq!(extract(&euc, "a.txt").map(|e| e.text), Ok(japanese.into()));

        assert_eq!(
            extract(b"He said \x93hello\x94 \x96 and left.", "a.txt").map(|e| e.text),
            Ok("He said \u{201c}hello\u{201d} \u{2013} and left.".into())
        );

        let text = "Plain text saved as UTF-16 without a byte-order mark, é.";
        let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(extract(&le, "a.txt").map(|e| e.text), Ok(text.into()));
        let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(extract(&be, "a.txt").map(|e| e.text), Ok(text.into()));
        let bom_be: Vec<u8> = [0xfe, 0xff].into_iter().chain(be).collect();
        assert_eq!(extract(&bom_be, "a.txt").map(|e| e.text), Ok(text.into()));
    }

    #[test]
    fn malformed_utf8_is_read_with_replacement_characters() {
        let mut bytes = "Grüße aus Köln, naïve café, déjà vu. "
            .repeat(3)
            .into_bytes();
        bytes.extend_from_slice(b"broken \xff\xfe\xc3 end");
        let text = extract(&bytes, "a.txt").map(|e| e.text);
        assert!(
            text.as_ref().is_ok_and(|t| t.starts_with("Grüße aus Köln")),
            "{text:?}"
        );
        assert!(text
            .as_ref()
            .is_ok_and(|t| t.contains('\u{fffd}') && t.ends_with(" end")));
        // Mostly damaged: still text, never an error.
        assert!(extract(b"\xc3\x28 \xa0\xa1 \xe2\x28\xa1 abc", "a.txt").is_ok());
    }

    #[test]
    fn huge_single_line_and_nul_heavy_binary() {
        let line = "x".repeat(8 << 20);
        assert_eq!(
            extract(line.as_bytes(), "a.txt").map(|e| e.text.len()),
            Ok(8 << 20)
        );
        // Every other byte NUL, but the rest are control bytes: binary, not UTF-16.
        let fake_utf16: Vec<u8> = (0..4096u32).flat_map(|i| [(i % 8) as u8 + 1, 0]).collect();
        assert!(matches!(
            extract(&fake_utf16, "a.txt"),
            Err(ExtractError::Unsupported(_))
        ));
    }

    #[test]
    fn keeps_data_files_verbatim() {
        let jsonl = "{\"a\": 1}\n{\"a\": \"x,y\"}\n";
        assert_eq!(
            extract(jsonl.as_bytes(), "d.jsonl").map(|e| e.text),
            Ok(jsonl.into())
        );
        let tsv = "a\tb\n1\t\"2\"\n";
        let e = extract(tsv.as_bytes(), "d.tsv");
        assert_eq!(e.as_ref().map(|e| e.text.as_str()), Ok(tsv));
        assert_eq!(e.map(|e| e.format), Ok("csv"));
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
