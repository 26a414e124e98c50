//! Text -> chunks, sized in tokens of the embedding model's own tokenizer, so a chunk of
//! `max_tokens` is exactly what the model will read.

use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;
use ragstore_extract::text::atx_heading;
use text_splitter::{ChunkConfig, ChunkSizer, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

use crate::domain::chunking::Chunking;
use crate::domain::{Error, Result};

/// One chunk and its size in tokens (without the model's special tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkText {
    pub text: String,
    pub tokens: usize,
    /// Byte offset of the chunk in the text it was cut from (to find its page, sheet, section).
    pub offset: usize,
}

/// How an embedding model counts tokens.
#[derive(Clone)]
pub enum Tokens {
    /// Exactly, with the model's own tokenizer.
    Model(Arc<Tokenizer>),
    /// About four characters a token: for a remote model whose tokenizer is not known here.
    Estimate,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokens::Model(_) => f.write_str("Tokens::Model"),
            Tokens::Estimate => f.write_str("Tokens::Estimate"),
        }
    }
}

/// Characters a token, for [`Tokens::Estimate`] (the usual figure for English with BPE models).
const CHARS_PER_TOKEN: usize = 4;

impl Tokens {
    /// Tokens in `text`, special tokens not counted.
    pub fn count(&self, text: &str) -> usize {
        match self {
            Tokens::Model(t) => t.size(text),
            Tokens::Estimate => Estimate.size(text),
        }
    }
}

/// [`Tokens::Estimate`] as a text-splitter sizer.
struct Estimate;

impl ChunkSizer for Estimate {
    fn size(&self, chunk: &str) -> usize {
        chunk.chars().count().div_ceil(CHARS_PER_TOKEN)
    }
}

/// Splits text at the highest semantic level that fits (sections, paragraphs, sentences, words),
/// with text-splitter; cheap to clone.
#[derive(Clone)]
pub struct Chunker {
    tokens: Tokens,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker").finish_non_exhaustive()
    }
}

impl Chunker {
    /// Chunks `text` a segment ([`segments`]) at a time, handing each segment's chunks (offsets
    /// into `text`) to `emit` as soon as they are cut; stops early when `emit` returns `false`.
    /// Returns how many chunks were cut.
    /// `Err(tokens)` once the text holds more than `max_tokens` tokens (counted segment by
    /// segment, so a huge file is refused after a bounded amount of work).
    pub fn chunk_segments(
        &self,
        text: &str,
        chunking: Chunking,
        markdown: bool,
        max_tokens: usize,
        mut emit: impl FnMut(Vec<ChunkText>) -> bool,
    ) -> Result<usize, usize> {
        let segs = segments(text, SEGMENT_BYTES);
        // Text far longer than the limit allows at a usual few bytes a token is counted
        // before any of it is chunked: a file that cannot fit then fails in the seconds
        // counting takes, instead of after minutes of chunking and embedding its first part.
        let counted: Option<Vec<usize>> =
            if text.len() > max_tokens.saturating_mul(PRECOUNT_BYTES_PER_TOKEN) {
                let mut counts = Vec::with_capacity(segs.len());
                let mut sum = 0;
                for &(start, end) in &segs {
                    let n = self.count_tokens(&text[start..end]);
                    sum += n;
                    if sum > max_tokens {
                        return Err(sum);
                    }
                    counts.push(n);
                }
                Some(counts)
            } else {
                None
            };
        let (mut total, mut tokens) = (0, 0);
        for (i, &(start, end)) in segs.iter().enumerate() {
            tokens += match &counted {
                Some(counts) => counts[i],
                None => self.count_tokens(&text[start..end]),
            };
            if tokens > max_tokens {
                return Err(tokens);
            }
            let mut chunks = self.chunk(&text[start..end], chunking, markdown);
            for c in &mut chunks {
                c.offset += start;
            }
            total += chunks.len();
            if !chunks.is_empty() && !emit(chunks) {
                break;
            }
        }
        Ok(total)
    }

    /// From a Hugging Face `tokenizer.json`.
    pub fn from_tokenizer_file(path: &Path) -> Result<Self> {
        Ok(Chunker::new(Tokens::Model(Arc::new(load_tokenizer(path)?))))
    }

