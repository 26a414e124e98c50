"""API keys, projects, per-key rate limits and per-project quotas, as the official OpenAI SDK sees
them.

The session server (conftest.py) has a key of project `sdk`; the key checks run against it. The
rate limit and quota tests share one server of this module's own (`dedicated`), started with
`--rate-uploads 3 --rate-retrievals 60`; every test there makes its own keys (and projects), so
each starts with a full allowance and its own quotas. Keys made while a server runs are accepted at
once: the server only remembers verdicts of keys it has seen, and it already knows keys exist.
"""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path

import openai
import pytest

from conftest import API_PREFIXES, Server, start_server

try:  # The SDK ships the httpx fork `httpx2`; plain httpx works the same way if installed.
    import httpx  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    import httpx2 as httpx  # type: ignore[no-redef]

UPLOADS_PER_MINUTE = 3
RETRIEVALS_PER_MINUTE = 60
# How long a server may remember a key's verdict (a revoked key keeps working that long).
VERDICT_CACHE_S = 5.0


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def _file(size: int = 16, name: str | None = None) -> tuple[str, io.BytesIO]:
    return (name or _name() + ".txt", io.BytesIO(uuid.uuid4().hex.encode().ljust(size, b"x")[:size]))


def _assert_invalid_api_key(e: openai.APIStatusError) -> None:
    assert e.status_code == 401
    assert e.code == "invalid_api_key"
    assert e.type == "invalid_request_error"
    assert e.response.headers["www-authenticate"].startswith("Bearer")


