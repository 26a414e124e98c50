"""/v1/files through LiteLLM: create (files_settings), list/retrieve/content/delete (the openai
deployment's credentials). Each call is checked against ragstore's own /v1/files."""

from __future__ import annotations

import openai
import pytest
from support import unique, upload


def test_create_lands_in_ragstore(client, direct):
    name = unique("fox") + ".txt"
    body = b"The quick brown fox jumps over the lazy dog.\n"
    created = upload(client, name, body)
    assert created.id.startswith("file-")
    assert (created.filename, created.bytes, created.purpose) == (name, len(body), "assistants")

    # The same id, bytes and name on ragstore itself: LiteLLM forwarded the upload, not a copy.
    there = direct.files.retrieve(created.id)
    assert (there.id, there.filename, there.bytes, there.purpose) == (created.id, name, len(body), "assistants")
    assert direct.files.content(created.id).read() == body


def test_retrieve_and_content_are_exact(client, direct):
    blob = bytes(range(256)) * 3  # every byte value, not valid UTF-8
    created = upload(client, unique("blob") + ".bin", blob, mime="application/octet-stream", purpose="user_data")

    got = client.files.retrieve(created.id)
    assert (got.id, got.bytes, got.filename, got.purpose) == (created.id, len(blob), created.filename, "user_data")
    assert got.status == direct.files.retrieve(created.id).status

    content = client.files.with_raw_response.content(created.id)
    assert content.http_response.content == blob
    assert content.headers["content-type"].startswith("application/octet-stream")


def test_list_through_proxy(client, direct):
    a = upload(client, unique("list-a") + ".txt", "alpha")
    b = upload(client, unique("list-b") + ".txt", "beta", purpose="user_data")

    everything = {f.id: f for f in client.files.list()}
    assert {a.id, b.id} <= everything.keys()
    assert everything[a.id].filename == a.filename
    # The proxy's listing is ragstore's listing.
    assert everything.keys() == {f.id for f in direct.files.list()}

    # `purpose` is forwarded (LiteLLM's only forwarded list parameter, see test_litellm_gaps.py).
    assistants = {f.id for f in client.files.list(purpose="assistants")}
    assert a.id in assistants and b.id not in assistants


def test_expires_after_is_forwarded(client, direct):
    created = upload(
        client, unique("exp") + ".txt", "expiring", expires_after={"anchor": "created_at", "seconds": 7200}
    )
    assert created.expires_at == created.created_at + 7200
    assert direct.files.retrieve(created.id).expires_at == created.created_at + 7200


def test_delete_removes_it_from_ragstore(client, direct):
    created = upload(client, unique("del") + ".txt", "short-lived")
    deleted = client.files.delete(created.id)
    assert (deleted.id, deleted.deleted) == (created.id, True)

    with pytest.raises(openai.NotFoundError):
        direct.files.retrieve(created.id)
    assert created.id not in {f.id for f in client.files.list()}


def test_unknown_file_is_404_through_proxy(client):
    with pytest.raises(openai.NotFoundError) as exc:
        client.files.retrieve("file-doesnotexist")
    # LiteLLM keeps the status and wraps ragstore's error text into its own message.
    assert "No such File object: file-doesnotexist" in str(exc.value)
