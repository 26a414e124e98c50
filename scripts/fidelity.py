#!/usr/bin/env python3
"""Extraction fidelity on documents nobody here wrote.

Fetches Debian documentation packages (gnuplot-doc, octave-doc, debian-reference-en,
postgresql-doc-15) with `apt-get download`, unpacks them in a temp dir under /tmp, and compares
ragstore's extracted text (crates/extract/examples/extract.rs, release build) with reference
text: poppler's `pdftotext` for PDFs, `pandoc -t plain` for HTML and for the DOCX/ODT/EPUB files
made from those HTML pages with pandoc.

Per document: word recall and precision (multisets of lowercased alphanumeric words) and, for
PDFs, the extraction time as a ratio to pdftotext (median of 3 runs each).
Targets: recall >= 0.97, precision >= 0.95, PDF time <= 2x.

Usage: scripts/fidelity.py [--keep]   (as root, for apt-get; CARGO_TARGET_DIR is honoured)
"""

import collections
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PACKAGES = ["gnuplot-doc", "octave-doc", "debian-reference-en", "postgresql-doc-15"]
PDF_NAMES = [
    "gnuplot.pdf",
    "liboctave.pdf",
    "octave.pdf",
    "refcard-a4.pdf",  # three columns a page
    "debian-reference.en.pdf",
]
HTML_PAGES = [
    "/usr/share/debian-reference/index.en.html",
    "/usr/share/debian-reference/ch02.en.html",
    "postgresql-doc-15/html/tutorial-join.html",
    "postgresql-doc-15/html/sql-select.html",
    "postgresql-doc-15/html/datatype-numeric.html",
    "postgresql-doc-15/html/functions-string.html",
]
# Made with pandoc from the first four HTML pages; their reference is the HTML page's.
CONVERTED = ["docx", "odt", "epub", "rtf"]
RECALL, PRECISION, TIME_RATIO = 0.97, 0.95, 2.0
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_tools():
    missing = [pkg for tool, pkg in (("pdftotext", "poppler-utils"), ("pandoc", "pandoc"))
               if shutil.which(tool) is None]
    if missing:
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", *missing])


def fetch(work):
    debs = os.path.join(work, "debs")
    os.makedirs(debs)
    try:
        run(["apt-get", "download", *PACKAGES], cwd=debs, stdout=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "download", *PACKAGES], cwd=debs, stdout=subprocess.DEVNULL)
    root = os.path.join(work, "root")
    for deb in sorted(os.listdir(debs)):
        run(["dpkg-deb", "-x", os.path.join(debs, deb), root])
    shutil.rmtree(debs)
    return root


def find(root, name):
    for dirpath, _, files in os.walk(root):
        if name in files:
            return os.path.join(dirpath, name)
    return None


def build_extractor():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    run(
        ["cargo", "build", "--release", "--quiet", "-p", "ragstore-extract", "--example", "extract"],
        cwd=REPO,
    )
    return os.path.join(target, "release", "examples", "extract")


def words(text):
    return collections.Counter(re.findall(r"[^\W_]+", text.lower()))


def timed(cmd):
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True)
    return time.perf_counter() - start, proc


def median_time(cmd):
    return statistics.median(timed(cmd)[0] for _ in range(3))


def ours(extractor, path):
    _, proc = timed([extractor, path])
    if proc.returncode == 3:
        return None, "unsupported"
    if proc.returncode != 0:
        return None, "error: " + proc.stderr.decode(errors="replace").strip()[:60]
    return proc.stdout.decode(errors="replace"), "ok"


def reference(path, kind):
    if kind == "pdf":
        cmd = ["pdftotext", path, "-"]
    else:
        cmd = ["pandoc", "-t", "plain", "--wrap=none", path]
    return subprocess.run(cmd, check=True, capture_output=True).stdout.decode(errors="replace")


def main():
    keep = "--keep" in sys.argv
    ensure_tools()
    work = tempfile.mkdtemp(prefix="ragstore-fidelity-", dir="/tmp")
    try:
        extractor = build_extractor()
        root = fetch(work)
        docs = []
        for name in PDF_NAMES:
            path = find(root, name)
            if path:
                docs.append((name, path, "pdf", path))
            else:
                print(f"note: {name} not found in the packages", file=sys.stderr)
        htmls = [root + p if p.startswith("/") else os.path.join(root, "usr/share/doc", p)
                 for p in HTML_PAGES]
        htmls = [p for p in htmls if os.path.exists(p)]
        for p in htmls:
            docs.append((os.path.basename(p), p, "html", p))
        for p in htmls[:4]:
            for ext in CONVERTED:
                out = os.path.join(work, os.path.basename(p).rsplit(".", 1)[0] + "." + ext)
                run(["pandoc", "-s", p, "-o", out], stderr=subprocess.DEVNULL)
                # Reference: the source page (pandoc reads its own ODT back poorly).
                docs.append((os.path.basename(out), out, ext, p))

        header = f"{'document':32} {'kind':5} {'words':>8} {'recall':>7} {'precis.':>7} {'time x':>7}  status"
        print(header)
        print("-" * len(header))
        failures = 0
        for name, path, kind, source in docs:
            ref = words(reference(source, "pdf" if kind == "pdf" else "html"))
            text, status = ours(extractor, path)
            if text is None:
                print(f"{name:32} {kind:5} {sum(ref.values()):8} {'-':>7} {'-':>7} {'-':>7}  {status}")
                failures += 1
                continue
            got = words(text)
            common = sum((got & ref).values())
            recall = common / max(1, sum(ref.values()))
            precision = common / max(1, sum(got.values()))
            ratio = "-"
            ok = recall >= RECALL and precision >= PRECISION
            if kind == "pdf":
                t_ours = median_time([extractor, path])
                t_ref = median_time(["pdftotext", path, "-"])
                r = t_ours / max(t_ref, 1e-6)
                ratio = f"{r:.2f}"
                ok = ok and r <= TIME_RATIO
            failures += 0 if ok else 1
            print(f"{name:32} {kind:5} {sum(ref.values()):8} {recall:7.3f} {precision:7.3f} {ratio:>7}  "
                  f"{'ok' if ok else 'below target'}")
        print(f"\ntargets: recall >= {RECALL}, precision >= {PRECISION}, PDF time <= {TIME_RATIO}x pdftotext")
        return 1 if failures else 0
    finally:
        if keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
