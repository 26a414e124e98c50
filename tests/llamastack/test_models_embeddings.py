"""Models and embeddings through llama-stack-client."""

from __future__ import annotations

import base64
import math
import struct

import pytest
from llama_stack_client import BadRequestError, LlamaStackClient, NotFoundError

from support import DIMS, LEGACY, MODEL


def _model_list_calls(client: LlamaStackClient):
    calls = [("models.list", client.models.list)]
    if not LEGACY:
        calls.append(("models.openai.list", client.models.openai.list))
    return calls


def test_models_list(client: LlamaStackClient):
    for name, call in _model_list_calls(client):
        models = call()
        assert isinstance(models, list), name
        if LEGACY:
            # 0.2.x reads llama-stack's own model object (identifier, model_type, ...).
            m = next(x for x in models if x.identifier == MODEL)
            assert m.api_model_type == "embedding"
            assert m.provider_id == "ragstore"
            assert m.metadata["embedding_dimension"] == DIMS
        else:
            # 0.3+ reads OpenAI's model object.
            m = next(x for x in models if x.id == MODEL)
            assert m.object == "model"
            assert m.created > 0
            assert m.owned_by == "ragstore"
            assert m.identifier == MODEL


def test_models_list_llama_stack_metadata(client: LlamaStackClient):
    for name, call in _model_list_calls(client):
        m = next(x for x in call() if x.identifier == MODEL)
        assert m.model_type == "embedding", name
        assert m.provider_id == "ragstore", name
        assert m.metadata["embedding_dimension"] == DIMS, name


def test_models_retrieve(client: LlamaStackClient):
    m = client.models.retrieve(MODEL)
    assert m.identifier == MODEL
    assert m.api_model_type == "embedding"
    assert m.provider_id == "ragstore"
    assert m.metadata["embedding_dimension"] == DIMS
    assert m.metadata["context_length"] > 0

    alias = client.models.retrieve("sentence-transformers/all-MiniLM-L6-v2")
    assert alias.api_model_type == "embedding"

    with pytest.raises(NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.body["error"]["code"] == "model_not_found"


def test_embeddings_float_and_base64(client: LlamaStackClient):
    inputs = ["the cat sat on the mat", "quarterly revenue grew by ten percent"]
    res = client.embeddings.create(model=MODEL, input=inputs)
    assert res.object == "list"
    assert res.model == MODEL
    assert [d.index for d in res.data] == [0, 1]
    for d in res.data:
        assert len(d.embedding) == DIMS
        assert abs(math.sqrt(sum(x * x for x in d.embedding)) - 1.0) < 1e-3
    assert res.usage.prompt_tokens > 0 and res.usage.total_tokens >= res.usage.prompt_tokens

    b64 = client.embeddings.create(model=MODEL, input=inputs[0], encoding_format="base64")
    raw = base64.b64decode(b64.data[0].embedding)
    assert len(raw) == 4 * DIMS
    decoded = struct.unpack(f"<{DIMS}f", raw)
    assert max(abs(a - b) for a, b in zip(decoded, res.data[0].embedding)) < 1e-6

    same = client.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input=inputs[0])
    assert max(abs(a - b) for a, b in zip(same.data[0].embedding, res.data[0].embedding)) < 1e-6

    assert len(client.embeddings.create(model=MODEL, input="x", dimensions=DIMS).data[0].embedding) == DIMS
    with pytest.raises(BadRequestError) as e:
        client.embeddings.create(model=MODEL, input="x", dimensions=128)
    assert e.value.body["error"]["param"] == "dimensions"

    with pytest.raises(NotFoundError) as e:
        client.embeddings.create(model="no-such-model", input="x")
    assert e.value.body["error"]["code"] == "model_not_found"

