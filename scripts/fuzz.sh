#!/usr/bin/env bash
# Fuzzes every extractor entry point for a while (not part of CI).
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 120 s, all targets
# Needs a nightly toolchain (libFuzzer with sanitizers) and cargo-fuzz, installed if missing.
# Crashes land in fuzz/artifacts/<target>/; reproduce with
#   cargo +nightly fuzz run --fuzz-dir fuzz <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

cd "$(dirname "$0")/.."
secs="${1:-120}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(extract pdf office html rtf xml text)
fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: installing the nightly toolchain" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# A few seeds so the fuzzer starts from real structure, not only from random bytes.
seed() { # target name content
    mkdir -p "fuzz/corpus/$1"
    [ -e "fuzz/corpus/$1/$2" ] || printf '%b' "$3" >"fuzz/corpus/$1/$2"
}
seed html doc '<!DOCTYPE html><html><head><title>t</title><style>p{}</style></head><body><nav>n</nav><main><h1>A &amp; B</h1><p>x<ul><li>a<li>b</ul><table><tr><td>1<td>2</table><pre>\n code</pre></main></body></html>'
seed rtf doc '{\\rtf1\\ansi\\ansicpg1252{\\fonttbl{\\f0 Arial;}}{\\*\\gen x}Caf\\'"'"'e9 \\u8364? \\uc2\\u26085\\'"'"'93\\'"'"'fa\\par{\\field{\\*\\fldinst X}{\\fldrslt y}}\\bin3 abc\\par}'
seed xml doc '<?xml version="1.0" encoding="ISO-8859-1"?><!DOCTYPE a [<!ENTITY e "&#38;e;">]><a x="1"><b>t &amp; &#x41; &e;</b><![CDATA[c]]><c/>mixed <i>in</i> line</a>'
seed text sjis '\x93\xfa\x96\x7b\x8c\xea\x82\xcc\x83\x65\x83\x4c\x83\x58\x83\x67'
seed text utf16 'h\x00e\x00l\x00l\x00o\x00 \x00w\x00o\x00r\x00l\x00d\x00'
seed text cp1252 'He said \x93hi\x94 \x96 caf\xe9'
# PDF: a small text PDF written here (a font with a ToUnicode map, an uncompressed content
# stream), plus whatever small PDFs this machine has.
seed pdf tiny '%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Resources<</Font<</F1 4 0 R>>>>/Contents 5 0 R>>endobj\n4 0 obj<</Type/Font/Subtype/Type1/BaseFont/Helvetica/Encoding<</Differences[65/A/fi]>>/ToUnicode 6 0 R>>endobj\n5 0 obj<</Length 90>>stream\nBT /F1 12 Tf 72 720 Td (Hello wor-) Tj 0 -14 Td [(ld)-250(A)] TJ T* (\\101\\102) Tj ET\nendstream endobj\n6 0 obj<</Length 74>>stream\n1 begincodespacerange <00><FF> endcodespacerange 1 beginbfchar <41><FB01> endbfchar\nendstream endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n'
find /usr/share/doc -name '*.pdf' -size -256k 2>/dev/null | head -5 | while read -r f; do
    [ -e "fuzz/corpus/pdf/$(basename "$f")" ] || cp "$f" fuzz/corpus/pdf/
done
# Office: the fixtures whole, and each of their entries as the content the target swaps in
# (first byte: template, second: entry; see fuzz_targets/office.rs).
mkdir -p fuzz/corpus/office
python3 - <<'PY'
import os, zipfile
for pick, ext in enumerate(["docx", "pptx", "odt", "epub"]):
    path = f"crates/extract/tests/fixtures/office/sample.{ext}"
    data = open(path, "rb").read()
    open(f"fuzz/corpus/office/whole-{ext}", "wb").write(data)
    with zipfile.ZipFile(path) as z:
        for i, info in enumerate(z.infolist()[:250]):
            open(f"fuzz/corpus/office/{ext}-{i}", "wb").write(bytes([pick, i]) + z.read(info))
for pick, n in ((4, 6), (5, 2)):
    for i in range(n):
        open(f"fuzz/corpus/office/inline{pick}-{i}", "wb").write(bytes([pick, i]) + b"<a><b>x</b></a>")
PY
for t in pdf html rtf xml text; do
    mkdir -p fuzz/corpus/extract
    for f in fuzz/corpus/$t/*; do
        # The extract target's first byte picks a file name (see fuzz_targets/extract.rs).
        [ -e "fuzz/corpus/extract/$t-$(basename "$f")" ] ||
            { printf '\x00'; cat "$f"; } >"fuzz/corpus/extract/$t-$(basename "$f")"
    done
done

status=0
for target in "${targets[@]}"; do
    echo "fuzz: $target for ${secs}s" >&2
    # -rss_limit_mb: an extractor that balloons is a finding, not a reason to swap.
    if ! cargo +nightly fuzz run --fuzz-dir fuzz "$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=262144 -timeout=20; then
        echo "fuzz: $target FAILED (see fuzz/artifacts/$target/)" >&2
        status=1
    fi
done
exit "$status"