    /// Sizing chunks as `tokens` counts them (the embedder's [`Tokens`]).
    pub fn new(tokens: Tokens) -> Self {
        Chunker { tokens }
    }

    /// Tokens in `text`, special tokens not counted.
    /// The text's tokens, counted a segment at a time: `Err(n)` as soon as more than `max`
    /// (`n` counted so far), so a huge text is refused after a bounded amount of work.
    pub fn count_up_to(&self, text: &str, max: usize) -> Result<usize, usize> {
        let mut sum = 0;
        for (start, end) in segments(text, SEGMENT_BYTES) {
            sum += self.count_tokens(&text[start..end]);
            if sum > max {
                return Err(sum);
            }
        }
        Ok(sum)
    }

    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokens.count(text)
    }

    /// Chunks of at most `chunking.max_tokens` tokens, consecutive chunks sharing up to
    /// `chunking.overlap_tokens` tokens. Whitespace is trimmed from each chunk; blank text gives
    /// none. Deterministic: the same input always gives the same chunks.
    ///
    /// text-splitter sizes many candidate chunks; each is counted from one tokenization of the
    /// whole text ([`TextSizer`]), which is what makes this fast (25x on 20k words).
    pub fn chunk(&self, text: &str, chunking: Chunking, markdown: bool) -> Vec<ChunkText> {
        let max = (chunking.max_tokens as usize).max(1);
        // `Chunking::parse` keeps overlap <= max/2; text-splitter rejects overlap >= capacity.
        let overlap = (chunking.overlap_tokens as usize).min(max / 2);
        let tokenizer = match &self.tokens {
            Tokens::Model(t) => t,
            Tokens::Estimate => {
                return split(text, &Estimate, max, overlap, markdown)
                    .into_iter()
                    .map(|piece| ChunkText {
                        text: piece.to_owned(),
                        tokens: Estimate.size(piece),
                        offset: offset_in(text, piece),
                    })
                    .collect()
            }
        };
        let mut out = Vec::new();
        for piece in split(
            text,
            &TextSizer::new(tokenizer, text),
            max,
            overlap,
            markdown,
        ) {
            let tokens = self.count_tokens(piece);
            if tokens <= max {
                out.push(ChunkText {
                    text: piece.to_owned(),
                    tokens,
                    offset: offset_in(text, piece),
                });
                continue;
            }
            // Not expected (the sizer is exact where it answers); kept so the bound always holds.
            tracing::warn!(tokens, max, "chunk over its size; splitting it again");
            for sub in split(piece, &**tokenizer, max, overlap, markdown) {
                out.push(ChunkText {
                    text: sub.to_owned(),
                    tokens: self.count_tokens(sub),
                    offset: offset_in(text, sub),
                });
            }
        }
        out
    }
}

/// Fewest tokens of a section title worth putting before a chunk (see
/// [`Chunker::embedding_input`]): a cut-down title shorter than this says little.
const MIN_TITLE_TOKENS: usize = 3;

impl Chunker {
    /// What the embedding model reads for a chunk: the title of the section the chunk sits in, on
    /// a line of its own, then the chunk. A chunk cut from the middle of a long section often does
    /// not name what it is about; its section's title does (measured in the README: "Section
    /// titles in the embedded text"). The chunk that starts with the heading itself gets no
    /// second copy. The title takes only the room the model's window (`window` tokens) leaves
    /// beside the chunk, cut after a whole word, and is left out when fewer than
    /// [`MIN_TITLE_TOKENS`] fit: the chunk is still read in one window, whole. Only the vector
    /// is made from this; the chunk's stored text, its keyword vector and what search returns
    /// are the chunk alone.
    pub fn embedding_input<'t>(
        &self,
        title: Option<&str>,
        text: &'t str,
        window: usize,
    ) -> std::borrow::Cow<'t, str> {
        use std::borrow::Cow;
        let Some(title) = title.map(str::trim).filter(|t| !t.is_empty()) else {
            return Cow::Borrowed(text);
        };
        let first_line = text.trim_start().lines().next().unwrap_or("").trim();
        if atx_heading(first_line).unwrap_or(first_line) == title {
            return Cow::Borrowed(text);
        }
        let room = window.saturating_sub(self.count_tokens(text));
        if room < MIN_TITLE_TOKENS {
            return Cow::Borrowed(text);
        }
        // The longest run of the title's first words that fits.
        let fitted = title
            .split_whitespace()
            .map(|word| &title[..offset_in(title, word) + word.len()])
            .map(|prefix| (prefix, self.count_tokens(prefix)))
            .take_while(|&(_, n)| n <= room)
            .last();
        match fitted {
            Some((prefix, n)) if n >= MIN_TITLE_TOKENS => Cow::Owned(format!("{prefix}\n\n{text}")),
            _ => Cow::Borrowed(text),
        }
    }
}

