"""The Files API through the official OpenAI Python SDK (and raw HTTP for the error shape)."""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import uuid

import openai
import pytest

try:  # The SDK ships the httpx fork `httpx2`; plain httpx works the same way if installed.
    import httpx  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    import httpx2 as httpx  # type: ignore[no-redef]

THIRTY_DAYS = 30 * 24 * 3600



def _stable(f) -> dict:
    """A file object without `status`/`status_details`, which move on their own: assistants and
    user_data files have their text extracted in the background right after upload."""
    d = f.model_dump()
    assert d.pop("status") in ("uploaded", "processed", "error")
    d.pop("status_details")
    return d

def unique_name(suffix: str = ".txt") -> str:
    return f"t-{uuid.uuid4().hex[:12]}{suffix}"


def list_all(client: openai.OpenAI, **params) -> list:
    """Every file of one listing, following the SDK's auto-pagination."""
    return list(client.files.list(**params))


# --------------------------------------------------------------------------------------------
# create / retrieve
# --------------------------------------------------------------------------------------------


def test_create_returns_file_object(client: openai.OpenAI):
    content = b"hello ragstore\n" + uuid.uuid4().bytes
    name = unique_name()
    before = int(time.time())
    f = client.files.create(file=(name, content), purpose="assistants")
    after = int(time.time())

    assert f.id.startswith("file-") and len(f.id) > len("file-")
    assert f.object == "file"
    assert f.bytes == len(content)
    assert f.filename == name
    assert f.purpose == "assistants"
    assert f.status == "uploaded"
    assert type(f.created_at) is int
    assert before - 1 <= f.created_at <= after + 1
    # Only batch files expire by default.
    assert f.expires_at is None


def test_create_gives_distinct_ids(client: openai.OpenAI):
    ids = {client.files.create(file=(unique_name(), b"x"), purpose="user_data").id for _ in range(3)}
    assert len(ids) == 3


def test_retrieve_matches_create(client: openai.OpenAI):
    created = client.files.create(file=(unique_name(".md"), b"# title\n"), purpose="user_data")
    got = client.files.retrieve(created.id)
    assert _stable(got) == _stable(created)


def test_retrieve_unknown_is_404(client: openai.OpenAI):
    with pytest.raises(openai.NotFoundError) as e:
        client.files.retrieve("file-doesnotexist0000000000")
    assert e.value.status_code == 404
    assert e.value.code == "file_not_found"


def test_retrieve_malformed_id_is_404(client: openai.OpenAI):
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("not-a-file-id")


def test_empty_file_is_accepted(client: openai.OpenAI):
    f = client.files.create(file=(unique_name(), b""), purpose="assistants")
    assert f.bytes == 0
    assert client.files.content(f.id).read() == b""


# --------------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------------


def test_list_purpose_filter(lenient_client: openai.OpenAI):
    client = lenient_client  # the SDK's FileObject.purpose does not list 'evals'

    evals = client.files.create(file=(unique_name(".jsonl"), b'{"a": 1}\n'), purpose="evals")
    user = client.files.create(file=(unique_name(), b"u"), purpose="user_data")

    only_evals = list_all(client, purpose="evals")
    ids = [f.id for f in only_evals]
    assert evals.id in ids
    assert user.id not in ids
    assert all(f.purpose == "evals" for f in only_evals)

    everything = [f.id for f in list_all(client)]
    assert evals.id in everything and user.id in everything


def test_list_object_shape(client: openai.OpenAI):
    client.files.create(file=(unique_name(), b"shape"), purpose="user_data")
    raw = client.files.with_raw_response.list(limit=1)
    body = raw.http_response.json()
    assert body["object"] == "list"
    assert len(body["data"]) == 1
    assert body["first_id"] == body["last_id"] == body["data"][0]["id"]
    assert isinstance(body["has_more"], bool)


