#!/usr/bin/env python3
"""Writes a small cross-encoder in ONNX, for testing `--reranker-model` end to end.

No package registry ships a trained cross-encoder, so the tests build one whose judgement is
known in advance: the relevance logit of a (query, document) pair is the sum, over the
document's tokens, of a weight per token (0 for every token but those given with --boost).
It has a real cross-encoder's interface (inputs `input_ids`, `attention_mask`,
`token_type_ids`; output `logits` of shape [batch, 1]) and the all-MiniLM-L6-v2 tokenizer, so
fastembed's TextRerank and ONNX Runtime run it as they would run ms-marco-MiniLM.

    scripts/make-test-reranker.py OUT_DIR [--models models/all-MiniLM-L6-v2] [--boost WORD=LOGIT ...]

With --timing-body, the model is instead all-MiniLM-L6-v2's transformer with a one-logit head
on its first token: the architecture and cost of cross-encoder/ms-marco-MiniLM-L-6-v2 (six
layers, 384 wide), for timing a rerank. Its scores mean nothing (the head is not trained).

Needs the `onnx` package (tests/python/requirements.txt).
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_FILES = ("tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--models", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--boost", action="append", default=[],
                    help="WORD=LOGIT: each occurrence of WORD (one token) in a document adds LOGIT")
    ap.add_argument("--timing-body", action="store_true",
                    help="MiniLM-L6's transformer with an untrained head: realistic cost, no meaning")
    args = ap.parse_args()
    if args.timing_body:
        return timing_body(args)

    vocab = json.load(open(os.path.join(args.models, "tokenizer.json")))["model"]["vocab"]
    weights = np.zeros(len(vocab), dtype=np.float32)
    for item in args.boost or ["obsidian=4"]:
        word, _, logit = item.partition("=")
        if word not in vocab:
            print(f"{word!r} is not one token of the tokenizer", file=sys.stderr)
            return 2
        weights[vocab[word]] = float(logit)

    dyn = ["batch", "sequence"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dyn)
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])
    nodes = [
        # Each token's weight, kept for the document's real tokens (segment 1, not padding).
        helper.make_node("Gather", ["weights", "input_ids"], ["token_weight"], axis=0),
        helper.make_node("Cast", ["token_type_ids"], ["in_document"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["attention_mask"], ["real"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["token_weight", "in_document"], ["document_weight"]),
        helper.make_node("Mul", ["document_weight", "real"], ["counted"]),
        helper.make_node("ReduceSum", ["counted", "axis_1"], ["logits"], keepdims=1),
    ]
    initializers = [
        numpy_helper.from_array(weights, "weights"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1"),
    ]
    graph = helper.make_graph(nodes, "test-cross-encoder", inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="ragstore-test")
    model.ir_version = 8
    onnx.checker.check_model(model)

    return write(model, args)


def write(model, args) -> int:
    """The model, with the tokenizer's files beside it."""
    os.makedirs(args.out, exist_ok=True)
    onnx.save(model, os.path.join(args.out, "model.onnx"))
    for name in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(args.models, name), os.path.join(args.out, name))
    print(args.out)
    return 0


def timing_body(args) -> int:
    model = onnx.load(os.path.join(args.models, "model.onnx"))
    graph = model.graph
    hidden = graph.output[0].name
    rng = np.random.default_rng(7)
    graph.initializer.extend([
        numpy_helper.from_array(np.array(0, dtype=np.int64), "head_first_token"),
        numpy_helper.from_array(rng.normal(0, 0.05, (384, 1)).astype(np.float32), "head_weight"),
    ])
    graph.node.extend([
        helper.make_node("Gather", [hidden, "head_first_token"], ["head_cls"], axis=1),
        helper.make_node("MatMul", ["head_cls", "head_weight"], ["logits"]),
    ])
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1]))
    return write(model, args)


if __name__ == "__main__":
    sys.exit(main())
