"""Vector stores through llama-stack-client: stores, attached files, file batches, search with
filters, parsed file content (with llama-stack's include_embeddings / include_metadata)."""

from __future__ import annotations

import math
import time

import pytest
from llama_stack_client import BadRequestError, LlamaStackClient, NotFoundError

from support import DIMS, LEGACY, MODEL, items, requires, upload, wait_store_idle

DOCS = {
    "tls.md": "# Certificates\n\nRotate the TLS certificates of the load balancer every ninety days with certbot renew.\n",
    "pasta.txt": "Boil the spaghetti in salted water for nine minutes, then toss it with olive oil and garlic.\n",
    "birds.md": "# Birds\n\nThe arctic tern migrates from the Arctic to the Antarctic and back every year.\n",
    "rome.txt": "Augustus became the first Roman emperor in 27 BC; the western Roman Empire fell in 476 AD.\n",
}
ATTRS = {
    "tls.md": {"topic": "ops", "year": 2024, "public": True},
    "pasta.txt": {"topic": "food", "year": 2023, "public": True},
    "birds.md": {"topic": "nature", "year": 2022, "public": False},
    "rome.txt": {"topic": "history", "year": 2021, "public": False},
}


@pytest.fixture
def store(client: LlamaStackClient):
    vs = client.vector_stores.create(name="llamastack-test", metadata={"suite": "llamastack"})
    yield vs
    try:
        client.vector_stores.delete(vs.id)
    except NotFoundError:
        pass


@pytest.fixture(scope="module")
def searchable(client: LlamaStackClient):
    """One store holding DOCS with ATTRS, attached one by one with vector_stores.files.create
    (the one attach call every client version has); yields (store id, {filename: file id})."""
    vs = client.vector_stores.create(name="llamastack-search")
    ids = {}
    for name, text in DOCS.items():
        f = upload(client, name, text)
        vf = client.vector_stores.files.create(vs.id, file_id=f.id, attributes=ATTRS[name])
        assert vf.id == f.id and vf.vector_store_id == vs.id
        assert vf.attributes == ATTRS[name]
        assert vf.status in ("in_progress", "completed")
        ids[name] = f.id
    done = wait_store_idle(client, vs.id)
    assert done.file_counts.completed == len(DOCS), done.file_counts
    yield vs.id, ids
    client.vector_stores.delete(vs.id)
    for fid in ids.values():
        client.files.delete(fid)


def _file_ids(hits) -> set[str]:
    return {h.file_id for h in hits}


# --- stores ----------------------------------------------------------------------------------


def test_store_create_retrieve_update_list_delete(client: LlamaStackClient):
    f = upload(client, "tls.md", DOCS["tls.md"], "text/markdown")
    vs = client.vector_stores.create(
        name="crud",
        file_ids=[f.id],
        metadata={"owner": "infra"},
        chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50}},
    )
    assert vs.id.startswith("vs_")
    assert vs.object == "vector_store"
    assert vs.name == "crud"
    assert vs.metadata == {"owner": "infra"}
    assert vs.file_counts.total == 1

    vs = wait_store_idle(client, vs.id)
    assert vs.status == "completed"
    assert vs.file_counts.completed == 1
    assert vs.usage_bytes > 0

    updated = client.vector_stores.update(
        vs.id, name="crud-2", metadata={"owner": "platform"}, expires_after={"anchor": "last_active_at", "days": 7}
    )
    assert updated.name == "crud-2"
    assert updated.metadata == {"owner": "platform"}
    assert updated.expires_after == {"anchor": "last_active_at", "days": 7}
    assert updated.expires_at == updated.last_active_at + 7 * 86400
    assert client.vector_stores.retrieve(vs.id).name == "crud-2"

    others = [client.vector_stores.create(name=f"crud-extra-{i}").id for i in range(3)]
    page = client.vector_stores.list(limit=2)
    assert len(page.data) == 2 and page.has_more is True
    if LEGACY:
        seen = [v.id for v in page.data]
        while page.has_more:
            page = client.vector_stores.list(limit=2, after=page.last_id)
            seen += [v.id for v in page.data]
    else:
        seen = [v.id for v in page]
    assert len(seen) == len(set(seen))
    assert {vs.id, *others} <= set(seen)

    for sid in [vs.id, *others]:
        gone = client.vector_stores.delete(sid)
        assert (gone.id, gone.deleted, gone.object) == (sid, True, "vector_store.deleted")
    with pytest.raises(NotFoundError) as e:
        client.vector_stores.retrieve(vs.id)
    assert e.value.body["error"]["code"] == "vector_store_not_found"
    client.files.retrieve(f.id)  # deleting the store keeps the file
    client.files.delete(f.id)


