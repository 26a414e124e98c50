"""What LiteLLM 1.106.12 does not forward to ragstore. These pin LiteLLM's behaviour, not
ragstore's: each one shows ragstore serving the request directly and the proxy not passing it on,
so a LiteLLM upgrade that closes a gap fails here and the test (and the README) can be updated.

* POST /v1/uploads (and /parts, /complete, /cancel): the proxy has no such route (404 from its
  own router, `{"detail": "Not Found"}`).
* POST /v1/vector_stores/{id}/file_batches (and GET/cancel/files): no such route either; the only
  mention in litellm/proxy is a path-normalising regex in auth/auth_utils.py. The SDK's
  `vector_stores.file_batches.*` (and its `upload_and_poll`) therefore fail; attach files one at a
  time (`vector_stores.files.create_and_poll` / `upload_and_poll` work) or pass `file_ids` to create.
* GET /v1/files forwards only `purpose`: `limit`, `order` and `after` are dropped
  (proxy/openai_files_endpoints/files_endpoints.py list_files -> litellm.afile_list(purpose=...)),
  so the proxy always returns ragstore's whole default page (newest first, up to 10,000).
* Vector-store-file `attributes` lose every number and bool value on the way (create and update).
* Errors keep their HTTP status but not their body: ragstore's `{"error": {...}}` becomes the text
  of LiteLLM's `message`, and `code` becomes the status as a string ("404"), not `file_not_found`.
"""

from __future__ import annotations

import httpx
import openai
import pytest
from support import unique, upload

UNROUTED = [
    ("POST", "/v1/uploads", {"filename": "u.txt", "purpose": "assistants", "bytes": 3, "mime_type": "text/plain"}),
    ("POST", "/v1/vector_stores/{vs}/file_batches", {"file_ids": ["{file}"]}),
]


@pytest.fixture(scope="module")
def store_and_file(client):
    f = upload(client, unique("gap") + ".txt", "gap document")
    vs = client.vector_stores.create(name=unique("gaps"))
    yield vs.id, f.id
    client.vector_stores.delete(vs.id)


@pytest.mark.parametrize(("method", "path", "body"), UNROUTED, ids=["uploads", "file_batches"])
def test_route_not_forwarded(proxy, ragstore, store_and_file, method, path, body):
    vs, file = store_and_file
    path = path.format(vs=vs)
    body = {k: ([file] if v == ["{file}"] else v) for k, v in body.items()}
    root, key = proxy
    via_proxy = httpx.request(method, root + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert via_proxy.status_code == 404, via_proxy.text
    assert via_proxy.json() == {"detail": "Not Found"}  # FastAPI's own 404: no route, nothing forwarded
    at_ragstore = httpx.request(method, ragstore + path, json=body, timeout=30)
    assert at_ragstore.status_code == 200, at_ragstore.text


def test_file_list_paging_is_dropped(client, direct):
    for i in range(3):
        upload(client, unique(f"page{i}") + ".txt", f"page {i}")
    total = len(direct.files.list().data)
    assert total >= 3
    assert len(direct.files.list(limit=2).data) == 2
    # Through the proxy the limit never reaches ragstore: every file comes back in one page.
    page = client.files.list(limit=2)
    assert len(page.data) == total and page.has_more is False


def test_non_string_attributes_are_dropped(client, direct):
    """LiteLLM filters vector-store-file `attributes` through `add_openai_metadata`
    (litellm/llms/openai/vector_store_files/transformation.py, create and update; utils.py keeps
    only `str` values, the rule for `metadata`), so number and bool attributes, which OpenAI's
    attributes allow and ragstore indexes, never reach ragstore. Search filters on them are
    forwarded unchanged, so attributes set directly on ragstore can still be filtered through the
    proxy."""
    file = upload(client, unique("attrs") + ".txt", "gap document").id
    vs = client.vector_stores.create(name=unique("attrs")).id
    attrs = {"kind": "doc", "pages": 12, "draft": False, "score": 0.5}
    created = client.vector_stores.files.create_and_poll(
        vector_store_id=vs, file_id=file, attributes=attrs, poll_interval_ms=100
    )
    assert created.attributes == {"kind": "doc"}
    assert direct.vector_stores.files.retrieve(vector_store_id=vs, file_id=file).attributes == {"kind": "doc"}

    updated = client.vector_stores.files.update(vector_store_id=vs, file_id=file, attributes={"kind": "x", "pages": 3})
    assert updated.attributes == {"kind": "x"}

    # Set on ragstore itself, numbers and bools are searchable through the proxy's filters.
    direct.vector_stores.files.update(vector_store_id=vs, file_id=file, attributes=attrs)
    hit = client.vector_stores.search(vs, query="gap document", filters={"type": "gte", "key": "pages", "value": 10})
    assert [h.file_id for h in hit.data] == [file]
    assert hit.data[0].attributes == attrs
    miss = client.vector_stores.search(vs, query="gap document", filters={"type": "eq", "key": "draft", "value": True})
    assert miss.data == []
    client.vector_stores.delete(vs)


def test_error_bodies_are_rewrapped(client, direct):
    """The status survives, ragstore's error object does not: LiteLLM puts its text in `message`
    and sets `code` to the status as a string."""
    with pytest.raises(openai.NotFoundError) as at_ragstore:
        direct.files.retrieve("file-missing")
    assert at_ragstore.value.code == "file_not_found"
    with pytest.raises(openai.NotFoundError) as via_proxy:
        client.files.retrieve("file-missing")
    assert via_proxy.value.code == "404"
    assert "'code': 'file_not_found'" in via_proxy.value.message