/// Bytes a token below which a text is not counted ahead of chunking (English runs 4-6).
const PRECOUNT_BYTES_PER_TOKEN: usize = 4;

/// Text is chunked a segment at a time: memory and time stay linear in the size of the file
/// (tokenising a whole 40 MB file at once took gigabytes), and the first chunks are ready long
/// before the last. Segments end at a blank line (outside a Markdown code fence), so chunks rarely
/// notice the cut: text-splitter would prefer that boundary anyway.
pub const SEGMENT_BYTES: usize = 64 * 1024;

/// Consecutive `(start, end)` byte ranges covering `text`, each about `target` bytes, cut after a
/// blank line outside code fences where there is one within four times `target`, else at a line
/// end, else at a char boundary.
pub fn segments(text: &str, target: usize) -> Vec<(usize, usize)> {
    let target = target.max(1);
    let hard = 4 * target;
    let mut out = Vec::new();
    let (mut start, mut pos, mut in_fence) = (0usize, 0usize, false);
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        }
        let line_start = pos;
        pos += line.len();
        if pos - start >= target && !in_fence && line.trim().is_empty() {
            out.push((start, pos));
            start = pos;
            continue;
        }
        if pos - start > hard {
            if line_start > start {
                out.push((start, line_start));
                start = line_start;
            }
            // One line longer than the hard limit: cut inside it.
            while pos - start > hard {
                let mut cut = start + hard;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.push((start, cut));
                start = cut;
            }
        }
    }
    if start < text.len() {
        out.push((start, text.len()));
    }
    out
}

/// Where `piece`, a slice of `text`, starts in it.
fn offset_in(text: &str, piece: &str) -> usize {
    (piece.as_ptr() as usize)
        .saturating_sub(text.as_ptr() as usize)
        .min(text.len())
}

fn split<'t, S: ChunkSizer>(
    text: &'t str,
    sizer: &S,
    max: usize,
    overlap: usize,
    markdown: bool,
) -> Vec<&'t str> {
    let config = || match ChunkConfig::new(max)
        .with_sizer(sizer)
        .with_overlap(overlap)
    {
        Ok(config) => config,
        Err(e) => unreachable!("overlap {overlap} < capacity {max}: {e}"),
    };
    let mut chunks: Vec<&str> = if markdown {
        MarkdownSplitter::new(config()).chunks(text).collect()
    } else {
        TextSplitter::new(config()).chunks(text).collect()
    };
    chunks.retain(|c| !c.trim().is_empty());
    if markdown {
        // A section whose first block does not fit beside its heading comes out as the heading
        // alone, then the block: a chunk that says nothing. The two are cut again as plain text,
        // so the heading starts the first part of its block.
        let mut i = 0;
        while i + 1 < chunks.len() {
            let (heading, next) = (chunks[i], chunks[i + 1]);
            let start = offset_in(text, heading);
            let end = start + heading.len();
            let next_start = offset_in(text, next);
            if headings_only(heading)
                && next_start >= end
                && text[end..next_start].trim().is_empty()
            {
                let span = &text[start..next_start + next.len()];
                let parts: Vec<&str> = TextSplitter::new(config())
                    .chunks(span)
                    .filter(|c| !c.trim().is_empty())
                    .collect();
                if parts.first().is_some_and(|p| !headings_only(p)) {
                    let n = parts.len();
                    chunks.splice(i..i + 2, parts);
                    i += n;
                    continue;
                }
            }
            i += 1;
        }
    }
    chunks
}

/// Whether every non-blank line of `chunk` is a Markdown ATX heading.
fn headings_only(chunk: &str) -> bool {
    let mut lines = chunk
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .peekable();
    lines.peek().is_some() && lines.all(|l| atx_heading(l).is_some())
}

