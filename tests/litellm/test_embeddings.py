"""/v1/embeddings and /v1/models through LiteLLM (model_list: openai/all-MiniLM-L6-v2 at ragstore)."""

from __future__ import annotations

import base64
import math
import struct

from support import DIMS, MODEL


def test_embeddings_are_ragstores(client, direct):
    texts = ["The quick brown fox.", "Zebras are striped."]
    via_proxy = client.embeddings.create(model=MODEL, input=texts)
    at_ragstore = direct.embeddings.create(model=MODEL, input=texts)

    assert via_proxy.model == MODEL
    assert [d.index for d in via_proxy.data] == [0, 1]
    assert via_proxy.usage.prompt_tokens == at_ragstore.usage.prompt_tokens > 0
    for got, want in zip(via_proxy.data, at_ragstore.data):
        assert len(got.embedding) == DIMS
        # The local model is deterministic: the proxy's vectors are ragstore's.
        assert max(abs(a - b) for a, b in zip(got.embedding, want.embedding)) < 1e-6
        assert math.isclose(math.fsum(x * x for x in got.embedding), 1.0, rel_tol=1e-4)
    # Different texts, different vectors (not one vector repeated).
    assert via_proxy.data[0].embedding != via_proxy.data[1].embedding


def test_embeddings_base64_passes_through(client, direct):
    # Asked for explicitly, the SDK hands the base64 string back undecoded.
    b64 = client.embeddings.create(model=MODEL, input="hello", encoding_format="base64").data[0].embedding
    assert isinstance(b64, str), "LiteLLM decoded or re-encoded the base64 embedding"
    floats = struct.unpack(f"<{DIMS}f", base64.b64decode(b64))
    want = direct.embeddings.create(model=MODEL, input="hello").data[0].embedding
    assert max(abs(a - b) for a, b in zip(floats, want)) < 1e-6


def test_models_lists_the_configured_model(client):
    # LiteLLM answers /v1/models itself from config.yaml's model_list (it does not forward it).
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids
    assert client.models.retrieve(MODEL).id == MODEL
