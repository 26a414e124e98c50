#!/usr/bin/env python3
"""eval-retrieval.py: labelled retrieval evaluation of a running ragstore (or llama-stack) server.

The questions (tests/eval/questions.jsonl, one JSON object a line) are asked of vector stores
holding the Debian Reference that `scripts/fetch-corpus.sh` fetches; each question names the
document that answers it and a short verbatim passage of it (`answer`: a string, or a list of
alternatives when the fact is stated in two places). Printed: hit@1, hit@5 and MRR@10 overall,
per kind (`plain`, `paraphrase`, `identifier`, `deep`) and per store, the number of chunks in
each store, and the time from the first upload until every file was `completed`.

Kinds. `identifier`: the question names a command, option, file, package or function;
`paraphrase`: it shares almost no content words with its passage; `deep`: the passage starts at
least 200 words after its section's heading, past the first 254-token chunk of the section;
`plain`: none of these. Each question has one kind.

Stores. The PDF is the whole book and the HTML pages are two of its chapters and its table of
contents, so one store holding both would answer every chapter 2 and 7 question twice. The
documents go into two stores instead, and each question is asked of the store holding its
document:
  pdf   debian-reference.en.pdf (~300 pages: every chapter competes with every other)
  html  ch02.en.html, ch07.en.html, index.en.html (two chapters and the table of contents)

Scoring. A text is normalised by NFKC (ligatures), case-folding, and keeping only letters and
digits: quotes, dashes, line-end hyphenation, Markdown markup and whitespace all vanish, so
"time-\\nconsuming", "timeconsuming" and "time-consuming" compare equal. A search result *hits*
when its normalised text contains the normalised passage, or a run of the passage's words that
starts or ends the passage and holds at least 60 % of its words (the passage was cut between two
chunks and this chunk holds most of it). Markdown links `[text](url)` count as their text. The
file a hit comes from does not matter (the match is on text). A question's rank is that of its
first hit among the top 10 (max_num_results=10); hit@k is the share of questions ranked <= k,
MRR@10 the mean of 1/rank (0 when no hit).

Usage (from the repository root, a server running):
  python3 scripts/eval-retrieval.py                                 # default chunking (auto)
  python3 scripts/eval-retrieval.py --chunking static:254:32 --json out.json
  python3 scripts/eval-retrieval.py --vector-store vs_A --vector-store vs_B \\
      --search-extra '{"ranking_options": {"score_threshold": 0.2}}'   # reuse ingested stores
  python3 scripts/eval-retrieval.py --check                          # every passage is in its doc
  python3 scripts/eval-retrieval.py --json b.json --baseline tests/eval/baseline-auto.json
  python3 scripts/eval-retrieval.py --peer --base-url http://127.0.0.1:8321/v1    # llama-stack

Stores are kept (their ids are printed for --vector-store) unless --cleanup is given.
Needs the openai package (tests/python/requirements.txt) and RAGSTORE_CORPUS_DIR or
tests/corpus (scripts/fetch-corpus.sh).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import sys
import time
import unicodedata
from pathlib import Path

import openai

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = REPO / "tests" / "eval" / "questions.jsonl"
KINDS = ("plain", "paraphrase", "identifier", "deep")
STORES = {
    "pdf": ["debian-reference.en.pdf"],
    "html": ["ch02.en.html", "ch07.en.html", "index.en.html"],
}
TOP_K = 10
PARTIAL = 0.6  # share of a passage's words a chunk must hold when the passage was cut
PEER_STORE_BODY = {
    "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
    "embedding_dimension": 384,
    "provider_id": "sqlite-vec",
}


def log(msg: str) -> None:
    print(f"eval-retrieval: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Normalisation and matching

_LINK = re.compile(r"\[([^\]]*)\]\([^)\s]*\)")
_WORD = re.compile(r"[^\W_]+")


def _fold(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    return unicodedata.normalize("NFKC", text).casefold()


def norm(text: str) -> str:
    """Letters and digits only, case-folded: the form every comparison is made in."""
    return "".join(_WORD.findall(_fold(text)))


def passage_words(text: str) -> list[str]:
    return _WORD.findall(_fold(text))


class Passage:
    """One answer passage, prepared for matching: the whole, and its >= 60 % end runs."""

    def __init__(self, text: str):
        self.text = text
        words = passage_words(text)
        self.whole = "".join(words)
        need = max(1, -(-len(words) * 6 // 10))  # ceil(0.6 * n)
        runs = set()
        for m in range(need, len(words)):
            runs.add("".join(words[:m]))
            runs.add("".join(words[len(words) - m :]))
        # Shortest first is not needed: any run that occurs is a hit.
        self.runs = sorted(runs, key=len)

    def full_in(self, normed: str) -> bool:
        return self.whole in normed

    def hit(self, normed: str) -> bool:
        return self.whole in normed or any(r in normed for r in self.runs)


def passages_of(q: dict) -> list[Passage]:
    ans = q["answer"]
    return [Passage(a) for a in (ans if isinstance(ans, list) else [ans])]


# ---------------------------------------------------------------------------------------------
# Server access


def load_questions(path: Path) -> list[dict]:
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        q = json.loads(line)
        for key in ("id", "question", "doc", "answer", "kind"):
            if key not in q:
                sys.exit(f"{path}:{n}: missing {key!r}")
        if q["kind"] not in KINDS:
            sys.exit(f"{path}:{n}: kind {q['kind']!r} is not one of {KINDS}")
        out.append(q)
    ids = [q["id"] for q in out]
    dup = [i for i, c in collections.Counter(ids).items() if c > 1]
    if dup:
        sys.exit(f"{path}: duplicate ids {dup}")
    return out


def chunking_body(spec: str) -> dict | None:
    if spec == "auto":
        return None  # the server's default, exactly as a client that says nothing gets it
    m = re.fullmatch(r"static:(\d+):(\d+)", spec)
    if not m:
        sys.exit(f"--chunking must be auto or static:MAX:OVERLAP, not {spec!r}")
    return {
        "type": "static",
        "static": {
            "max_chunk_size_tokens": int(m.group(1)),
            "chunk_overlap_tokens": int(m.group(2)),
        },
    }


def file_chunks(client: openai.OpenAI, vs: str, file_id: str) -> list[str] | None:
    """The parsed chunks of a store's file, in order (None if the server has no such route).

    ragstore (and OpenAI) answer {data: [{type, text}], has_more, next_page}; llama-stack's
    older shape is {content: [{type, text}]} in one response.
    """
    texts: list[str] = []
    page = None
    for _ in range(100000):
        params = {"page": page} if page else {}
        try:
            body = client.get(
                f"/vector_stores/{vs}/files/{file_id}/content",
                cast_to=object,
                options={"params": params},
            )
        except openai.APIStatusError as e:
            log(f"file content of {file_id}: HTTP {e.status_code}; chunks not counted")
            return None
        items = body.get("data") if isinstance(body, dict) else None
        if items is None and isinstance(body, dict):
            items = body.get("content", [])
        texts.extend(i.get("text", "") for i in items if isinstance(i, dict))
        page = body.get("next_page") if isinstance(body, dict) else None
        if not (isinstance(body, dict) and body.get("has_more") and page):
            return texts
    return texts


def merge_chunks(chunks: list[str]) -> str:
    """The normalised text of a document rebuilt from its (possibly overlapping) chunks."""
    out = ""
    for c in chunks:
        n = norm(c)
        if not out:
            out = n
            continue
        joined = False
        probe = n[:40]
        if probe:
            start = max(0, len(out) - len(n) - 2000)
            p = out.find(probe, start)
            while p != -1:
                if n.startswith(out[p:]):
                    out = out + n[len(out) - p :]
                    joined = True
                    break
                p = out.find(probe, p + 1)
        if not joined:
            out += n
    return out


def wait_completed(client, files: dict[str, tuple[str, str]], t0: float, timeout_s: float):
    """Poll every (store, file) until none is in_progress; returns {file_id: (status, secs)}."""
    done: dict[str, tuple[str, float]] = {}
    last_report = time.monotonic()
    deadline = time.monotonic() + timeout_s
    while len(done) < len(files):
        for fid, (vs, name) in files.items():
            if fid in done:
                continue
            f = client.vector_stores.files.retrieve(fid, vector_store_id=vs)
            if f.status != "in_progress":
                secs = time.monotonic() - t0
                done[fid] = (f.status, secs)
                err = f" ({f.last_error})" if f.status != "completed" else ""
                log(f"{name}: {f.status} after {secs:.1f} s{err}")
        if len(done) == len(files):
            break
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout_s:.0f} s waiting for ingestion")
        if time.monotonic() - last_report > 60:
            log(f"waiting: {len(done)}/{len(files)} files done, {time.monotonic() - t0:.0f} s")
            last_report = time.monotonic()
        time.sleep(1.0)
    return done


def ingest(client, args, corpus: Path) -> tuple[dict, dict]:
    """Create the stores and ingest; returns ({group: store id}, timing)."""
    chunking = chunking_body(args.chunking)
    stores: dict[str, str] = {}
    attached: dict[str, tuple[str, str]] = {}
    t0 = time.monotonic()
    for group, names in STORES.items():
        extra = dict(PEER_STORE_BODY) if args.peer else None
        vs = client.vector_stores.create(
            name=f"eval-retrieval-{group}-{args.chunking}", extra_body=extra
        )
        stores[group] = vs.id
        for name in names:
            with open(corpus / name, "rb") as fh:
                up = client.files.create(file=(name, fh), purpose="assistants")
            kw = {"chunking_strategy": chunking} if chunking else {}
            client.vector_stores.files.create(vector_store_id=vs.id, file_id=up.id, **kw)
            attached[up.id] = (vs.id, name)
    uploaded_s = time.monotonic() - t0
    log(f"uploaded and attached {len(attached)} files in {uploaded_s:.1f} s; waiting")
    done = wait_completed(client, attached, t0, args.timeout)
    failed = {attached[f][1]: s for f, (s, _) in done.items() if s != "completed"}
    if failed:
        sys.exit(f"not completed: {failed}")
    per_file = {attached[f][1]: round(secs, 1) for f, (_, secs) in done.items()}
    return stores, {
        "upload_s": round(uploaded_s, 1),
        "completed_s": round(max(secs for _, secs in done.values()), 1),
        "per_file_s": per_file,
    }


def reported_chunking(client, vs: str, file_id: str) -> str:
    """The chunking a store's file was made with, as the server reports it."""
    try:
        cs = client.vector_stores.files.retrieve(file_id, vector_store_id=vs).chunking_strategy
    except openai.APIError:
        return "?"
    st = getattr(cs, "static", None)
    if st is not None:
        return f"static:{st.max_chunk_size_tokens}:{st.chunk_overlap_tokens}"
    return getattr(cs, "type", None) or "?"


