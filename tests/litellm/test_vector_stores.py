"""/v1/vector_stores through LiteLLM (openai provider, upstream from OPENAI_BASE_URL in
config.yaml's environment_variables): create, attach, poll, search with filters, file content,
attribute updates, list/update, detach, delete. Each step is checked on ragstore itself."""

from __future__ import annotations

import openai
import pytest
from support import unique, upload, wait_store_idle

ZEBRA = "Zebras are African equines with distinctive black-and-white striped coats."
PENGUIN = "Penguins are flightless seabirds that live almost exclusively in the Southern Hemisphere."


@pytest.fixture
def docs(client):
    return (
        upload(client, unique("zebra") + ".txt", ZEBRA),
        upload(client, unique("penguin") + ".txt", PENGUIN),
    )


def test_store_lifecycle_end_to_end(client, direct, docs):
    zebra, penguin = docs
    name = unique("litellm-store")
    vs = client.vector_stores.create(name=name, metadata={"suite": "litellm"})
    assert vs.id.startswith("vs_") and vs.name == name
    there = direct.vector_stores.retrieve(vs.id)
    assert (there.name, there.metadata) == (name, {"suite": "litellm"})

    # Attach through the proxy, with attributes (strings only: LiteLLM drops number and bool
    # attribute values, see test_litellm_gaps.py); the SDK's poll helper polls through it too.
    for doc, kind, legs in ((zebra, "mammal", "four"), (penguin, "bird", "two")):
        vf = client.vector_stores.files.create_and_poll(
            vector_store_id=vs.id, file_id=doc.id, attributes={"kind": kind, "legs": legs}, poll_interval_ms=100
        )
        assert (vf.id, vf.status, vf.last_error) == (doc.id, "completed", None)
        assert vf.attributes["kind"] == kind
    done = wait_store_idle(client, vs.id)
    assert (done.status, done.file_counts.completed, done.file_counts.total) == ("completed", 2, 2)
    assert direct.vector_stores.retrieve(vs.id).file_counts.completed == 2

    attached = {f.id: f for f in client.vector_stores.files.list(vector_store_id=vs.id)}
    assert attached.keys() == {zebra.id, penguin.id}
    assert client.vector_stores.files.retrieve(vector_store_id=vs.id, file_id=zebra.id).attributes["kind"] == "mammal"

    # Unfiltered search: the best hit is the zebra document, with its text.
    hits = client.vector_stores.search(vs.id, query="animals with black and white stripes", max_num_results=2)
    assert [h.file_id for h in hits.data][0] == zebra.id
    assert hits.data[0].content[0].text == ZEBRA
    assert hits.data[0].filename == zebra.filename

    # Filtered search: the filter reaches ragstore (the nearer zebra is excluded).
    hits = client.vector_stores.search(
        vs.id, query="animals with black and white stripes", filters={"type": "eq", "key": "kind", "value": "bird"}
    )
    assert [h.file_id for h in hits.data] == [penguin.id]
    assert hits.data[0].content[0].text == PENGUIN
    assert hits.data[0].attributes == {"kind": "bird", "legs": "two"}
    compound = client.vector_stores.search(
        vs.id, query="stripes",
        filters={"type": "and", "filters": [{"type": "in", "key": "legs", "value": ["two", "four"]}, {"type": "ne", "key": "kind", "value": "bird"}]},
    )
    assert [h.file_id for h in compound.data] == [zebra.id]

    # Parsed chunk text of an attached file.
    chunks = list(client.vector_stores.files.content(vector_store_id=vs.id, file_id=penguin.id))
    assert "".join(c.text for c in chunks) == PENGUIN

    # Attribute update is searchable at once.
    client.vector_stores.files.update(vector_store_id=vs.id, file_id=zebra.id, attributes={"kind": "bird", "legs": "four"})
    hits = client.vector_stores.search(vs.id, query="stripes", filters={"type": "eq", "key": "kind", "value": "bird"})
    assert {h.file_id for h in hits.data} == {zebra.id, penguin.id}

    # Detach one file: gone from this store, the file itself stays.
    gone = client.vector_stores.files.delete(vector_store_id=vs.id, file_id=penguin.id)
    assert (gone.id, gone.deleted) == (penguin.id, True)
    assert {f.id for f in direct.vector_stores.files.list(vector_store_id=vs.id)} == {zebra.id}
    assert direct.files.retrieve(penguin.id).id == penguin.id

    deleted = client.vector_stores.delete(vs.id)
    assert (deleted.id, deleted.deleted) == (vs.id, True)
    with pytest.raises(openai.NotFoundError):
        direct.vector_stores.retrieve(vs.id)


def test_create_with_files_and_options(client, direct, docs):
    zebra, penguin = docs
    vs = client.vector_stores.create(
        name=unique("with-files"),
        file_ids=[zebra.id, penguin.id],
        chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20}},
        expires_after={"anchor": "last_active_at", "days": 2},
    )
    assert vs.expires_after is not None and vs.expires_after.days == 2
    done = wait_store_idle(client, vs.id)
    assert (done.file_counts.completed, done.file_counts.failed) == (2, 0)
    for f in direct.vector_stores.files.list(vector_store_id=vs.id):
        assert f.chunking_strategy.static.max_chunk_size_tokens == 100
        assert f.chunking_strategy.static.chunk_overlap_tokens == 20

    # A list of queries and max_num_results reach ragstore.
    page = client.vector_stores.search(vs.id, query=["flightless seabirds", "southern hemisphere"], max_num_results=1)
    assert len(page.data) == 1 and page.data[0].file_id == penguin.id
    client.vector_stores.delete(vs.id)


def test_list_and_update(client, direct):
    first = client.vector_stores.create(name=unique("list-1"))
    second = client.vector_stores.create(name=unique("list-2"))

    updated = client.vector_stores.update(first.id, name=first.name + "-renamed", metadata={"k": "v"})
    assert (updated.name, updated.metadata) == (first.name + "-renamed", {"k": "v"})
    assert direct.vector_stores.retrieve(first.id).name == first.name + "-renamed"

    # limit/order/after are forwarded for stores (unlike files): one store per page, and walking
    # the pages gives ragstore's own order.
    first_page = client.vector_stores.list(limit=1, order="asc")
    assert len(first_page.data) == 1 and first_page.has_more is True
    seen = [vs.id for vs in client.vector_stores.list(limit=1, order="asc")]
    assert seen == [vs.id for vs in direct.vector_stores.list(limit=100, order="asc")]
    assert {first.id, second.id} <= set(seen)

    for vs in (first, second):
        client.vector_stores.delete(vs.id)


def test_unknown_store_is_404_through_proxy(client):
    with pytest.raises(openai.NotFoundError) as exc:
        client.vector_stores.retrieve("vs_doesnotexist")
    assert "No such VectorStore object: vs_doesnotexist" in str(exc.value)
