//! Layout: a page's glyphs as lines in reading order (rows by baseline, words from gaps,
//! columns from a shared vertical gutter, paragraphs from larger vertical gaps); then, across
//! pages, running headers, footers and page numbers dropped.

use std::collections::{HashMap, HashSet};

use super::content::{Glyph, PageGlyphs};

/// One line of text on a page, in reading order.
#[derive(Clone, Debug)]
pub(super) struct Line {
    pub(super) text: String,
    /// Baseline in display space, for header/footer detection.
    y: f64,
    /// Starts a paragraph (a larger gap, a new column or block, a size change).
    pub(super) para: bool,
    /// Among the two topmost or bottommost lines of the page.
    edge: bool,
    /// Font size of the line (median of its glyphs), for telling headings from body text.
    pub(super) size: f64,
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// Lays a page's glyphs out as lines in reading order, one orientation after another
/// (the most common first).
pub(super) fn layout_page(page: &PageGlyphs) -> Vec<Line> {
    let mut counts = [0usize; 4];
    for g in &page.glyphs {
        counts[usize::from(g.orient)] += 1;
    }
    let mut orients: Vec<u8> = (0..4u8).filter(|&o| counts[usize::from(o)] > 0).collect();
    orients.sort_by_key(|&o| std::cmp::Reverse(counts[usize::from(o)]));
    let mut lines = Vec::new();
    for o in orients {
        let glyphs: Vec<&Glyph> = page.glyphs.iter().filter(|g| g.orient == o).collect();
        let mut part = layout_glyphs(page, &glyphs);
        if let Some(first) = part.first_mut() {
            first.para = true;
        }
        lines.extend(part);
    }
    // Mark the page's edge lines: candidates for running headers, footers and page numbers.
    let mut by_y: Vec<usize> = (0..lines.len()).collect();
    by_y.sort_by(|&a, &b| lines[b].y.total_cmp(&lines[a].y));
    for &i in by_y.iter().take(2).chain(by_y.iter().rev().take(2)) {
        lines[i].edge = true;
    }
    lines
}

/// A row: glyphs sharing a baseline, across the whole page width.
struct Row<'g> {
    y: f64,
    size: f64,
    glyphs: Vec<&'g Glyph>,
}

fn layout_glyphs(page: &PageGlyphs, glyphs: &[&Glyph]) -> Vec<Line> {
    if glyphs.is_empty() {
        return Vec::new();
    }
    let mut sorted: Vec<&Glyph> = glyphs.to_vec();
    sorted.sort_by(|a, b| b.y.total_cmp(&a.y));
    // Rows by baseline, compared with the row's first baseline so rows do not drift.
    let mut rows: Vec<Row<'_>> = Vec::new();
    for g in sorted {
        match rows.last_mut() {
            Some(r) if (r.y - g.y).abs() < 0.5 * r.size.min(g.size).max(1.0) => r.glyphs.push(g),
            _ => rows.push(Row {
                y: g.y,
                size: g.size,
                glyphs: vec![g],
            }),
        }
    }
    for r in &mut rows {
        r.glyphs.sort_by(|a, b| a.x0.total_cmp(&b.x0));
        let mut sizes: Vec<f64> = r.glyphs.iter().map(|g| g.size).collect();
        r.size = median(&mut sizes).unwrap_or(r.size);
    }
    let gutters = find_gutters(page, &rows);

    // Split rows into columns; a row crossing a gutter spans all columns.
    let ncols = gutters.len() + 1;
    let mut lines = Vec::new();
    let mut block: Vec<Vec<Segment>> = vec![Vec::new(); ncols];
    for r in &rows {
        let crosses = r.glyphs.iter().any(|g| {
            gutters
                .iter()
                .any(|&(lo, hi)| g.x0 < hi && g.x1 > lo && !page.text_of(g).trim().is_empty())
        });
        if crosses {
            flush_block(page, &mut block, &mut lines);
            let seg = Segment {
                y: r.y,
                size: r.size,
                glyphs: r.glyphs.clone(),
            };
            emit_column(page, &[seg], &mut lines);
            continue;
        }
        let mut parts: Vec<Vec<&Glyph>> = vec![Vec::new(); ncols];
        for &g in &r.glyphs {
            let mid = (g.x0 + g.x1) / 2.0;
            let col = gutters.iter().filter(|&&(lo, _)| mid >= lo).count();
            parts[col].push(g);
        }
        for (col, glyphs) in parts.into_iter().enumerate() {
            if !glyphs.is_empty() {
                block[col].push(Segment {
                    y: r.y,
                    size: r.size,
                    glyphs,
                });
            }
        }
    }
    flush_block(page, &mut block, &mut lines);
    lines
}