def store_files(client, vs: str) -> dict[str, str]:
    """{filename: file id} of a store's completed files."""
    out = {}
    for f in client.vector_stores.files.list(vector_store_id=vs, limit=100):
        if f.status == "completed":
            out[client.files.retrieve(f.id).filename] = f.id
    return out


# ---------------------------------------------------------------------------------------------
# Evaluation


def in_top5(rank: int | None) -> bool:
    return rank is not None and rank <= 5


def metrics(ranks: list[int | None]) -> dict:
    n = len(ranks)
    if n == 0:
        return {"n": 0, "hit@1": None, "hit@5": None, "mrr@10": None}
    return {
        "n": n,
        "hit@1": sum(1 for r in ranks if r == 1) / n,
        "hit@5": sum(1 for r in ranks if in_top5(r)) / n,
        "mrr@10": sum(1 / r for r in ranks if r is not None) / n,
    }


def by_kind(results: list[dict]) -> dict:
    """metrics() of all the results ("all") and of each question kind."""
    rows = {"all": metrics([r["rank"] for r in results])}
    for k in KINDS:
        rows[k] = metrics([r["rank"] for r in results if r["kind"] == k])
    return rows


def fmt_row(label: str, m: dict) -> str:
    if not m["n"]:
        return f"  {label:<12} {0:>4}"
    return (
        f"  {label:<12} {m['n']:>4}   {100 * m['hit@1']:5.1f}   {100 * m['hit@5']:5.1f}"
        f"   {m['mrr@10']:.3f}"
    )


