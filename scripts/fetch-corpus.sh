#!/usr/bin/env bash
# fetch-corpus.sh: real documents nobody here wrote, for the CI-backed extraction tests
# (tests/python/test_real_documents.py). The full fidelity table is scripts/fidelity.py.
#
#   scripts/fetch-corpus.sh                  # into <repo>/tests/corpus (git-ignored)
#   RAGSTORE_CORPUS_DIR=/tmp/c scripts/fetch-corpus.sh
#
# From Debian's `debian-reference-en` package (fetched with `apt-get download`, unpacked, never
# installed): the Debian Reference as PDF (~300 pages, two fonts families, running headers) and
# three of its HTML chapters; pandoc makes DOCX, ODT, EPUB and RTF versions of one chapter. Each
# document gets its reference text beside it, `NAME.ref.txt`, from poppler's `pdftotext` for the
# PDF and `pandoc -t plain` for the rest, as the issue that asked for these tests specifies.
#
# Installs poppler-utils and pandoc with apt-get if they are missing (CI runs as root).
# Idempotent: a corpus dir whose `.complete` marker holds the current version is left alone.
set -euo pipefail
exec </dev/null

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${RAGSTORE_CORPUS_DIR:-$repo/tests/corpus}"
# Bump when the set of documents changes, so an older corpus is fetched again.
version=2
if [ "$(cat "$out/.complete" 2>/dev/null)" = "$version" ]; then
    exit 0
fi

apt_updated=0
apt_update() {
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
}
missing=()
command -v pdftotext >/dev/null || missing+=(poppler-utils)
command -v pandoc >/dev/null || missing+=(pandoc)
if [ ${#missing[@]} -gt 0 ]; then
    echo "fetch-corpus: installing ${missing[*]}" >&2
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# apt-get download writes into the current dir; as root it may warn that the _apt user
# cannot write there, which is harmless.
if ! (cd "$work" && apt-get download -qq debian-reference-en 2>/dev/null); then
    apt_update
    (cd "$work" && apt-get download -qq debian-reference-en 2>/dev/null)
fi
dpkg-deb -x "$work"/debian-reference-en_*.deb "$work/root"
src="$work/root/usr/share/debian-reference"

stage="$out.tmp"
rm -rf "$stage"
mkdir -p "$stage"
cp "$src/debian-reference.en.pdf" "$src/ch02.en.html" "$src/ch07.en.html" "$src/index.en.html" "$stage/"
for ext in docx odt epub rtf; do
    pandoc -s "$src/ch02.en.html" -o "$stage/ch02.en.$ext" 2>/dev/null
done

pdftotext "$stage/debian-reference.en.pdf" "$stage/debian-reference.en.pdf.ref.txt"
for f in ch02.en.html ch07.en.html index.en.html; do
    pandoc -t plain --wrap=none "$stage/$f" -o "$stage/$f.ref.txt"
done
# The converted chapter is compared with its source page (pandoc reads its own ODT back poorly).
for ext in docx odt epub rtf; do
    cp "$stage/ch02.en.html.ref.txt" "$stage/ch02.en.$ext.ref.txt"
done

echo "$version" >"$stage/.complete"
rm -rf "$out"
mv "$stage" "$out"
echo "fetch-corpus: $(find "$out" -type f ! -name '*.ref.txt' ! -name '.complete' | wc -l) documents in $out" >&2