#[derive(Clone)]
struct Segment<'g> {
    y: f64,
    size: f64,
    glyphs: Vec<&'g Glyph>,
}

fn flush_block<'g>(page: &PageGlyphs, block: &mut [Vec<Segment<'g>>], lines: &mut Vec<Line>) {
    for col in block.iter_mut() {
        if !col.is_empty() {
            emit_column(page, col, lines);
            col.clear();
        }
    }
}

/// Lines of one column (or one spanning row), with paragraph breaks from vertical gaps.
fn emit_column(page: &PageGlyphs, segs: &[Segment<'_>], lines: &mut Vec<Line>) {
    let mut gaps: Vec<f64> = segs
        .windows(2)
        .map(|w| w[0].y - w[1].y)
        .filter(|&g| g > 0.0 && g < 3.0 * segs[0].size.max(1.0))
        .collect();
    let typical = median(&mut gaps);
    let mut first = true;
    let mut prev: Option<&Segment<'_>> = None;
    for seg in segs {
        let text = join_glyphs(page, &seg.glyphs);
        if text.trim().is_empty() {
            continue;
        }
        let para = match prev {
            None => first,
            Some(p) => {
                let gap = p.y - seg.y;
                let limit = typical.map_or(1.6 * seg.size, |t| (1.35 * t).max(t + 0.3 * seg.size));
                let size_change = (p.size - seg.size).abs() > 0.2 * p.size.max(seg.size);
                gap > limit || gap < -0.5 * seg.size || size_change
            }
        };
        first = false;
        lines.push(Line {
            text: text.trim().to_owned(),
            y: seg.y,
            para,
            edge: false,
            size: seg.size,
        });
        prev = Some(seg);
    }
}

/// Joins the glyphs of a line (sorted by x), inserting spaces at gaps.
fn join_glyphs(page: &PageGlyphs, glyphs: &[&Glyph]) -> String {
    let mut out = String::new();
    let mut prev: Option<&Glyph> = None;
    let mut pending_space = false;
    for &g in glyphs {
        let t = page.text_of(g);
        if t.trim().is_empty() {
            pending_space = true;
            continue;
        }
        if let Some(p) = prev {
            // Same glyph drawn twice at (almost) the same place: fake bold or shadow.
            if page.text_of(p) == t
                && (g.x0 - p.x0).abs() < 0.3 * (p.x1 - p.x0).max(0.1 * g.size)
                && (g.y - p.y).abs() < 0.2 * g.size
            {
                continue;
            }
            let gap = g.x0 - p.x1;
            let size = p.size.min(g.size);
            if pending_space || gap > 0.15 * size {
                out.push(' ');
            }
        }
        pending_space = false;
        out.push_str(t);
        prev = Some(g);
    }
    out
}

/// Finds vertical gutters: x bands that (almost) no row crosses, with text on both sides.
fn find_gutters(page: &PageGlyphs, rows: &[Row<'_>]) -> Vec<(f64, f64)> {
    if rows.len() < 6 {
        return Vec::new();
    }
    let all = rows.iter().flat_map(|r| r.glyphs.iter());
    let (mut xmin, mut xmax) = (f64::INFINITY, f64::NEG_INFINITY);
    for g in all {
        xmin = xmin.min(g.x0);
        xmax = xmax.max(g.x1);
    }
    let width = xmax - xmin;
    if !(width.is_finite() && width > 1.0) {
        return Vec::new();
    }
    let bins = (width.ceil() as usize).min(4000);
    let bin_w = width / bins as f64;
    let mut crossing = vec![0usize; bins];
    let mut row_left = Vec::with_capacity(rows.len());
    let mut row_right = Vec::with_capacity(rows.len());
    let mut mark = vec![usize::MAX; bins];
    for (ri, r) in rows.iter().enumerate() {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for g in &r.glyphs {
            if page.text_of(g).trim().is_empty() {
                continue;
            }
            lo = lo.min(g.x0);
            hi = hi.max(g.x1);
            let b0 = (((g.x0 - xmin) / bin_w).floor().max(0.0) as usize).min(bins - 1);
            let b1 = (((g.x1 - xmin) / bin_w).ceil().max(0.0) as usize).min(bins);
            for b in b0..b1 {
                if mark[b] != ri {
                    mark[b] = ri;
                    crossing[b] += 1;
                }
            }
        }
        row_left.push(lo);
        row_right.push(hi);
    }
    let mut sizes: Vec<f64> = rows.iter().map(|r| r.size).collect();
    let size = median(&mut sizes).unwrap_or(10.0);
    let min_width = (1.0 * size).max(6.0);
    // A few rows may cross a gutter: a title or a figure caption spanning the columns.
    let tolerance = (rows.len() / 10).max(1);
    let mut gutters = Vec::new();
    let mut b = 0;
    while b < bins {
        if crossing[b] > tolerance {
            b += 1;
            continue;
        }
        let start = b;
        while b < bins && crossing[b] <= tolerance {
            b += 1;
        }
        let lo = xmin + start as f64 * bin_w;
        let hi = xmin + b as f64 * bin_w;
        if hi - lo < min_width || start == 0 || b >= bins {
            continue;
        }
        let left = row_left.iter().filter(|&&x| x < lo).count();
        let right = row_right.iter().filter(|&&x| x > hi).count();
        let both = rows.len() * 3 / 10;
        if left >= both && right >= both {
            gutters.push((lo, hi));
        }
    }
    gutters
}

// ---------------------------------------------------------------------------------------------
// Running headers, footers and page numbers

/// Lines repeated at the same place on many pages, with digits blurred (so "Page 3" and
/// "Page 4" match).
fn running_key(line: &Line) -> (String, i64) {
    // Front matter numbers its pages in roman numerals: "Manual xviii" matches "Manual iv".
    let words: Vec<&str> = line.text.split_whitespace().collect();
    let blurred: Vec<&str> = words
        .iter()
        .map(|w| {
            if words.len() > 1 && is_roman(w) {
                "#"
            } else {
                w
            }
        })
        .collect();
    let text: String = blurred
        .concat()
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                '#'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .filter(|c| !c.is_whitespace())
        .collect();
    (text, (line.y / 4.0).round() as i64)
}

pub(super) fn is_page_number(text: &str) -> bool {
    let t = text
        .trim()
        .trim_matches(|c: char| matches!(c, '-' | '–' | '—' | '[' | ']' | '(' | ')' | '|' | ' '));
    let t = t
        .strip_prefix("Page ")
        .or_else(|| t.strip_prefix("page "))
        .unwrap_or(t);
    let t = t
        .split(" of ")
        .next()
        .unwrap_or(t)
        .split('/')
        .next()
        .unwrap_or(t)
        .trim();
    (!t.is_empty() && t.len() <= 6 && t.chars().all(|c| c.is_ascii_digit())) || is_roman(t)
}

fn is_roman(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 8
        && (t.chars().all(|c| matches!(c, 'i' | 'v' | 'x' | 'l' | 'c'))
            || t.chars().all(|c| matches!(c, 'I' | 'V' | 'X' | 'L' | 'C')))
}

/// Dot leaders (`Installation . . . . . . 41`, `Index.........7`) carry no words and drown a
/// table of contents' text in punctuation for the embedder: a run of four or more dots
/// (spaced or not) becomes one ` … `.
pub(super) fn collapse_leaders(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains("....") && !line.contains(". . . .") && !line.contains("\u{2026}\u{2026}") {
        return std::borrow::Cow::Borrowed(line);
    }
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if matches!(chars[i], '.' | '\u{2026}') {
            let mut j = i;
            let mut dots = 0;
            let mut end = i;
            while j < chars.len() && matches!(chars[j], '.' | '\u{2026}' | ' ' | '\u{a0}') {
                if chars[j] != ' ' && chars[j] != '\u{a0}' {
                    dots += if chars[j] == '.' { 1 } else { 3 };
                    end = j + 1;
                }
                j += 1;
            }
            if dots >= 4 {
                let trimmed = out.trim_end().len();
                out.truncate(trimmed);
                out.push_str(if out.is_empty() {
                    "\u{2026} "
                } else {
                    " \u{2026} "
                });
                i = end;
                while i < chars.len() && matches!(chars[i], ' ' | '\u{a0}') {
                    i += 1;
                }
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(out.trim_end().to_owned())
}

pub(super) fn drop_running_lines(pages: &mut [Vec<Line>]) {
    let min_pages = if pages.len() >= 6 { 3 } else { 2 };
    let mut seen: HashMap<(String, i64), HashSet<usize>> = HashMap::new();
    if pages.len() >= 2 {
        for (p, lines) in pages.iter().enumerate() {
            for l in lines.iter().filter(|l| l.edge) {
                let (text, y) = running_key(l);
                // Tolerate a baseline that moves a little between pages.
                for dy in -1..=1 {
                    seen.entry((text.clone(), y + dy)).or_default().insert(p);
                }
            }
        }
    }
    for lines in pages.iter_mut() {
        lines.retain(|l| {
            if !l.edge {
                return true;
            }
            if is_page_number(&l.text) {
                return false;
            }
            let key = running_key(l);
            seen.get(&key).is_none_or(|p| p.len() < min_pages)
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::tests::{body, courier, document, pdf, save, text};
    use super::*;

    #[test]
    fn paragraphs_from_vertical_gaps() {
        let bytes = pdf(&[vec![
            (72.0, 700.0, "First paragraph line one"),
            (72.0, 688.0, "and line two."),
            (72.0, 676.0, "still the first."),
            (72.0, 640.0, "Second paragraph."),
        ]]);
        assert_eq!(
            text(&bytes),
            "First paragraph line one\nand line two.\nstill the first.\n\nSecond paragraph."
        );
    }

    #[test]
    fn spaces_from_gaps_and_kerning() {
        let content = b"BT /F1 10 Tf 72 700 Td [(Hello)-600(world)] TJ [(ke)20(rn)] TJ \
            1 0 0 1 300 700 Tm (apart) Tj ET"
            .to_vec();
        let bytes = save(&mut document(&[content], courier()).0);
        assert_eq!(text(&bytes), "Hello worldkern apart");
    }

    #[test]
    fn two_columns_read_column_by_column() {
        let left = [
            "left one",
            "left two",
            "left three",
            "left four",
            "left five",
            "left six",
            "left seven",
            "left eight",
        ];
        let right = [
            "right one",
            "right two",
            "right three",
            "right four",
            "right five",
            "right six",
            "right seven",
            "right eight",
        ];
        let mut lines = vec![(
            72.0,
            740.0,
            "A Title Spanning Both Columns Of The Page Here",
        )];
        lines.extend(body(72.0, 700.0, &left));
        lines.extend(body(320.0, 700.0, &right));
        let t = text(&pdf(&[lines]));
        let expected_left = left.join("\n");
        let expected_right = right.join("\n");
        assert_eq!(
            t,
            format!("A Title Spanning Both Columns Of The Page Here\n\n{expected_left}\n\n{expected_right}")
        );
    }

    #[test]
    fn dot_leaders_collapse() {
        assert_eq!(
            collapse_leaders("2.1 Debian tools . . . . . . . . . . 41"),
            "2.1 Debian tools \u{2026} 41"
        );
        assert_eq!(collapse_leaders("Index..........7"), "Index \u{2026} 7");
        assert_eq!(
            collapse_leaders("Wait... what? e.g. x.y.z"),
            "Wait... what? e.g. x.y.z"
        );
        assert_eq!(collapse_leaders("Tail . . . . ."), "Tail \u{2026}");
        assert_eq!(collapse_leaders("....... 3"), "\u{2026} 3");
    }

    #[test]
    fn roman_page_numbers_in_running_lines_match() {
        let line = |text: &str| Line {
            text: text.to_owned(),
            y: 700.0,
            para: false,
            edge: true,
            size: 10.0,
        };
        assert_eq!(
            running_key(&line("Debian Reference xviii")),
            running_key(&line("Debian Reference iv"))
        );
        assert_ne!(running_key(&line("Part I")), running_key(&line("Part Two")));
    }

    #[test]
    fn headers_footers_and_page_numbers_are_dropped() {
        let pages: Vec<Vec<(f64, f64, &str)>> = ["4", "5", "6", "7"]
            .iter()
            .zip([
                "Alpha text here.",
                "Beta text here.",
                "Gamma text here.",
                "Delta text here.",
            ])
            .zip(["More alpha.", "More beta.", "More gamma.", "More delta."])
            .map(|((n, t), more)| {
                vec![
                    (72.0, 760.0, "ACME Widget Manual"),
                    (72.0, 700.0, t),
                    (72.0, 688.0, more),
                    (300.0, 40.0, *n),
                ]
            })
            .collect();
        let t = text(&pdf(&pages));
        assert!(!t.contains("ACME"), "{t}");
        assert!(!t.chars().any(|c| c.is_ascii_digit()), "{t}");
        assert!(
            t.starts_with("Alpha text here.\nMore alpha.\n\nBeta"),
            "{t}"
        );
    }
}