def ask(client, asked: list[dict], files: dict, search_extra: dict | None):
    """Every question of `asked` to its document's store: per question its rank (first hit
    holding the passage, 1-based, within TOP_K) and the top 3; and the search latencies."""
    results = []
    latencies = []
    for q in asked:
        vs = files[q["doc"]][0]
        t = time.monotonic()
        page = client.vector_stores.search(
            vs, query=q["question"], max_num_results=TOP_K, extra_body=search_extra
        )
        latencies.append(time.monotonic() - t)
        hits = list(page.data)
        ps = passages_of(q)
        rank = None
        match = None
        for i, h in enumerate(hits[:TOP_K], 1):
            text = norm("".join(c.text for c in h.content if getattr(c, "text", None)))
            if any(p.hit(text) for p in ps):
                rank = i
                match = "full" if any(p.full_in(text) for p in ps) else "partial"
                break
        results.append(
            {
                "id": q["id"],
                "kind": q["kind"],
                "doc": q["doc"],
                "rank": rank,
                "match": match,
                "top": [
                    {"file": h.filename, "score": round(h.score, 4)} for h in hits[:3]
                ],
            }
        )
    return results, latencies


def side_by_side(client, asked: list[dict], files: dict, search_extra, modes: list[str]) -> dict:
    """The questions asked once per `search_mode`, printed as one table (hit@1 / hit@5 /
    MRR@10 per mode, overall and per kind), with whether `hybrid` is at least the better of
    the other modes on every kind and measure, and the identifier questions outside its top 5."""
    per_mode = {}
    for m in modes:
        extra = dict(search_extra or {}, search_mode=m)
        results, _ = ask(client, asked, files, extra)
        per_mode[m] = results
    rows = ["all", *KINDS]
    table = {m: by_kind(per_mode[m]) for m in modes}
    width = 22
    print("\nsearch modes side by side (hit@1 / hit@5 / MRR@10):")
    print(f"  {'':<12} {'n':>4}  " + "".join(f"{m:>{width}}" for m in modes))
    for row in rows:
        n = table[modes[0]][row]["n"]
        cells = []
        for m in modes:
            x = table[m][row]
            cells.append(
                f"{100 * x['hit@1']:5.1f} / {100 * x['hit@5']:5.1f} / {x['mrr@10']:.3f}"
                if x["n"]
                else "-"
            )
        print(f"  {row:<12} {n:>4}  " + "".join(f"{c:>{width}}" for c in cells))
    summary = {"modes": table}
    if "hybrid" in modes and len(modes) > 1:
        others = [m for m in modes if m != "hybrid"]
        short = [
            f"{row} {key}"
            for row in rows
            if table["hybrid"][row]["n"]
            for key in ("hit@1", "hit@5", "mrr@10")
            if table["hybrid"][row][key] + 1e-9 < max(table[m][row][key] for m in others)
        ]
        print(
            "  hybrid >= the better of "
            + " and ".join(others)
            + (" on every kind and measure" if not short else ": NOT on " + ", ".join(short))
        )
        missed = [
            r["id"]
            for r in per_mode["hybrid"]
            if r["kind"] == "identifier" and not in_top5(r["rank"])
        ]
        n_id = sum(1 for r in per_mode["hybrid"] if r["kind"] == "identifier")
        print(
            f"  identifier questions in hybrid's top 5: {n_id - len(missed)} of {n_id}"
            + (f" (outside: {', '.join(missed)})" if missed else "")
        )
        summary["hybrid_at_least_best_single"] = not short
        summary["identifiers_outside_top5"] = missed
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See the module docstring for the store composition and the scoring rule.",
    )
    ap.add_argument("--base-url", default="http://127.0.0.1:8321/v1")
    ap.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "none"))
    ap.add_argument("--questions", type=Path, default=QUESTIONS)
    ap.add_argument(
        "--corpus",
        type=Path,
        default=Path(os.environ.get("RAGSTORE_CORPUS_DIR", REPO / "tests" / "corpus")),
    )
    ap.add_argument("--chunking", default="auto", help="auto | static:MAX:OVERLAP (tokens)")
    ap.add_argument(
        "--vector-store",
        action="append",
        default=[],
        metavar="ID",
        help="reuse an ingested store (repeat for both); its files say which store it is",
    )
    ap.add_argument(
        "--search-extra", default=None, metavar="JSON", help="extra body for every search"
    )
    ap.add_argument("--json", type=Path, default=None, metavar="FILE")
    ap.add_argument(
        "--check",
        action="store_true",
        help="verify every passage occurs in its document's parsed content, then exit",
    )
    ap.add_argument("--peer", action="store_true", help="llama-stack: sqlite-vec, MiniLM-L6")
    ap.add_argument("--misses", action="store_true", help="list questions with no hit in top 5")
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="FILE",
        help="a --json file of an earlier run: print the change and the questions won and lost",
    )
    ap.add_argument("--cleanup", action="store_true", help="delete the stores and files after")
    ap.add_argument("--timeout", type=float, default=3600, help="ingestion timeout, seconds")
    ap.add_argument(
        "--modes",
        default=None,
        metavar="LIST",
        help="also ask every question once per search_mode (e.g. vector,keyword,hybrid) and "
        "print them side by side",
    )
    args = ap.parse_args()

    search_extra = json.loads(args.search_extra) if args.search_extra else None
    questions = load_questions(args.questions)
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, timeout=120)

    # 1. The stores: ingested now, or reused.
    timing = None
    if args.vector_store:
        stores = {}
        for vs in args.vector_store:
            names = set(store_files(client, vs))
            group = next((g for g, docs in STORES.items() if names & set(docs)), None)
            if group is None:
                sys.exit(f"{vs}: none of its files is one of {STORES}")
            stores[group] = vs
    else:
        if not (args.corpus / ".complete").exists():
            sys.exit(f"no corpus at {args.corpus}: run scripts/fetch-corpus.sh")
        stores, timing = ingest(client, args, args.corpus)
    print("stores: " + " ".join(f"{g}={vs}" for g, vs in stores.items()))

    # 2. Chunks per file (also the text --check reads).
    files: dict[str, tuple[str, str]] = {}  # doc name -> (store, file id)
    chunks: dict[str, list[str] | None] = {}
    for group, vs in stores.items():
        for name, fid in store_files(client, vs).items():
            files[name] = (vs, fid)
            chunks[name] = file_chunks(client, vs, fid)
    counts = {
        g: (
            sum(len(chunks[n]) for n in STORES[g] if chunks.get(n) is not None)
            if all(chunks.get(n) is not None for n in STORES[g] if n in files)
            else None
        )
        for g in stores
    }

    reported = sorted({reported_chunking(client, vs, fid) for vs, fid in files.values()})
    chunking = ", ".join(reported)
    if args.vector_store:
        args.chunking = chunking  # what the reused stores were made with, not the flag
    elif chunking != args.chunking:
        chunking = f"{args.chunking} (reported {chunking})"
    else:
        chunking = args.chunking

    asked = [q for q in questions if q["doc"] in files]
    skipped = len(questions) - len(asked)
    if skipped:
        log(f"{skipped} questions skipped: their documents are in no given store")

    if args.check:
        return check(asked, files, chunks)

    # 3. Ask.
    results, latencies = ask(client, asked, files, search_extra)

    # 4. Report.
    kinds = by_kind(results)
    overall = kinds.pop("all")
    by_store = {
        g: metrics([r["rank"] for r in results if r["doc"] in STORES[g]]) for g in stores
    }
    print(f"server: {args.base_url}  chunking: {chunking}" + (" (peer)" if args.peer else ""))
    if search_extra:
        print(f"search extra: {json.dumps(search_extra)}")
    print("chunks: " + "  ".join(f"{g}={c}" for g, c in counts.items()))
    if timing:
        print(
            f"time to completed: {timing['completed_s']:.1f} s "
            f"(uploads {timing['upload_s']:.1f} s; "
            + ", ".join(f"{n} {s:.1f} s" for n, s in timing["per_file_s"].items())
            + ")"
        )
    print(f"search latency: p50 {1000 * statistics.median(latencies):.0f} ms")
    print(f"\n  {'':<12} {'n':>4}   hit@1   hit@5   MRR@10")
    print(fmt_row("all", overall))
    for k in KINDS:
        print(fmt_row(k, kinds[k]))
    for g in stores:
        print(fmt_row(f"store {g}", by_store[g]))
    partial = sum(1 for r in results if r["match"] == "partial")
    if partial:
        print(f"\n{partial} of the hits hold only part of their passage (cut between chunks)")
    if args.baseline:
        compare(json.loads(args.baseline.read_text()), overall, results)
    if args.misses:
        missed = [r for r in results if not in_top5(r["rank"])]
        print(f"\nno hit in the top 5 ({len(missed)}):")
        qs = {q["id"]: q for q in asked}
        for r in missed:
            print(f"  {r['id']:<8} {r['kind']:<11} rank={r['rank']}  {qs[r['id']]['question']}")
    modes_summary = None
    if args.modes:
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        modes_summary = side_by_side(client, asked, files, search_extra, modes)
    if args.json:
        out = {
            "base_url": args.base_url,
            "chunking": args.chunking,
            "chunking_reported": reported,
            "peer": args.peer,
            "search_extra": search_extra,
            "stores": stores,
            "chunks": counts,
            "timing": timing,
            "search_p50_ms": round(1000 * statistics.median(latencies), 1),
            "overall": overall,
            "by_kind": kinds,
            "by_store": by_store,
            "questions": results,
            "modes": modes_summary,
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if args.cleanup:
        for name, (vs, fid) in files.items():
            client.files.delete(fid)
        for vs in stores.values():
            client.vector_stores.delete(vs)
    elif not args.vector_store:
        print(
            "\nreuse: --vector-store " + " --vector-store ".join(stores.values()),
        )
    return 0


def compare(base: dict, overall: dict, results: list[dict]) -> None:
    """The change against an earlier run, on the questions both runs asked."""
    before = {r["id"]: r["rank"] for r in base["questions"]}
    common = [r for r in results if r["id"] in before]
    now = metrics([r["rank"] for r in common])
    was = metrics([before[r["id"]] for r in common])
    label = f"{base.get('chunking')}" + (
        f" {json.dumps(base['search_extra'])}" if base.get("search_extra") else ""
    )
    print(f"\nagainst {label} on the {len(common)} questions both asked:")
    for key in ("hit@1", "hit@5"):
        print(f"  {key:<7} {100 * was[key]:5.1f} -> {100 * now[key]:5.1f}  ({100 * (now[key] - was[key]):+.1f})")
    print(f"  MRR@10  {was['mrr@10']:.3f} -> {now['mrr@10']:.3f}  ({now['mrr@10'] - was['mrr@10']:+.3f})")
    top5 = lambda r: r is not None and r <= 5  # noqa: E731
    lost = [r["id"] for r in common if top5(before[r["id"]]) and not top5(r["rank"])]
    won = [r["id"] for r in common if top5(r["rank"]) and not top5(before[r["id"]])]
    print(f"  top 5 lost: {' '.join(lost) or '-'}")
    print(f"  top 5 won:  {' '.join(won) or '-'}")


def check(asked: list[dict], files: dict, chunks: dict) -> int:
    """Every passage occurs in its document's parsed text, exactly once, and in no other doc."""
    texts = {name: merge_chunks(c) for name, c in chunks.items() if c is not None}
    bad = []
    for q in asked:
        if q["doc"] not in texts:
            bad.append((q, "no parsed content for the document"))
            continue
        for p in passages_of(q):
            if len(passage_words(p.text)) < 5:
                bad.append((q, f"passage shorter than 5 words: {p.text!r}"))
            n = texts[q["doc"]].count(p.whole)
            if n == 0:
                bad.append((q, f"not in {q['doc']}: {p.text!r}"))
            elif n > 1 and not isinstance(q["answer"], list):
                bad.append((q, f"occurs {n} times in {q['doc']}: {p.text!r}"))
            group = next(g for g, d in STORES.items() if q["doc"] in d)
            for other in STORES[group]:
                if other != q["doc"] and other in texts and p.whole in texts[other]:
                    bad.append((q, f"also in {other}: {p.text!r}"))
    if bad:
        print(f"check: {len(bad)} problems")
        for q, why in bad:
            print(f"  {q['id']}: {why}")
        return 1
    kinds = collections.Counter(q["kind"] for q in asked)
    print(
        f"check: all {len(asked)} passages found in their documents ("
        + ", ".join(f"{k} {kinds[k]}" for k in KINDS)
        + ")"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
