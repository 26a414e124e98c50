"""Files through llama-stack-client: create, retrieve, list (paged), content, delete."""

from __future__ import annotations

import inspect
import io
import os

import pytest
from llama_stack_client import BadRequestError, LlamaStackClient, NotFoundError

from support import LEGACY, items, upload


def test_create_retrieve_list_content_delete(client: LlamaStackClient):
    text = "# Notes\n\nragstore keeps the exact bytes: \u00e9\u00e8 \u2603\n"
    f = upload(client, "notes.md", text, "text/markdown")
    assert f.id.startswith("file-")
    assert f.object == "file"
    assert f.bytes == len(text.encode())
    assert f.filename == "notes.md"
    assert f.purpose == "assistants"
    assert f.created_at > 0
    assert f.expires_at is None

    got = client.files.retrieve(f.id)
    assert (got.id, got.bytes, got.filename, got.purpose) == (f.id, f.bytes, "notes.md", "assistants")

    listed = items(client.files.list(purpose="assistants", order="desc", limit=100))
    assert f.id in [x.id for x in listed]

    # The parsed call gives text (`str` in 0.3+, `object` in 0.2.x: a str for a non-JSON body).
    assert client.files.content(f.id) == text
    raw = client.files.with_raw_response.content(f.id)
    assert raw.http_response.status_code == 200
    assert raw.http_response.content == text.encode()
    assert raw.http_response.headers["content-type"] == "application/octet-stream"

    deleted = client.files.delete(f.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (f.id, True, "file")

    with pytest.raises(NotFoundError) as e:
        client.files.retrieve(f.id)
    assert e.value.status_code == 404
    assert e.value.body["error"]["code"] == "file_not_found"
    assert e.value.body["error"]["type"] == "invalid_request_error"
    # RFC 7807 fields beside OpenAI's error (llama-stack's error shape).
    assert e.value.body["status"] == 404
    assert f.id in e.value.body["detail"]
    with pytest.raises(NotFoundError):
        client.files.content(f.id)
    with pytest.raises(NotFoundError):
        client.files.delete(f.id)
    assert f.id not in [x.id for x in items(client.files.list(limit=100))]


def test_binary_bytes_round_trip(client: LlamaStackClient):
    data = os.urandom(4096) + b"\x00\xff\xfe"
    f = client.files.create(
        file=("blob.bin", io.BytesIO(data), "application/octet-stream"), purpose="assistants"
    )
    assert f.bytes == len(data)
    assert client.files.with_raw_response.content(f.id).http_response.content == data
    client.files.delete(f.id)


def test_list_pages_with_limit_and_after(client: LlamaStackClient):
    made = [upload(client, f"page-{i}.txt", f"page {i}\n").id for i in range(5)]
    page = client.files.list(limit=2, order="asc")
    assert len(page.data) == 2
    assert page.has_more is True
    if LEGACY:
        # 0.2.x returns one page; follow the cursor by hand.
        seen = [x.id for x in page.data]
        while page.has_more:
            page = client.files.list(limit=2, order="asc", after=page.last_id)
            assert len(page.data) <= 2
            seen += [x.id for x in page.data]
    else:
        seen = [x.id for x in page]  # the cursor page follows `after` itself
    assert len(seen) == len(set(seen)), "no file listed twice"
    assert set(made) <= set(seen)
    # asc really is ascending on (created_at, id)
    created = {x.id: x.created_at for x in items(client.files.list(limit=10000))}
    assert [created[i] for i in seen] == sorted(created[i] for i in seen)
    for fid in made:
        client.files.delete(fid)


def test_create_with_expires_after(client: LlamaStackClient):
    if "expires_after" not in inspect.signature(client.files.create).parameters:
        pytest.skip("this llama-stack-client's files.create has no expires_after")
    f = client.files.create(
        file=("short-lived.txt", io.BytesIO(b"bye soon\n"), "text/plain"),
        purpose="assistants",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert f.expires_at == f.created_at + 3600
    assert client.files.retrieve(f.id).expires_at == f.expires_at
    client.files.delete(f.id)


def test_batch_purpose_needs_jsonl(client: LlamaStackClient):
    # 0.2.x types `purpose` as Literal["assistants"] only, but sends whatever it is given.
    f = client.files.create(
        file=("requests.jsonl", io.BytesIO(b'{"custom_id": "1"}\n{"custom_id": "2"}\n'), "application/jsonl"),
        purpose="batch",
    )
    assert f.purpose == "batch"
    assert f.expires_at == f.created_at + 30 * 24 * 3600
    assert [x.id for x in items(client.files.list(purpose="batch"))].count(f.id) == 1
    assert f.id not in [x.id for x in items(client.files.list(purpose="assistants"))]
    client.files.delete(f.id)

    with pytest.raises(BadRequestError) as e:
        client.files.create(file=("bad.jsonl", io.BytesIO(b"not json\n"), "text/plain"), purpose="batch")
    assert e.value.body["error"]["param"] == "file"
    assert "JSONL" in e.value.body["error"]["message"]