def test_store_create_accepts_llama_stack_fields(client: LlamaStackClient):
    """llama-stack clients send embedding_model / embedding_dimension / provider_id when they
    create a store (0.2.x as parameters, 0.3+ through extra_body); the server's own model is
    the one that answers."""
    fields = {"embedding_model": MODEL, "embedding_dimension": DIMS, "provider_id": "ragstore"}
    if LEGACY:
        vs = client.vector_stores.create(name="llama-fields", **fields)
    else:
        vs = client.vector_stores.create(name="llama-fields", extra_body=fields)
    assert vs.name == "llama-fields"
    client.vector_stores.delete(vs.id)


def test_store_create_refuses_a_model_it_does_not_serve(client: LlamaStackClient):
    fields = {"embedding_model": "nomic-embed-text-v1.5", "embedding_dimension": 768}
    try:
        with pytest.raises((BadRequestError, NotFoundError)):
            if LEGACY:
                client.vector_stores.create(name="wrong-model", **fields)
            else:
                client.vector_stores.create(name="wrong-model", extra_body=fields)
    finally:
        for v in items(client.vector_stores.list(limit=100)):
            if v.name == "wrong-model":
                client.vector_stores.delete(v.id)


# --- files in a store ------------------------------------------------------------------------


def test_store_files_create_list_retrieve_update_content_delete(client: LlamaStackClient, store):
    requires(client, "vector_stores.files.list")
    f = upload(client, "birds.md", DOCS["birds.md"], "text/markdown")
    vf = client.vector_stores.files.create(store.id, file_id=f.id, attributes={"topic": "nature", "year": 2022})
    assert vf.id == f.id
    assert vf.vector_store_id == store.id
    assert vf.attributes == {"topic": "nature", "year": 2022}
    assert vf.chunking_strategy.type == "static"
    wait_store_idle(client, store.id)

    listed = items(client.vector_stores.files.list(store.id))
    assert [x.id for x in listed] == [f.id]
    assert listed[0].status == "completed"
    assert [x.id for x in items(client.vector_stores.files.list(store.id, filter="completed"))] == [f.id]
    assert items(client.vector_stores.files.list(store.id, filter="failed")) == []

    got = client.vector_stores.files.retrieve(f.id, vector_store_id=store.id)
    assert got.status == "completed"
    assert got.last_error is None
    assert got.usage_bytes > 0

    upd = client.vector_stores.files.update(f.id, vector_store_id=store.id, attributes={"topic": "birds", "ok": True})
    assert upd.attributes == {"topic": "birds", "ok": True}
    assert client.vector_stores.files.retrieve(f.id, vector_store_id=store.id).attributes == {"topic": "birds", "ok": True}
    # searchable at once under the new attributes
    hits = list(client.vector_stores.search(store.id, query="tern", filters={"type": "eq", "key": "topic", "value": "birds"}).data)
    assert _file_ids(hits) == {f.id}

    content = client.vector_stores.files.content(f.id, vector_store_id=store.id)
    assert content.object == "vector_store.file_content.page"
    assert content.has_more is False
    assert "arctic tern migrates" in "\n".join(d.text for d in content.data)
    assert all(d.type == "text" for d in content.data)
    assert all(d.embedding is None and d.chunk_metadata is None and d.metadata is None for d in content.data)

    gone = client.vector_stores.files.delete(f.id, vector_store_id=store.id)
    assert (gone.id, gone.deleted) == (f.id, True)
    assert items(client.vector_stores.files.list(store.id)) == []
    with pytest.raises(NotFoundError):
        client.vector_stores.files.retrieve(f.id, vector_store_id=store.id)
    assert client.files.retrieve(f.id).id == f.id  # detached, not deleted
    client.files.delete(f.id)