def test_list_order_asc_desc(client: openai.OpenAI):
    mine = [client.files.create(file=(unique_name(), b"o"), purpose="user_data").id for _ in range(3)]

    asc = list_all(client, purpose="user_data", order="asc")
    desc = list_all(client, purpose="user_data", order="desc")
    default = list_all(client, purpose="user_data")

    asc_keys = [(f.created_at, f.id) for f in asc]
    desc_keys = [(f.created_at, f.id) for f in desc]
    assert asc_keys == sorted(asc_keys) and len(set(asc_keys)) == len(asc_keys)
    assert desc_keys == sorted(desc_keys, reverse=True)
    assert [f.id for f in desc] == [f.id for f in reversed(asc)]
    # The default order is desc.
    assert [f.id for f in default] == [f.id for f in desc]
    assert set(mine) <= {f.id for f in asc}


def test_list_bad_params(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as e:
        client.files.list(limit=0)
    assert e.value.param == "limit"
    with pytest.raises(openai.BadRequestError) as e:
        client.files.list(order="sideways")  # type: ignore[arg-type]
    assert e.value.param == "order"
    with pytest.raises(openai.BadRequestError) as e:
        client.files.list(purpose="nonsense")
    assert e.value.param == "purpose"


def _create_burst(client: openai.OpenAI, n: int, purpose: str = "user_data") -> tuple[list, float]:
    start = time.monotonic()
    files = [client.files.create(file=(unique_name(), f"burst {i}".encode()), purpose=purpose) for i in range(n)]
    return files, time.monotonic() - start


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_list_limit_after_pagination(client: openai.OpenAI, order: str):
    files, elapsed = _create_burst(client, 7)
    mine = {f.id for f in files}
    if elapsed < 1.0:
        # 7 files within one second span at most two seconds: at least 4 share a created_at,
        # so the pages below must break ties on created_at correctly.
        seconds = [f.created_at for f in files]
        assert max(seconds.count(s) for s in seconds) >= 4

    full = client.files.with_raw_response.list(purpose="user_data", order=order, limit=10000)
    full_ids = [d["id"] for d in full.http_response.json()["data"]]
    assert full.http_response.json()["has_more"] is False

    paged: list[str] = []
    after = None
    pages = 0
    while True:
        params = {"purpose": "user_data", "order": order, "limit": 2}
        if after is not None:
            params["after"] = after
        body = client.files.with_raw_response.list(**params).http_response.json()
        pages += 1
        assert pages <= len(full_ids) // 2 + 2, "pagination does not terminate"
        data = body["data"]
        assert len(data) <= 2
        if data:
            assert body["first_id"] == data[0]["id"]
            assert body["last_id"] == data[-1]["id"]
        else:
            assert body["first_id"] is None and body["last_id"] is None
        paged.extend(d["id"] for d in data)
        if not body["has_more"]:
            break
        assert len(data) == 2, "a page with has_more=true must be full"
        after = body["last_id"]

    # Paging with limit=2 yields exactly the single-page listing: nothing skipped or repeated.
    assert paged == full_ids
    assert len(set(paged)) == len(paged)
    assert mine <= set(paged)


def test_list_after_unknown_id(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as e:
        client.files.list(after="file-doesnotexist0000000000")
    assert e.value.param == "after"


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sdk_auto_pagination_returns_each_file_once(client: openai.OpenAI, order: str):
    files, _ = _create_burst(client, 7)
    mine = [f.id for f in files]

    page = client.files.list(purpose="user_data", order=order, limit=2)
    assert len(page.data) == 2
    assert page.has_more is True

    seen = [f.id for f in page]  # iterating a page follows `after` across every page
    assert len(seen) == len(set(seen)), "auto-pagination repeated a file"
    for fid in mine:
        assert seen.count(fid) == 1
    single = [f.id for f in client.files.list(purpose="user_data", order=order, limit=10000).data]
    assert seen == single


# --------------------------------------------------------------------------------------------
# content
# --------------------------------------------------------------------------------------------


def test_content_binary_roundtrip(client: openai.OpenAI):
    data = bytes(range(256)) * 16 + b"\x00\r\n\xff\xfe" + os.urandom(5000)
    f = client.files.create(file=(unique_name(".bin"), data), purpose="assistants")
    assert f.bytes == len(data)
    assert client.files.content(f.id).read() == data


def test_content_headers_non_ascii_filename(client: openai.OpenAI):
    name = "résumé 报告-" + uuid.uuid4().hex[:6] + ".bin"
    data = "Grüße, 世界\n".encode() + b"\x00\x01\x02"
    f = client.files.create(file=(name, data), purpose="user_data")
    assert f.filename == name
    assert client.files.retrieve(f.id).filename == name

    raw = client.files.with_raw_response.content(f.id)
    assert raw.http_response.status_code == 200
    assert raw.http_response.content == data
    assert raw.headers["content-type"].startswith("application/octet-stream")
    assert raw.headers["content-length"] == str(len(data))

    disposition = raw.headers["content-disposition"]
    assert disposition.isascii()
    parts = [p.strip() for p in disposition.split(";")]
    assert parts[0] == "attachment"
    params = dict(p.split("=", 1) for p in parts[1:])
    # RFC 6266 / 5987: an ASCII fallback plus the exact UTF-8 name.
    assert params["filename"].startswith('"') and params["filename"].endswith('"')
    ext = params["filename*"]
    assert ext.lower().startswith("utf-8''")
    assert urllib.parse.unquote(ext[len("utf-8''"):], encoding="utf-8", errors="strict") == name


def test_content_headers_ascii_filename(client: openai.OpenAI):
    name = unique_name(".txt")
    f = client.files.create(file=(name, b"plain"), purpose="user_data")
    raw = client.files.with_raw_response.content(f.id)
    assert raw.headers["content-disposition"] == f'attachment; filename="{name}"'


def test_content_unknown_is_404(client: openai.OpenAI):
    with pytest.raises(openai.NotFoundError) as e:
        client.files.content("file-doesnotexist0000000000")
    assert e.value.code == "file_not_found"


# --------------------------------------------------------------------------------------------
# delete
# --------------------------------------------------------------------------------------------


def test_delete(client: openai.OpenAI):
    f = client.files.create(file=(unique_name(), b"to be deleted"), purpose="assistants")
    deleted = client.files.delete(f.id)
    assert deleted.id == f.id
    assert deleted.object == "file"
    assert deleted.deleted is True

    with pytest.raises(openai.NotFoundError) as e:
        client.files.retrieve(f.id)
    assert e.value.code == "file_not_found"
    with pytest.raises(openai.NotFoundError):
        client.files.content(f.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(f.id)
    assert f.id not in {x.id for x in list_all(client, purpose="assistants")}


def test_delete_keeps_other_files(client: openai.OpenAI):
    keep = client.files.create(file=(unique_name(), b"keep me"), purpose="assistants")
    drop = client.files.create(file=(unique_name(), b"drop me"), purpose="assistants")
    client.files.delete(drop.id)
    assert client.files.content(keep.id).read() == b"keep me"


# --------------------------------------------------------------------------------------------
# batch purpose and expiry
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b'{"custom_id": "1"}\nthis is not json\n',
        b"[1, 2, 3]\n",
        b'{"custom_id": "1"}\n"a string"\n',
        b'{"unterminated": \n',
    ],
    ids=["not-json", "array", "string-line", "truncated"],
)
def test_batch_rejects_invalid_jsonl(client: openai.OpenAI, content: bytes):
    with pytest.raises(openai.BadRequestError) as e:
        client.files.create(file=(unique_name(".jsonl"), content), purpose="batch")
    assert e.value.param == "file"
    assert e.value.type == "invalid_request_error"


def test_batch_valid_jsonl_expires_in_30_days(client: openai.OpenAI):
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": {"n": i}}
        for i in range(3)
    ]
    content = ("\n".join(json.dumps(x) for x in lines) + "\n").encode()
    f = client.files.create(file=(unique_name(".jsonl"), content), purpose="batch")
    assert f.purpose == "batch"
    assert f.expires_at is not None
    assert abs(f.expires_at - (f.created_at + THIRTY_DAYS)) <= 60
    assert client.files.content(f.id).read() == content