/// Counts the tokens of a slice of `text` from one tokenization of all of it: the tokens lying
/// inside the slice, when both its ends fall between words. That equals tokenizing the slice
/// alone for tokenizers that split words apart before tokenizing them (BERT's WordPiece and
/// most others). Any other slice (cut inside a word, or not from `text`) is tokenized alone.
struct TextSizer<'t> {
    tokenizer: &'t Tokenizer,
    text: &'t str,
    /// Byte offsets and word of each token, in text order.
    starts: Vec<usize>,
    ends: Vec<usize>,
    words: Vec<Option<u32>>,
}

impl<'t> TextSizer<'t> {
    fn new(tokenizer: &'t Tokenizer, text: &'t str) -> Self {
        let (mut starts, mut ends, mut words) = (Vec::new(), Vec::new(), Vec::new());
        match tokenizer.encode(text, false) {
            Ok(encoding) => {
                starts.extend(encoding.get_offsets().iter().map(|o| o.0));
                ends.extend(encoding.get_offsets().iter().map(|o| o.1));
                words.extend_from_slice(encoding.get_word_ids());
            }
            // Leaves `text` unknown, so every slice is tokenized alone.
            Err(_) => {
                return TextSizer {
                    tokenizer,
                    text: "",
                    starts,
                    ends,
                    words,
                }
            }
        }
        TextSizer {
            tokenizer,
            text,
            starts,
            ends,
            words,
        }
    }

    /// Tokens of `slice` if it is a slice of the text cut between words.
    fn count(&self, slice: &str) -> Option<usize> {
        let a = (slice.as_ptr() as usize).checked_sub(self.text.as_ptr() as usize)?;
        let b = a + slice.len();
        if b > self.text.len() {
            return None;
        }
        let i = self.starts.partition_point(|&s| s < a);
        let j = self.starts.partition_point(|&s| s < b);
        (self.between_words(i, a) && self.between_words(j, b)).then_some(j - i)
    }

    /// Whether cutting at byte `at`, just before token `next`, splits no token and no word.
    fn between_words(&self, next: usize, at: usize) -> bool {
        if next == 0 {
            return true;
        }
        let prev = next - 1;
        let crosses = self.ends[prev] > at;
        let same_word = next < self.words.len()
            && self.words[prev].is_some()
            && self.words[prev] == self.words[next];
        !crosses && !same_word
    }
}

impl ChunkSizer for TextSizer<'_> {
    fn size(&self, chunk: &str) -> usize {
        self.count(chunk)
            .unwrap_or_else(|| self.tokenizer.size(chunk))
    }
}