def test_store_file_content_with_embeddings_and_metadata(client: LlamaStackClient, store):
    requires(client, "vector_stores.files.content")
    f = upload(client, "tls.md", DOCS["tls.md"], "text/markdown")
    client.vector_stores.files.create(store.id, file_id=f.id, attributes={"team": "infra"})
    wait_store_idle(client, store.id)

    page = client.vector_stores.files.content(
        f.id, vector_store_id=store.id, include_embeddings=True, include_metadata=True
    )
    assert len(page.data) >= 1
    first = page.data[0]
    assert "Rotate the TLS certificates" in first.text
    assert len(first.embedding) == DIMS
    assert abs(math.sqrt(sum(x * x for x in first.embedding)) - 1.0) < 1e-3
    cm = first.chunk_metadata
    assert cm.document_id == f.id
    assert cm.source == "tls.md"
    assert cm.chunk_id
    extra = cm.to_dict()
    assert extra.get("chunk_embedding_model") == MODEL
    assert extra.get("chunk_embedding_dimension") == DIMS
    assert first.metadata["file_id"] == f.id
    assert first.metadata["filename"] == "tls.md"
    assert first.metadata["chunk_index"] == 0
    assert first.metadata["team"] == "infra"

    # The chunk's stored vector is the model's embedding of its text.
    emb = client.embeddings.create(model=MODEL, input=first.text).data[0].embedding
    cos = sum(a * b for a, b in zip(emb, first.embedding))
    assert cos > 0.99, cos

    only_meta = client.vector_stores.files.content(f.id, vector_store_id=store.id, include_metadata=True)
    assert only_meta.data[0].embedding is None and only_meta.data[0].chunk_metadata is not None
    client.files.delete(f.id)


# --- file batches ----------------------------------------------------------------------------


def test_file_batch_create_retrieve_list_files(client: LlamaStackClient, store):
    requires(client, "vector_stores.file_batches")
    fids = [upload(client, name, text).id for name, text in DOCS.items()]
    batch = client.vector_stores.file_batches.create(store.id, file_ids=fids, attributes={"source": "batch"})
    assert batch.id.startswith("vsfb_")
    assert batch.object == "vector_store.files_batch"
    assert batch.vector_store_id == store.id
    assert batch.file_counts.total == len(fids)

    deadline = time.monotonic() + 30
    while batch.status == "in_progress":
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
        batch = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
    assert batch.status == "completed"
    assert (batch.file_counts.completed, batch.file_counts.failed, batch.file_counts.total) == (4, 0, 4)

    in_batch = items(client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id))
    assert sorted(x.id for x in in_batch) == sorted(fids)
    assert all(x.status == "completed" and x.attributes == {"source": "batch"} for x in in_batch)
    paged = [x.id for x in client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, limit=1)]
    assert sorted(paged) == sorted(fids)
    assert items(client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, filter="failed")) == []
    assert client.vector_stores.retrieve(store.id).file_counts.completed == 4
    for fid in fids:
        client.files.delete(fid)


def test_file_batch_cancel(client: LlamaStackClient, store):
    requires(client, "vector_stores.file_batches.cancel")
    # Big enough that the batch is still queued or embedding when the cancel lands.
    big = "".join(f"Paragraph {i} on ocean currents, salinity and the tides of the North Atlantic. " for i in range(3000))
    fids = [upload(client, f"big-{i}.txt", big).id for i in range(2)]
    fids += [upload(client, f"small-{i}.txt", f"small note {i}").id for i in range(4)]
    batch = client.vector_stores.file_batches.create(store.id, file_ids=fids)
    cancelled = client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelled.id == batch.id
    assert cancelled.status == "cancelled"
    counts = cancelled.file_counts
    assert counts.in_progress == 0
    assert counts.cancelled >= 1
    assert counts.cancelled + counts.completed + counts.failed == counts.total == len(fids)

    again = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
    assert again.status == "cancelled"
    listed = items(client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, filter="cancelled"))
    assert len(listed) == counts.cancelled
    # A cancelled file never shows up in a search.
    hits = list(client.vector_stores.search(store.id, query="ocean currents and tides", max_num_results=50).data)
    assert not ({h.file_id for h in hits} & {x.id for x in listed})
    for fid in fids:
        client.files.delete(fid)


def test_cancelling_a_finished_batch_keeps_its_status(client: LlamaStackClient, store):
    requires(client, "vector_stores.file_batches.cancel")
    f = upload(client, "done.txt", "already embedded")
    batch = client.vector_stores.file_batches.create(store.id, file_ids=[f.id])
    deadline = time.monotonic() + 30
    while batch.status == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.1)
        batch = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
    assert batch.status == "completed"
    try:
        after = client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    except BadRequestError:
        after = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
    finally:
        client.files.delete(f.id)
    assert after.file_counts.completed == 1
    assert after.status == "completed"


# --- search ----------------------------------------------------------------------------------