@pytest.fixture
def other_project_key(session_server: Server) -> str:
    """A key of a project of its own (not the session key's `sdk`), on the session server."""
    return session_server.create_key(f"other-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def other_client(api_base: str, other_project_key: str):
    c = openai.OpenAI(
        base_url=api_base, api_key=other_project_key, max_retries=0, timeout=30.0,
        _strict_response_validation=True,
    )
    try:
        yield c
    finally:
        c.close()


# --------------------------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------------------------


def test_wrong_key_is_refused(api_base: str, api_key: str):
    # Not a key at all, a well-formed key nobody issued, and the real key's id with a wrong
    # secret (the server must check the secret, not only look the id up).
    last = api_key[-1]
    wrong_secret = api_key[:-1] + ("0" if last != "0" else "1")
    for key in ["anything", f"rsk-{uuid.uuid4().hex[:22]}-{'ab' * 32}", wrong_secret]:
        c = openai.OpenAI(base_url=api_base, api_key=key, max_retries=0, timeout=30.0)
        with pytest.raises(openai.AuthenticationError) as ei:
            c.files.list()
        _assert_invalid_api_key(ei.value)
        with pytest.raises(openai.AuthenticationError) as ei:
            c.files.create(file=_file(), purpose="assistants")
        _assert_invalid_api_key(ei.value)
        c.close()


def test_missing_key_is_refused(api_base: str, auth_headers: dict[str, str]):
    name = _name() + ".txt"
    for headers in [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"}]:
        listed = httpx.get(f"{api_base}/files", headers=headers)
        assert listed.status_code == 401, listed.text
        assert listed.json()["error"]["code"] == "invalid_api_key"
        assert listed.json()["error"]["type"] == "invalid_request_error"
        assert listed.headers["www-authenticate"].startswith("Bearer")
        posted = httpx.post(
            f"{api_base}/files", headers=headers, data={"purpose": "assistants"},
            files={"file": (name, b"hello", "text/plain")},
        )
        assert posted.status_code == 401, posted.text
        assert posted.json()["error"]["code"] == "invalid_api_key"
    # Nothing was stored by the refused uploads.
    listed = httpx.get(f"{api_base}/files", headers=auth_headers, params={"limit": 10000})
    assert listed.status_code == 200
    assert name not in [f["filename"] for f in listed.json()["data"]]


def test_health_needs_no_key(server: str):
    resp = httpx.get(f"{server}/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_the_real_key_works(client: openai.OpenAI, api_key: str):
    assert client.api_key == api_key and api_key.startswith("rsk-")
    f = client.files.create(file=_file(), purpose="assistants")
    assert client.files.retrieve(f.id).id == f.id


def test_revoked_key_is_refused(session_server: Server):
    # The key id is the `rsk-<id>-<secret>` key's middle part.
    def key_id(key: str) -> str:
        return "key_" + key.split("-")[1]

    # Revoked before it is ever used: refused at once.
    never_used = session_server.create_key(f"revoke-{uuid.uuid4().hex[:8]}")
    assert key_id(never_used) in session_server.cli("keys", "list")
    session_server.cli("keys", "revoke", key_id(never_used))
    c = session_server.client(api_key=never_used)
    with pytest.raises(openai.AuthenticationError) as ei:
        c.files.list()
    _assert_invalid_api_key(ei.value)

    # Revoked while in use: refused once the server's memory of its verdict (5 s) runs out.
    used = session_server.create_key(f"revoke-{uuid.uuid4().hex[:8]}")
    c = session_server.client(api_key=used)
    c.files.list()
    session_server.cli("keys", "revoke", key_id(used))
    revoked_at = time.monotonic()
    while True:
        try:
            c.files.list()
        except openai.AuthenticationError as e:
            _assert_invalid_api_key(e)
            break
        assert time.monotonic() - revoked_at < VERDICT_CACHE_S + 2, "a revoked key still works"
        time.sleep(0.25)
    # Other keys are unaffected.
    session_server.client().files.list()


# --------------------------------------------------------------------------------------------
# projects: a key sees only its project's objects
# --------------------------------------------------------------------------------------------


def test_projects_do_not_see_each_others_files(client: openai.OpenAI, other_client: openai.OpenAI):
    content = b"project A's secret\n" + uuid.uuid4().bytes
    f = client.files.create(file=(_name() + ".txt", content), purpose="assistants")

    with pytest.raises(openai.NotFoundError):
        other_client.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        other_client.files.content(f.id)
    with pytest.raises(openai.NotFoundError):
        other_client.files.delete(f.id)
    assert f.id not in [x.id for x in other_client.files.list(limit=10000)]

    # Still there for its own project, bytes intact.
    assert client.files.retrieve(f.id).id == f.id
    assert client.files.content(f.id).read() == content
    assert f.id in [x.id for x in client.files.list(limit=10000)]
    # And the other project's own files work as usual.
    g = other_client.files.create(file=_file(), purpose="assistants")
    assert other_client.files.delete(g.id).deleted is True


def test_projects_do_not_see_each_others_vector_stores(client: openai.OpenAI, other_client: openai.OpenAI):
    f = client.files.create(file=(_name() + ".txt", b"Sourdough needs a starter."), purpose="assistants")
    store = client.vector_stores.create(name=_name(), file_ids=[f.id])

    with pytest.raises(openai.NotFoundError):
        other_client.vector_stores.retrieve(store.id)
    with pytest.raises(openai.NotFoundError):
        other_client.vector_stores.search(store.id, query="sourdough")
    with pytest.raises(openai.NotFoundError):
        other_client.vector_stores.files.create(vector_store_id=store.id, file_id=f.id)
    with pytest.raises(openai.NotFoundError):
        other_client.vector_stores.delete(store.id)
    assert store.id not in [s.id for s in other_client.vector_stores.list(limit=100)]
    # Nor can it put project A's file into a store of its own.
    own = other_client.vector_stores.create(name=_name())
    with pytest.raises(openai.NotFoundError):
        other_client.vector_stores.files.create(vector_store_id=own.id, file_id=f.id)
    assert list(other_client.vector_stores.files.list(own.id)) == []

    assert client.vector_stores.retrieve(store.id).id == store.id
    assert [vf.id for vf in client.vector_stores.files.list(store.id)] == [f.id]
    client.vector_stores.delete(store.id)


# --------------------------------------------------------------------------------------------
# a server of this module's own, for rate limits and quotas
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dedicated(tmp_path_factory: pytest.TempPathFactory):
    yield from start_server(
        tmp_path_factory.mktemp("ragstore-limits"),
        rate_limits={"uploads": UPLOADS_PER_MINUTE, "retrievals": RETRIEVALS_PER_MINUTE},
    )


@pytest.fixture
def fresh_key(dedicated: Server) -> str:
    """A key of its own (a full allowance), in a project of its own."""
    return dedicated.create_key(_name())


# --------------------------------------------------------------------------------------------
# rate limits
# --------------------------------------------------------------------------------------------


def test_upload_rate_limit_headers_then_429(dedicated: Server, fresh_key: str):
    clients = [dedicated.client(prefix, api_key=fresh_key) for prefix in API_PREFIXES.values()]
    remaining = []
    for i in range(UPLOADS_PER_MINUTE):
        # Both route prefixes take from the same allowance.
        raw = clients[i % 2].files.with_raw_response.create(file=_file(), purpose="assistants")
        assert raw.http_response.status_code == 200
        assert raw.headers["x-ratelimit-limit-requests"] == str(UPLOADS_PER_MINUTE)
        assert raw.headers["x-ratelimit-reset-requests"]
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
        assert raw.parse().object == "file"
    assert remaining == [2, 1, 0]

    with pytest.raises(openai.RateLimitError) as ei:
        clients[0].files.create(file=_file(), purpose="assistants")
    e = ei.value
    assert e.status_code == 429
    assert e.code == "rate_limit_exceeded"
    assert e.type == "requests"
    h = e.response.headers
    assert 1 <= int(h["retry-after"]) <= 60 // UPLOADS_PER_MINUTE
    assert 0 < int(h["retry-after-ms"]) <= 60_000 // UPLOADS_PER_MINUTE
    assert h["x-ratelimit-limit-requests"] == str(UPLOADS_PER_MINUTE)
    assert h["x-ratelimit-remaining-requests"] == "0"

    # The refused upload stored nothing; reads have an allowance of their own.
    raw = clients[1].files.with_raw_response.list()
    assert raw.headers["x-ratelimit-limit-requests"] == str(RETRIEVALS_PER_MINUTE)
    assert len(raw.parse().data) == UPLOADS_PER_MINUTE
    for c in clients:
        c.close()


def test_rate_limits_are_per_key_and_per_kind(dedicated: Server):
    project = _name()
    first, second = dedicated.create_key(project), dedicated.create_key(project)
    c1, c2 = dedicated.client(api_key=first), dedicated.client(api_key=second)
    for _ in range(UPLOADS_PER_MINUTE):
        c1.files.create(file=_file(), purpose="assistants")
    with pytest.raises(openai.RateLimitError):
        c1.files.create(file=_file(), purpose="assistants")
    # POST /v1/uploads is an upload too.
    with pytest.raises(openai.RateLimitError):
        c1.uploads.create(bytes=5, filename="a.txt", mime_type="text/plain", purpose="assistants")
    # Another kind of request with the same key is not limited by it.
    assert len(c1.files.list().data) == UPLOADS_PER_MINUTE
    # Another key of the same project has its own allowance.
    raw = c2.files.with_raw_response.create(file=_file(), purpose="assistants")
    assert raw.headers["x-ratelimit-remaining-requests"] == str(UPLOADS_PER_MINUTE - 1)
    assert len(c2.files.list().data) == UPLOADS_PER_MINUTE + 1
    c1.close()
    c2.close()


def test_sdk_retries_a_429_on_its_own(dedicated: Server, fresh_key: str):
    # Retrievals (60 a minute: one more every second) rather than uploads (3 a minute), so the
    # SDK's wait for the server's retry-after is about a second, not twenty.
    statuses: list[int] = []
    retry_after_ms: list[int] = []

    def record(response) -> None:
        statuses.append(response.status_code)
        if response.status_code == 429:
            retry_after_ms.append(int(response.headers["retry-after-ms"]))

    http_client = openai.DefaultHttpxClient(event_hooks={"response": [record]})
    retrying = dedicated.client(api_key=fresh_key, max_retries=2, http_client=http_client)
    no_retries = dedicated.client(api_key=fresh_key)
    f = no_retries.files.create(file=_file(), purpose="assistants")

    # Spend the key's retrievals.
    for _ in range(RETRIEVALS_PER_MINUTE + 5):
        try:
            no_retries.files.retrieve(f.id)
        except openai.RateLimitError:
            break
    else:
        pytest.fail(f"{RETRIEVALS_PER_MINUTE + 5} retrievals in a row were all allowed")

    started = time.monotonic()
    got = retrying.files.retrieve(f.id)
    elapsed = time.monotonic() - started
    assert got.object == "file" and got.id == f.id
    # The first attempt was refused, the SDK waited as told and the retry went through.
    assert statuses == [429, 200]
    assert elapsed >= retry_after_ms[0] / 1000 * 0.9
    retrying.close()
    no_retries.close()


def test_no_rate_limit_headers_when_unlimited(client: openai.OpenAI):
    # The session server runs without rate limits (`--rate-uploads 0` ...): no headers.
    raw = client.files.with_raw_response.create(file=_file(), purpose="assistants")
    assert "x-ratelimit-limit-requests" not in raw.headers


# --------------------------------------------------------------------------------------------
# quotas (set while the server runs: the server reads them from the database per request)
# --------------------------------------------------------------------------------------------


def _assert_quota_exceeded(e: openai.BadRequestError) -> None:
    assert e.status_code == 400
    assert e.code == "quota_exceeded"
    assert e.type == "invalid_request_error"


def test_stored_bytes_quota(dedicated: Server):
    project = _name()
    key = dedicated.create_key(project)
    dedicated.cli("projects", "set-quota", project, "--stored-bytes", "1000")
    c = dedicated.client(api_key=key)

    first = c.files.create(file=_file(600), purpose="assistants")
    assert first.bytes == 600
    with pytest.raises(openai.BadRequestError) as ei:
        c.files.create(file=_file(600), purpose="assistants")
    _assert_quota_exceeded(ei.value)
    assert [f.id for f in c.files.list()] == [first.id]
    # The Uploads API: an upload declaring more than is left is refused when it is created.
    with pytest.raises(openai.BadRequestError) as ei:
        c.uploads.create(bytes=600, filename="big.txt", mime_type="text/plain", purpose="assistants")
    _assert_quota_exceeded(ei.value)

    # (Another key of the project: this one's uploads for the minute are spent.)
    c2 = dedicated.client(api_key=dedicated.create_key(project))
    # An upload that fitted when created, but no longer when completed, is refused then, and
    # stays pending: it completes once space is freed.
    upload = c2.uploads.create(bytes=300, filename="late.txt", mime_type="text/plain", purpose="assistants")
    part = c2.uploads.parts.create(upload.id, data=b"y" * 300)
    small = c2.files.create(file=_file(300), purpose="assistants")
    with pytest.raises(openai.BadRequestError) as ei:
        c2.uploads.complete(upload.id, part_ids=[part.id])
    _assert_quota_exceeded(ei.value)
    assert {f.id for f in c2.files.list()} == {first.id, small.id}

    c2.files.delete(first.id)
    done = c2.uploads.complete(upload.id, part_ids=[part.id])
    assert done.status == "completed" and done.file.bytes == 300
    assert {f.id for f in c2.files.list()} == {small.id, done.file.id}
    c.close()
    c2.close()


def test_stores_quota(dedicated: Server):
    project = _name()
    c = dedicated.client(api_key=dedicated.create_key(project))
    dedicated.cli("projects", "set-quota", project, "--stores", "1")

    first = c.vector_stores.create(name="one")
    with pytest.raises(openai.BadRequestError) as ei:
        c.vector_stores.create(name="two")
    _assert_quota_exceeded(ei.value)
    assert [s.id for s in c.vector_stores.list()] == [first.id]

    # Back to the server's default: the next request sees it.
    dedicated.cli("projects", "set-quota", project, "--stores", "default")
    second = c.vector_stores.create(name="two")
    assert {s.id for s in c.vector_stores.list()} == {first.id, second.id}
    c.close()


def test_files_per_store_quota(dedicated: Server):
    project = _name()
    c = dedicated.client(api_key=dedicated.create_key(project))
    dedicated.cli("projects", "set-quota", project, "--files-per-store", "1")
    a = c.files.create(file=_file(), purpose="assistants")
    b = c.files.create(file=_file(), purpose="assistants")
    store = c.vector_stores.create(name="small")

    c.vector_stores.files.create(vector_store_id=store.id, file_id=a.id)
    with pytest.raises(openai.BadRequestError) as ei:
        c.vector_stores.files.create(vector_store_id=store.id, file_id=b.id)
    _assert_quota_exceeded(ei.value)
    with pytest.raises(openai.BadRequestError) as ei:
        c.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=[b.id])
    _assert_quota_exceeded(ei.value)
    with pytest.raises(openai.BadRequestError) as ei:
        c.vector_stores.create(name="too full", file_ids=[a.id, b.id])
    _assert_quota_exceeded(ei.value)
    assert [vf.id for vf in c.vector_stores.files.list(store.id)] == [a.id]
    assert [s.id for s in c.vector_stores.list()] == [store.id]
    c.close()