/// A tokenizer that reports every token: the model files ship one that truncates to 128 tokens
/// and pads to 128, which would make both chunk sizes and window splitting lie.
pub(crate) fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_file(path)
        .map_err(|e| Error::Internal(anyhow!("cannot load tokenizer {}: {e}", path.display())))?;
    tokenizer
        .with_truncation(None)
        .map_err(|e| Error::Internal(anyhow!("tokenizer {}: {e}", path.display())))?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn chunker() -> Chunker {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("models/all-MiniLM-L6-v2/tokenizer.json");
        Chunker::from_tokenizer_file(&path)
            .expect("model files missing: run scripts/fetch-models.sh")
    }

    fn c(max: u32, overlap: u32) -> Chunking {
        Chunking {
            max_tokens: max,
            overlap_tokens: overlap,
        }
    }

    /// `n` words in sentences of 13 words and paragraphs of 97 (or one paragraph).
    fn prose(n: usize) -> String {
        prose_in(n, true)
    }

    fn prose_in(n: usize, paragraphs: bool) -> String {
        let words = [
            "the",
            "retrieval",
            "system",
            "splits",
            "documents",
            "into",
            "overlapping",
            "passages",
            "before",
            "embedding",
            "them",
            "with",
            "a",
            "small",
            "transformer",
            "model",
            "whose",
            "window",
            "holds",
            "tokens",
            "unbelievably",
            "internationalisation",
        ];
        let mut s = String::new();
        let mut state = 12345u32;
        for i in 0..n {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            s.push_str(words[(state >> 16) as usize % words.len()]);
            s.push_str(match i % 97 {
                96 if paragraphs => ".\n\n",
                x if x % 13 == 12 => ". ",
                _ => " ",
            });
        }
        s
    }

    /// Wherever the one-tokenization count answers, it is the count of the slice alone.
    #[test]
    fn text_sizer_is_exact_where_it_answers() {
        let ch = chunker();
        let text = "Hello,  world! Café\u{301} naïve [MASK] résumé\u{0}s 東京都 emoji 🦀🦀 \t\n\
                    unbelievably internationalisation... (a) \"quoted\" x=1+2; don't stop-words \
                    aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa end.";
        let Tokens::Model(tokenizer) = &ch.tokens else {
            panic!("not a model tokenizer")
        };
        let sizer = TextSizer::new(tokenizer, text);
        let cuts: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        let (mut answered, mut total) = (0, 0);
        // Every 2nd start and 3rd end: all cases in a few seconds of a debug build.
        for (n, &a) in cuts.iter().enumerate().step_by(2) {
            for &b in cuts[n..].iter().step_by(3) {
                let slice = &text[a..b];
                total += 1;
                if let Some(count) = sizer.count(slice) {
                    answered += 1;
                    assert_eq!(count, tokenizer.size(slice), "{slice:?}");
                }
                assert_eq!(sizer.size(slice), tokenizer.size(slice), "{slice:?}");
            }
        }
        assert!(answered * 20 > total, "{answered} of {total}");
        // A string that is not a slice of the text is tokenized alone.
        let copy = text[..5].to_owned();
        assert_eq!(sizer.count(copy.as_str()), None);
    }

    #[test]
    fn segments_cover_the_text_and_cut_after_blank_lines_outside_fences() {
        let para = "word ".repeat(30) + "\n\n";
        let fence = format!(
            "```\n{}\n\n{}\n```\n",
            "code ".repeat(40),
            "more ".repeat(40)
        );
        let text = format!(
            "{}{fence}{}{}",
            para.repeat(5),
            para.repeat(5),
            "x".repeat(2000)
        );
        let segs = segments(&text, 200);
        assert!(segs.len() > 3, "{segs:?}");
        assert_eq!(segs.first().map(|s| s.0), Some(0));
        assert_eq!(segs.last().map(|s| s.1), Some(text.len()));
        for w in segs.windows(2) {
            assert_eq!(w[0].1, w[1].0, "contiguous");
        }
        for &(a, b) in &segs {
            assert!(b > a && b - a <= 800, "{a}..{b}");
            let fence_at = text.find("```").unwrap();
            let fence_end = text.rfind("```").unwrap();
            assert!(
                !(fence_at < b && b < fence_end),
                "cut inside the fence at {b}"
            );
        }
        // Multi-byte text with no newline at all is cut at char boundaries.
        let wide = "é".repeat(1000);
        let segs = segments(&wide, 100);
        assert!(segs
            .iter()
            .all(|&(a, b)| wide.is_char_boundary(a) && wide.is_char_boundary(b)));
        assert_eq!(segs.last().map(|s| s.1), Some(wide.len()));
        assert!(segments("", 10).is_empty());
    }

    #[test]
    fn segmented_chunks_point_into_the_whole_text() {
        let ch = chunker();
        let text = prose(40_000);
        let mut got = Vec::new();
        let n = ch
            .chunk_segments(&text, c(200, 20), false, usize::MAX, |batch| {
                got.extend(batch);
                true
            })
            .unwrap();
        assert!(n > 100 && n == got.len());
        assert!(got.windows(2).all(|w| w[0].offset < w[1].offset));
        for chunk in &got {
            assert_eq!(
                &text[chunk.offset..chunk.offset + chunk.text.len()],
                chunk.text
            );
            assert!(chunk.tokens <= 200);
        }
        // Stopping early stops.
        let mut batches = 0;
        let _ = ch.chunk_segments(&text, c(200, 20), false, usize::MAX, |_| {
            batches += 1;
            false
        });
        assert_eq!(batches, 1);
        // Far too many tokens: counted and refused before any of it is chunked.
        let mut seen = 0;
        let over = ch.chunk_segments(&text, c(200, 20), false, 5_000, |b| {
            seen += b.len();
            true
        });
        assert!(matches!(over, Err(t) if t > 5_000), "{over:?}");
        assert_eq!(seen, 0);
        // Dense text (three bytes a token) a little over: not counted ahead, so refused
        // part-way through chunking.
        let dense = "ab ab ab ab ab ab ab ab ab ab\n\n".repeat(2_300);
        let mut seen = 0;
        let over = ch.chunk_segments(&dense, c(200, 20), false, 22_000, |b| {
            seen += b.len();
            true
        });
        assert!(over.is_err(), "{over:?}");
        assert!(seen > 0, "{seen}");
    }

    #[test]
    fn blank_text_gives_no_chunks() {
        let ch = chunker();
        assert!(ch.chunk("", c(100, 50), false).is_empty());
        assert!(ch.chunk("  \n\t \n ", c(100, 50), false).is_empty());
        assert!(ch.chunk("\n\n   \n", c(100, 0), true).is_empty());
    }

    #[test]
    fn short_text_is_one_chunk() {
        let ch = chunker();
        let chunks = ch.chunk("  Hello, world!  \n", c(100, 50), false);
        assert_eq!(
            chunks,
            vec![ChunkText {
                text: "Hello, world!".into(),
                tokens: 4,
                offset: 2,
            }]
        );
    }

    #[test]
    fn offsets_point_at_each_chunk() {
        let ch = chunker();
        let text: String = (0..60)
            .map(|i| format!("Sentence number {i} talks about topic {}. ", i % 7))
            .collect();
        let chunks = ch.chunk(&text, c(100, 30), false);
        assert!(chunks.len() > 3);
        for chunk in &chunks {
            assert_eq!(
                &text[chunk.offset..chunk.offset + chunk.text.len()],
                chunk.text
            );
        }
        assert!(chunks.windows(2).all(|w| w[0].offset < w[1].offset));
    }

    #[test]
    fn chunks_never_exceed_max_and_cover_the_text() {
        let ch = chunker();
        // One long paragraph, so every chunk is filled from sentences and can overlap: chunks
        // stop at paragraph breaks, and text-splitter only overlaps units smaller than the overlap.
        let text = prose_in(1500, false);
        let total = ch.count_tokens(&text);
        for (max, overlap) in [(100, 0), (100, 50), (256, 128), (800, 400), (137, 13)] {
            for markdown in [false, true] {
                let chunks = ch.chunk(&text, c(max, overlap), markdown);
                assert!(chunks.len() > 1, "{max}/{overlap}: {}", chunks.len());
                for chunk in &chunks {
                    assert!(chunk.tokens <= max as usize, "{} > {max}", chunk.tokens);
                    assert!(chunk.tokens > 0);
                    assert_eq!(chunk.tokens, ch.count_tokens(&chunk.text));
                    assert_eq!(chunk.text, chunk.text.trim());
                    assert!(text.contains(&chunk.text));
                }
                let sum: usize = chunks.iter().map(|c| c.tokens).sum();
                // Without overlap the chunks partition the text; with it they repeat some of it.
                if overlap == 0 {
                    assert!(sum.abs_diff(total) <= chunks.len(), "{sum} vs {total}");
                } else {
                    assert!(
                        sum > total,
                        "{max}/{overlap} md={markdown}: {sum} vs {total}"
                    );
                }
                let mean = sum / chunks.len();
                assert!(mean * 3 >= max as usize * 2, "{max}/{overlap}: mean {mean}");
            }
        }
    }

    #[test]
    fn overlap_repeats_text_between_neighbours() {
        // One paragraph: text-splitter does not overlap chunks across a paragraph break.
        let ch = chunker();
        let text = prose_in(1000, false);
        let chunks = ch.chunk(&text, c(100, 50), false);
        let starts: Vec<usize> = chunks.iter().map(|c| text.find(&c.text).unwrap()).collect();
        for (i, w) in chunks.windows(2).enumerate() {
            let end_of_first = starts[i] + w[0].text.len();
            assert!(
                starts[i + 1] < end_of_first,
                "chunk {i} and {} do not overlap",
                i + 1
            );
        }
        let no_overlap = ch.chunk(&text, c(100, 0), false);
        assert!(chunks.len() > no_overlap.len());
    }

    #[test]
    fn deterministic() {
        let ch = chunker();
        let text = prose(2000);
        assert_eq!(
            ch.chunk(&text, c(128, 32), true),
            ch.chunk(&text, c(128, 32), true)
        );
    }

    #[test]
    fn markdown_splits_at_headings() {
        let ch = chunker();
        let section = |title: &str| format!("# {title}\n\n{}\n\n", prose(60));
        let text = format!(
            "{}{}{}",
            section("Alpha"),
            section("Beta"),
            section("Gamma")
        );
        let chunks = ch.chunk(&text, c(100, 0), true);
        assert!(chunks.len() >= 3);
        for (chunk, title) in chunks.iter().zip(["# Alpha", "# Beta", "# Gamma"]) {
            assert!(chunk.text.starts_with(title), "{:?}", &chunk.text[..20]);
        }
    }

    #[test]
    fn the_shipped_truncation_is_off() {
        // tokenizer.json truncates at 128 and pads to 128; neither may leak into counts.
        let ch = chunker();
        assert_eq!(ch.count_tokens("a"), 1);
        assert!(ch.count_tokens(&prose(500)) > 500);
    }

    #[test]
    fn missing_tokenizer_is_an_error() {
        let err = Chunker::from_tokenizer_file(Path::new("/nonexistent/tokenizer.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/tokenizer.json"), "{err}");
    }

    #[test]
    fn a_chunk_is_embedded_after_its_section_title_when_the_window_has_room() {
        let ch = chunker();
        let title = "12.1.6 The shell command-line processing sequence";
        let body = prose(100);
        let n = ch.count_tokens(&body);
        // Room in the window: the title on its own line, then the chunk, all of it.
        let input = ch.embedding_input(Some(title), &body, n + 40);
        assert_eq!(input, format!("{title}\n\n{body}"));
        assert!(ch.count_tokens(&input) <= n + 40);
        // The chunk that starts with the heading itself gets no second copy.
        let headed = format!("#### {title}\n\n{body}");
        assert_eq!(ch.embedding_input(Some(title), &headed, 1000), headed);
        // Little room: the title is cut after a whole word, and still fits.
        let tight = ch.embedding_input(Some(title), &body, n + 6);
        let kept = tight.strip_suffix(&format!("\n\n{body}")).unwrap();
        assert!(
            title.starts_with(kept) && kept.len() < title.len(),
            "{kept:?}"
        );
        assert!(title[kept.len()..].starts_with(' '), "{kept:?}");
        assert!(ch.count_tokens(&tight) <= n + 6);
        // No room (a chunk filling the window), no title, no section: the chunk alone.
        assert_eq!(ch.embedding_input(Some(title), &body, n + 2), body);
        assert_eq!(ch.embedding_input(Some(title), &body, n), body);
        assert_eq!(ch.embedding_input(None, &body, n + 40), body);
        assert_eq!(ch.embedding_input(Some("  "), &body, n + 40), body);
    }

    #[test]
    fn a_heading_is_never_a_chunk_alone() {
        let ch = chunker();
        // The section's first block (one paragraph, lines without blank lines between them)
        // does not fit beside the heading: the heading starts the first part of it.
        let block: String = (0..40)
            .map(|i| format!("- step {i}: the shell expands the words of the line\n"))
            .collect();
        let text = format!(
            "# Intro\n\nShort.\n\n#### 12.1.6 The processing sequence\n{block}\n## Next\n\nEnd.\n"
        );
        let chunks = ch.chunk(&text, c(100, 20), true);
        assert!(
            chunks.iter().all(|c| !headings_only(&c.text)),
            "{chunks:#?}"
        );
        assert!(chunks.iter().all(|c| c.tokens <= 100));
        let first = chunks.iter().find(|c| c.text.contains("12.1.6")).unwrap();
        assert!(first.text.starts_with("#### 12.1.6") && first.text.contains("step 0:"));
        assert_eq!(
            &text[first.offset..first.offset + first.text.len()],
            first.text
        );
        // Every line is still in some chunk.
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            assert!(chunks.iter().any(|c| c.text.contains(line)), "{line:?}");
        }
        // A heading followed directly by another heading still stays with its section.
        assert!(headings_only("## A\n\n### B\n"));
        assert!(!headings_only("## A\nbody"));
        assert!(!headings_only("#hashtag"));
    }
}