def test_search_ranks_and_returns_hit_fields(client: LlamaStackClient, searchable):
    vs_id, ids = searchable
    page = client.vector_stores.search(vs_id, query="how long to cook spaghetti", max_num_results=4)
    assert page.object == "vector_store.search_results.page"
    assert page.search_query == ["how long to cook spaghetti"]
    assert page.has_more is False
    hits = list(page.data)
    assert len(hits) == 4
    assert hits[0].file_id == ids["pasta.txt"]
    assert hits[0].filename == "pasta.txt"
    assert hits[0].attributes == ATTRS["pasta.txt"]
    assert hits[0].content[0].type == "text" and "spaghetti" in hits[0].content[0].text
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)

    assert len(client.vector_stores.search(vs_id, query="anything", max_num_results=2).data) == 2
    multi = client.vector_stores.search(vs_id, query=["roman emperor", "bird migration"], max_num_results=4)
    assert multi.search_query == ["roman emperor", "bird migration"]
    assert {ids["rome.txt"], ids["birds.md"]} <= _file_ids(multi.data[:2])

    thresholded = client.vector_stores.search(
        vs_id, query="Augustus first Roman emperor", ranking_options={"score_threshold": 0.5}
    )
    assert _file_ids(thresholded.data) == {ids["rome.txt"]}
    assert all(h.score >= 0.5 for h in thresholded.data)

    # llama-stack's rewrite_query is accepted (the query goes through as written).
    rewritten = client.vector_stores.search(vs_id, query="certbot", rewrite_query=True, max_num_results=1)
    assert rewritten.data[0].file_id == ids["tls.md"]

    with pytest.raises(BadRequestError) as e:
        client.vector_stores.search(vs_id, query="x", max_num_results=51)
    assert e.value.body["error"]["param"] == "max_num_results"


def test_search_mode_vector(client: LlamaStackClient, searchable):
    vs_id, ids = searchable
    if LEGACY:
        pytest.skip("llama-stack-client 0.2.x has no search_mode")
    hits = client.vector_stores.search(vs_id, query="arctic tern", search_mode="vector", max_num_results=1).data
    assert hits[0].file_id == ids["birds.md"]


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({"type": "eq", "key": "topic", "value": "ops"}, {"tls.md"}),
        ({"type": "ne", "key": "topic", "value": "ops"}, {"pasta.txt", "birds.md", "rome.txt"}),
        ({"type": "gt", "key": "year", "value": 2022}, {"tls.md", "pasta.txt"}),
        ({"type": "gte", "key": "year", "value": 2022}, {"tls.md", "pasta.txt", "birds.md"}),
        ({"type": "lt", "key": "year", "value": 2022}, {"rome.txt"}),
        ({"type": "lte", "key": "year", "value": 2022}, {"birds.md", "rome.txt"}),
        ({"type": "eq", "key": "public", "value": False}, {"birds.md", "rome.txt"}),
        ({"type": "in", "key": "topic", "value": ["food", "history"]}, {"pasta.txt", "rome.txt"}),
        ({"type": "nin", "key": "topic", "value": ["food", "history"]}, {"tls.md", "birds.md"}),
        (
            {"type": "and", "filters": [
                {"type": "eq", "key": "public", "value": True},
                {"type": "lt", "key": "year", "value": 2024},
            ]},
            {"pasta.txt"},
        ),
        (
            {"type": "or", "filters": [
                {"type": "eq", "key": "topic", "value": "nature"},
                {"type": "gte", "key": "year", "value": 2024},
            ]},
            {"birds.md", "tls.md"},
        ),
        (
            {"type": "and", "filters": [
                {"type": "or", "filters": [
                    {"type": "eq", "key": "topic", "value": "ops"},
                    {"type": "eq", "key": "topic", "value": "history"},
                ]},
                {"type": "eq", "key": "public", "value": False},
            ]},
            {"rome.txt"},
        ),
        ({"type": "eq", "key": "topic", "value": "no-such-topic"}, set()),
    ],
    ids=["eq", "ne", "gt", "gte", "lt", "lte", "eq-bool", "in", "nin", "and", "or", "nested", "no-match"],
)
def test_search_filters(client: LlamaStackClient, searchable, filters, expected):
    vs_id, ids = searchable
    hits = client.vector_stores.search(vs_id, query="spaghetti with garlic", filters=filters, max_num_results=10).data
    assert _file_ids(hits) == {ids[n] for n in expected}
    for h in hits:
        assert h.attributes == ATTRS[h.filename]


def test_search_rejects_a_malformed_filter(client: LlamaStackClient, searchable):
    vs_id, _ = searchable
    with pytest.raises(BadRequestError) as e:
        client.vector_stores.search(vs_id, query="x", filters={"type": "like", "key": "topic", "value": "o"})
    assert e.value.status_code == 400
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "filters" in (e.value.body["error"]["param"] or "")