def test_explicit_expires_after(client: openai.OpenAI):
    f = client.files.create(
        file=(unique_name(), b"short-lived"),
        purpose="assistants",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert f.expires_at == f.created_at + 3600
    assert client.files.retrieve(f.id).expires_at == f.created_at + 3600


def test_explicit_expires_after_overrides_batch_default(client: openai.OpenAI):
    f = client.files.create(
        file=(unique_name(".jsonl"), b'{"a": 1}\n'),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 7200},
    )
    assert f.expires_at == f.created_at + 7200


@pytest.mark.parametrize("seconds", [10, 3599, 2592001])
def test_expires_after_out_of_range(client: openai.OpenAI, seconds: int):
    with pytest.raises(openai.BadRequestError) as e:
        client.files.create(
            file=(unique_name(), b"x"),
            purpose="assistants",
            expires_after={"anchor": "created_at", "seconds": seconds},
        )
    assert "expires_after" in (e.value.param or "")


def test_bad_purpose(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as e:
        client.files.create(file=(unique_name(), b"x"), purpose="nonsense")  # type: ignore[arg-type]
    assert e.value.param == "purpose"


# --------------------------------------------------------------------------------------------
# size limit (the session server runs with --max-file-bytes 1MiB)
# --------------------------------------------------------------------------------------------


def test_file_at_limit_is_accepted(client: openai.OpenAI, limits):
    data = os.urandom(limits["max_file_bytes"])
    f = client.files.create(file=(unique_name(".bin"), data), purpose="assistants")
    assert f.bytes == len(data)
    assert client.files.content(f.id).read() == data


def test_file_over_limit_is_413(client: openai.OpenAI, limits):
    before = {f.id for f in list_all(client, purpose="assistants")}
    with pytest.raises(openai.APIStatusError) as e:
        client.files.create(
            file=(unique_name(".bin"), b"\0" * (limits["max_file_bytes"] + 1)), purpose="assistants"
        )
    assert e.value.status_code == 413
    assert e.value.code == "payload_too_large"
    # Nothing was stored.
    assert {f.id for f in list_all(client, purpose="assistants")} == before


# --------------------------------------------------------------------------------------------
# raw HTTP: the error envelope
# --------------------------------------------------------------------------------------------


def _assert_error_envelope(resp, status: int) -> dict:
    assert resp.status_code == status
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    # OpenAI's envelope, with RFC 7807's fields beside it (llama-stack's error spec).
    assert set(body) == {"error", "status", "title", "detail", "instance"}
    assert body["status"] == status and body["title"]
    err = body["error"]
    assert body["detail"] == err["message"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    assert err["param"] is None or isinstance(err["param"], str)
    assert err["code"] is None or isinstance(err["code"], str)
    return err


def test_error_shape_not_found(api_base: str, auth_headers: dict[str, str]):
    resp = httpx.get(f"{api_base}/files/file-doesnotexist0000000000", headers=auth_headers)
    err = _assert_error_envelope(resp, 404)
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "file_not_found"
    assert err["param"] is None


def test_error_shape_bad_purpose(api_base: str, auth_headers: dict[str, str]):
    resp = httpx.post(
        f"{api_base}/files",
        data={"purpose": "nonsense"},
        files={"file": ("a.txt", b"hello", "text/plain")},
        headers=auth_headers,
    )
    err = _assert_error_envelope(resp, 400)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == "purpose"


def test_error_shape_missing_file(api_base: str, auth_headers: dict[str, str]):
    resp = httpx.post(
        f"{api_base}/files",
        data={"purpose": "assistants"},
        files={"other": ("a.txt", b"hello", "text/plain")},
        headers=auth_headers,
    )
    err = _assert_error_envelope(resp, 400)
    assert err["param"] == "file"


def test_error_shape_missing_api_key(api_base: str):
    # The session server has a key, so a request without one is refused (test_auth.py has more).
    resp = httpx.get(f"{api_base}/files", params={"limit": 1})
    err = _assert_error_envelope(resp, 401)
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "invalid_api_key"
    assert resp.headers["www-authenticate"].startswith("Bearer")


def test_fine_tuning_files_are_validated(client: openai.OpenAI):
    example = '{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]}\n'
    good = client.files.create(file=("train.jsonl", (example * 10).encode()), purpose="fine-tune")
    bad = client.files.create(
        file=("bad.jsonl", (example + '{"prompt":"a","completion":"b"}\n').encode()), purpose="fine-tune"
    )
    assert client.files.wait_for_processing(good.id, poll_interval=0.1).status == "processed"
    got = client.files.wait_for_processing(bad.id, poll_interval=0.1)
    assert got.status == "error"
    assert "line 2" in got.status_details
