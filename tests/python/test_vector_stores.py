"""Vector stores through the official OpenAI SDK: ingestion with the SDK's pollers, search with
filters, attribute updates, batches, and cascade delete."""

from __future__ import annotations

import io

import openai
import pytest

DOCS = {
    "photosynthesis.txt": "Photosynthesis is how green plants use sunlight, water and carbon dioxide to make glucose and oxygen; chlorophyll absorbs the light.",
    "tcp.md": "# TCP congestion control\n\nAfter packet loss the sender halves its congestion window; slow start grows it exponentially.",
    "rome.txt": "Augustus became the first Roman emperor in 27 BC; the western Roman Empire fell in 476 AD.",
    "bread.txt": "Sourdough bread needs flour, water, salt and a starter; the dough rises slowly before baking in a hot oven.",
}


def _upload(client: openai.OpenAI, name: str, text: str, purpose: str = "assistants"):
    return client.files.create(file=(name, io.BytesIO(text.encode())), purpose=purpose)


@pytest.fixture
def store(client: openai.OpenAI):
    vs = client.vector_stores.create(name="sdk-test", metadata={"suite": "python"})
    yield vs
    try:
        client.vector_stores.delete(vs.id)
    except openai.NotFoundError:
        pass


def test_create_and_poll_then_search_with_filters(client: openai.OpenAI, store):
    years = {"photosynthesis.txt": 2019, "tcp.md": 2021, "rome.txt": 2023, "bread.txt": 2024}
    ids = {}
    for name, text in DOCS.items():
        f = _upload(client, name, text)
        vf = client.vector_stores.files.create_and_poll(
            vector_store_id=store.id,
            file_id=f.id,
            attributes={"year": years[name], "kind": name.split(".")[1], "public": years[name] > 2020},
        )
        assert vf.status == "completed", vf
        assert vf.last_error is None
        assert vf.usage_bytes > 0
        assert vf.chunking_strategy.type == "static"
        ids[name] = f.id

    vs = client.vector_stores.retrieve(store.id)
    assert vs.status == "completed"
    assert vs.file_counts.completed == 4 and vs.file_counts.total == 4
    assert vs.metadata == {"suite": "python"}

    page = client.vector_stores.search(store.id, query="How do plants make food from light?")
    hits = list(page)
    assert hits[0].filename == "photosynthesis.txt"
    assert hits[0].file_id == ids["photosynthesis.txt"]
    assert 0.0 <= hits[0].score <= 1.0
    assert hits[0].content[0].type == "text" and "chlorophyll" in hits[0].content[0].text
    assert hits[0].attributes == {"year": 2019, "kind": "txt", "public": False}

    filtered = client.vector_stores.search(
        store.id,
        query="plants and sunlight",
        filters={"type": "and", "filters": [
            {"type": "gte", "key": "year", "value": 2021},
            {"type": "eq", "key": "kind", "value": "txt"},
        ]},
        max_num_results=10,
    )
    assert sorted({h.filename for h in filtered}) == ["bread.txt", "rome.txt"]
    by_bool = client.vector_stores.search(
        store.id, query="anything", filters={"type": "eq", "key": "public", "value": False}
    )
    assert {h.filename for h in by_bool} == {"photosynthesis.txt"}

    # Attribute updates are searchable at once.
    client.vector_stores.files.update(
        file_id=ids["photosynthesis.txt"], vector_store_id=store.id, attributes={"year": 2030}
    )
    newest = client.vector_stores.search(
        store.id, query="anything", filters={"type": "gt", "key": "year", "value": 2025}
    )
    assert {h.filename for h in newest} == {"photosynthesis.txt"}

    # The parsed content, and listing with a status filter.
    content = client.vector_stores.files.content(file_id=ids["rome.txt"], vector_store_id=store.id)
    texts = [c.text for c in content]
    assert any("Augustus" in t for t in texts)
    listed = client.vector_stores.files.list(vector_store_id=store.id, filter="completed", limit=2)
    assert len([f.id for f in listed]) == 4  # the SDK pages through all of them

    # Deleting the file removes it from the store and from search.
    client.files.delete(ids["rome.txt"])
    vs = client.vector_stores.retrieve(store.id)
    assert vs.file_counts.total == 3
    again = client.vector_stores.search(store.id, query="Roman emperor Augustus", max_num_results=50)
    assert "rome.txt" not in {h.filename for h in again}
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(file_id=ids["rome.txt"], vector_store_id=store.id)


def test_upload_and_poll_and_wait_for_processing(client: openai.OpenAI, store):
    vf = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("bread.txt", io.BytesIO(DOCS["bread.txt"].encode()))
    )
    assert vf.status == "completed"
    f = client.files.wait_for_processing(vf.id, poll_interval=0.1, max_wait_seconds=30)
    assert f.status == "processed"
    hits = list(client.vector_stores.search(store.id, query="baking a loaf"))
    assert hits and hits[0].filename == "bread.txt"


def test_unsupported_file_fails_cleanly(client: openai.OpenAI, store):
    f = client.files.create(file=("image.png", io.BytesIO(b"\x89PNG\r\n\x1a\n" + bytes(64))), purpose="assistants")
    vf = client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=f.id)
    assert vf.status == "failed"
    assert vf.last_error.code == "unsupported_file"


def test_file_batches_upload_and_poll(client: openai.OpenAI, store):
    import asyncio

    async def go():
        aclient = openai.AsyncOpenAI(base_url=str(client.base_url), api_key=client.api_key, max_retries=0)
        try:
            return await aclient.vector_stores.file_batches.upload_and_poll(
                store.id,
                files=[(name, io.BytesIO(text.encode())) for name, text in DOCS.items()],
                poll_interval_ms=100,
            )
        finally:
            await aclient.close()

    batch = asyncio.run(go())
    assert batch.object == "vector_store.files_batch"
    assert batch.status == "completed"
    assert batch.file_counts.completed == len(DOCS)
    files = client.vector_stores.file_batches.list_files(batch_id=batch.id, vector_store_id=store.id)
    assert len(list(files)) == len(DOCS)
    hits = list(client.vector_stores.search(store.id, query=["congestion window", "first emperor"], max_num_results=4))
    assert {"tcp.md", "rome.txt"} <= {h.filename for h in hits}


def test_vector_store_lifecycle_and_errors(client: openai.OpenAI):
    vs = client.vector_stores.create(
        name="lifecycle",
        expires_after={"anchor": "last_active_at", "days": 2},
        chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50}},
    )
    assert vs.expires_after.days == 2
    assert vs.expires_at == vs.last_active_at + 2 * 86400
    updated = client.vector_stores.update(vs.id, name="renamed", metadata={"a": "b"})
    assert updated.name == "renamed" and updated.metadata == {"a": "b"}
    assert vs.id in [v.id for v in client.vector_stores.list(limit=100)]
    with pytest.raises(openai.BadRequestError) as e:
        client.vector_stores.search(vs.id, query="x", max_num_results=0)
    assert e.value.body["param"] == "max_num_results"
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(vs.id, query="x", filters={"type": "gt", "key": "a", "value": "b"})
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.create(metadata={f"k{i}": "v" for i in range(17)})
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.create(vector_store_id=vs.id, file_id="file-doesnotexist")
    deleted = client.vector_stores.delete(vs.id)
    assert deleted.deleted is True and deleted.object == "vector_store.deleted"
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(vs.id)


def test_embeddings_endpoint(client: openai.OpenAI, lenient_client: openai.OpenAI):
    inputs = ["a cat sits on the mat", "a kitten on a rug", "tax law"]
    res = client.embeddings.create(model="all-MiniLM-L6-v2", input=inputs, encoding_format="float")
    # The SDK's default asks for base64 and decodes it (after validation, hence lenient).
    b64 = lenient_client.embeddings.create(model="all-MiniLM-L6-v2", input=inputs)
    assert all(
        max(abs(x - y) for x, y in zip(a.embedding, b.embedding)) < 1e-6 for a, b in zip(res.data, b64.data)
    )
    assert len(res.data) == 3 and len(res.data[0].embedding) == 384
    a, b, c = (d.embedding for d in res.data)
    dot = lambda x, y: sum(p * q for p, q in zip(x, y))
    assert dot(a, b) > dot(a, c)
    assert res.usage.prompt_tokens > 0


def test_models_list_the_embedding_model(client: openai.OpenAI):
    models = list(client.models.list())
    assert [m.id for m in models] == ["all-MiniLM-L6-v2"]
    assert models[0].object == "model" and isinstance(models[0].created, int)
    assert client.models.retrieve("all-MiniLM-L6-v2").id == "all-MiniLM-L6-v2"
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("text-embedding-3-small")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert e.value.code == "model_not_found"


def test_one_content_call_returns_the_whole_document(client: openai.OpenAI):
    text = "".join(f"Sentence number {i} is about topic {i * 7} at some length. " for i in range(1200))
    f = client.files.create(file=("long.txt", text.encode()), purpose="assistants")
    vs = client.vector_stores.create(name="content")
    vf = client.vector_stores.files.create_and_poll(
        vector_store_id=vs.id,
        file_id=f.id,
        chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}},
    )
    assert vf.status == "completed", vf.last_error
    page = client.vector_stores.files.content(file_id=f.id, vector_store_id=vs.id)
    items = list(page)
    assert len(items) > 100
    assert "Sentence number 1199" in "".join(i.text for i in items)
