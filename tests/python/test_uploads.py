"""The Uploads API (create, parts, complete, cancel) through the official OpenAI Python SDK."""

from __future__ import annotations

import hashlib
import os
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

MIME = "application/octet-stream"



def _stable(f) -> dict:
    """A file object without `status`/`status_details`, which move on their own: assistants and
    user_data files have their text extracted in the background right after upload."""
    d = f.model_dump()
    assert d.pop("status") in ("uploaded", "processed", "error")
    d.pop("status_details")
    return d

def unique_name(suffix: str = ".bin") -> str:
    return f"u-{uuid.uuid4().hex[:12]}{suffix}"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def new_upload(client: openai.OpenAI, size: int, purpose: str = "assistants", **kw):
    return client.uploads.create(
        bytes=size, filename=kw.pop("filename", unique_name()), mime_type=MIME, purpose=purpose, **kw
    )


# --------------------------------------------------------------------------------------------
# the happy paths
# --------------------------------------------------------------------------------------------


def test_create_upload_object(client: openai.OpenAI):
    name = unique_name(".pdf")
    before = int(time.time())
    up = client.uploads.create(bytes=1234, filename=name, mime_type="application/pdf", purpose="assistants")
    assert up.id.startswith("upload_")
    assert up.object == "upload"
    assert up.bytes == 1234
    assert up.filename == name
    assert up.purpose == "assistants"
    assert up.status == "pending"
    assert up.file is None
    assert type(up.created_at) is int and before - 1 <= up.created_at <= int(time.time()) + 1
    assert up.expires_at == up.created_at + 3600


def test_parts_complete_in_requested_order(client: openai.OpenAI):
    a = b"A" * 1000 + os.urandom(24)
    b = b"B" * 3000
    c = os.urandom(7777)
    total = len(a) + len(b) + len(c)
    name = unique_name()
    up = new_upload(client, total, filename=name)

    parts = {}
    for label, data in (("a", a), ("b", b), ("c", c)):
        p = client.uploads.parts.create(upload_id=up.id, data=data)
        assert p.id.startswith("part_")
        assert p.object == "upload.part"
        assert p.upload_id == up.id
        assert type(p.created_at) is int
        parts[label] = p.id
    assert len(set(parts.values())) == 3

    # Complete in an order different from the order the parts were added.
    expected = c + a + b
    done = client.uploads.complete(
        upload_id=up.id, part_ids=[parts["c"], parts["a"], parts["b"]], md5=md5(expected)
    )
    assert done.id == up.id
    assert done.status == "completed"
    assert done.bytes == total
    assert done.file is not None
    assert done.file.id.startswith("file-")
    assert done.file.object == "file"
    assert done.file.bytes == total
    assert done.file.filename == name
    assert done.file.purpose == "assistants"
    assert done.file.status == "uploaded"

    assert client.files.content(done.file.id).read() == expected
    assert _stable(client.files.retrieve(done.file.id)) == _stable(done.file)
    assert done.file.id in {f.id for f in client.files.list(purpose="assistants")}


def test_complete_without_md5(client: openai.OpenAI):
    data = os.urandom(4096)
    up = new_upload(client, len(data), purpose="user_data")
    p1 = client.uploads.parts.create(upload_id=up.id, data=data[:1000])
    p2 = client.uploads.parts.create(upload_id=up.id, data=data[1000:])
    done = client.uploads.complete(upload_id=up.id, part_ids=[p1.id, p2.id])
    assert done.status == "completed"
    assert client.files.content(done.file.id).read() == data


def test_parallel_parts(client: openai.OpenAI):
    chunks = [bytes([i]) * 1000 + os.urandom(30_000 + 997 * i) for i in range(10)]
    up = new_upload(client, sum(map(len, chunks)))

    def send(i: int) -> tuple[int, str]:
        return i, client.uploads.parts.create(upload_id=up.id, data=chunks[i]).id

    order = list(range(len(chunks)))
    random.Random(7).shuffle(order)
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = dict(pool.map(send, order))
    assert len(set(ids.values())) == len(chunks)

    # Complete in index order, which is neither the submission nor (likely) the arrival order.
    expected = b"".join(chunks)
    done = client.uploads.complete(
        upload_id=up.id, part_ids=[ids[i] for i in range(len(chunks))], md5=md5(expected)
    )
    assert done.status == "completed"
    assert done.file.bytes == len(expected)
    assert client.files.content(done.file.id).read() == expected


def test_upload_file_chunked_from_path(client: openai.OpenAI, tmp_path: Path, limits):
    data = os.urandom(700 * 1024 + 123)
    path = tmp_path / unique_name(".dat")
    path.write_bytes(data)
    part_size = limits["max_part_bytes"]
    assert len(data) > 2 * part_size  # at least three parts

    done = client.uploads.upload_file_chunked(
        file=path, mime_type=MIME, purpose="assistants", part_size=part_size, md5=md5(data)
    )
    assert done.status == "completed"
    assert done.bytes == len(data)
    assert done.filename == path.name
    assert done.file.filename == path.name
    assert done.file.bytes == len(data)
    assert client.files.content(done.file.id).read() == data


def test_upload_file_chunked_in_memory(client: openai.OpenAI):
    data = b"".join(b"line %d\n" % i for i in range(5000))
    name = unique_name(".txt")
    done = client.uploads.upload_file_chunked(
        file=data, filename=name, bytes=len(data), mime_type="text/plain", purpose="user_data", part_size=10_000
    )
    assert done.status == "completed"
    assert done.file.filename == name
    assert client.files.content(done.file.id).read() == data


def test_upload_larger_than_max_file_bytes(client: openai.OpenAI, limits):
    """Uploads exist for files bigger than POST /files accepts (8 GB vs 512 MB at OpenAI).

    The session server runs with --max-file-bytes 1MiB and --max-upload-bytes 4MiB, so a
    1.5 MiB upload is within its limits and must complete.
    """
    size = limits["max_file_bytes"] + limits["max_file_bytes"] // 2
    assert size <= limits["max_upload_bytes"]
    data = os.urandom(size)
    done = client.uploads.upload_file_chunked(
        file=data,
        filename=unique_name(),
        bytes=len(data),
        mime_type=MIME,
        purpose="assistants",
        part_size=limits["max_part_bytes"],
    )
    assert done.status == "completed"
    assert done.file.bytes == size
    assert client.files.content(done.file.id).read() == data


def test_batch_upload_is_checked_as_jsonl(client: openai.OpenAI):
    good = b'{"custom_id": "a"}\n{"custom_id": "b"}\n'
    up = new_upload(client, len(good), purpose="batch", filename=unique_name(".jsonl"))
    p = client.uploads.parts.create(upload_id=up.id, data=good)
    done = client.uploads.complete(upload_id=up.id, part_ids=[p.id])
    assert done.file.purpose == "batch"
    assert done.file.expires_at is not None

    bad = b'{"custom_id": "a"}\nnope\n'
    up = new_upload(client, len(bad), purpose="batch", filename=unique_name(".jsonl"))
    p = client.uploads.parts.create(upload_id=up.id, data=bad)
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload_id=up.id, part_ids=[p.id])


# --------------------------------------------------------------------------------------------
# failures at completion
# --------------------------------------------------------------------------------------------


def test_wrong_md5(client: openai.OpenAI):
    data = os.urandom(5000)
    up = new_upload(client, len(data))
    p = client.uploads.parts.create(upload_id=up.id, data=data)
    with pytest.raises(openai.BadRequestError) as e:
        client.uploads.complete(upload_id=up.id, part_ids=[p.id], md5=md5(data + b"x"))
    assert e.value.param == "md5"

    # The failed attempt leaves the upload pending; the right checksum then completes it.
    done = client.uploads.complete(upload_id=up.id, part_ids=[p.id], md5=md5(data))
    assert done.status == "completed"
    assert client.files.content(done.file.id).read() == data


def test_malformed_md5(client: openai.OpenAI):
    up = new_upload(client, 3)
    p = client.uploads.parts.create(upload_id=up.id, data=b"abc")
    with pytest.raises(openai.BadRequestError) as e:
        client.uploads.complete(upload_id=up.id, part_ids=[p.id], md5="not-hex")
    assert e.value.param == "md5"


def test_part_sizes_must_add_up(client: openai.OpenAI):
    up = new_upload(client, 100)
    p1 = client.uploads.parts.create(upload_id=up.id, data=b"x" * 60)
    # 60 != 100
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload_id=up.id, part_ids=[p1.id])
    p2 = client.uploads.parts.create(upload_id=up.id, data=b"y" * 50)
    # 110 != 100
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload_id=up.id, part_ids=[p1.id, p2.id])
    # A part may be left out: 50 + 50 == 100.
    p3 = client.uploads.parts.create(upload_id=up.id, data=b"z" * 50)
    done = client.uploads.complete(upload_id=up.id, part_ids=[p3.id, p2.id])
    assert client.files.content(done.file.id).read() == b"z" * 50 + b"y" * 50


def test_unknown_or_duplicate_part_ids(client: openai.OpenAI):
    up = new_upload(client, 4)
    p = client.uploads.parts.create(upload_id=up.id, data=b"ab")
    with pytest.raises(openai.BadRequestError) as e:
        client.uploads.complete(upload_id=up.id, part_ids=[p.id, "part_doesnotexist000000"])
    assert e.value.param == "part_ids"
    with pytest.raises(openai.BadRequestError) as e:
        client.uploads.complete(upload_id=up.id, part_ids=[p.id, p.id])
    assert e.value.param == "part_ids"


def test_part_of_another_upload_is_rejected(client: openai.OpenAI):
    one = new_upload(client, 3)
    two = new_upload(client, 3)
    p_one = client.uploads.parts.create(upload_id=one.id, data=b"one")
    with pytest.raises(openai.BadRequestError) as e:
        client.uploads.complete(upload_id=two.id, part_ids=[p_one.id])
    assert e.value.param == "part_ids"


# --------------------------------------------------------------------------------------------
# state machine
# --------------------------------------------------------------------------------------------


def test_cancel_then_add_part_conflicts(client: openai.OpenAI):
    up = new_upload(client, 10)
    p = client.uploads.parts.create(upload_id=up.id, data=b"0123456789")
    cancelled = client.uploads.cancel(up.id)
    assert cancelled.id == up.id
    assert cancelled.status == "cancelled"
    assert cancelled.file is None

    with pytest.raises(openai.ConflictError) as e:
        client.uploads.parts.create(upload_id=up.id, data=b"more")
    assert e.value.status_code == 409
    with pytest.raises(openai.ConflictError):
        client.uploads.complete(upload_id=up.id, part_ids=[p.id])


def test_complete_twice_conflicts(client: openai.OpenAI):
    up = new_upload(client, 5)
    p = client.uploads.parts.create(upload_id=up.id, data=b"hello")
    done = client.uploads.complete(upload_id=up.id, part_ids=[p.id])
    assert done.status == "completed"

    with pytest.raises(openai.ConflictError):
        client.uploads.complete(upload_id=up.id, part_ids=[p.id])
    with pytest.raises(openai.ConflictError):
        client.uploads.parts.create(upload_id=up.id, data=b"late")
    with pytest.raises(openai.ConflictError):
        client.uploads.cancel(up.id)
    # The file made by the first completion is untouched.
    assert client.files.content(done.file.id).read() == b"hello"


def test_unknown_upload_is_404(client: openai.OpenAI):
    missing = "upload_doesnotexist0000000"
    with pytest.raises(openai.NotFoundError) as e:
        client.uploads.parts.create(upload_id=missing, data=b"x")
    assert e.value.code == "upload_not_found"
    with pytest.raises(openai.NotFoundError) as e:
        client.uploads.complete(upload_id=missing, part_ids=["part_x"])
    assert e.value.code == "upload_not_found"
    with pytest.raises(openai.NotFoundError) as e:
        client.uploads.cancel(missing)
    assert e.value.code == "upload_not_found"


# --------------------------------------------------------------------------------------------
# validation and limits (--max-part-bytes 256KiB, --max-upload-bytes 4MiB)
# --------------------------------------------------------------------------------------------


def test_declared_bytes_over_limit(client: openai.OpenAI, limits):
    with pytest.raises(openai.BadRequestError) as e:
        new_upload(client, limits["max_upload_bytes"] + 1)
    assert e.value.param == "bytes"
    # Exactly the limit is fine.
    assert new_upload(client, limits["max_upload_bytes"]).status == "pending"


def test_negative_bytes(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as e:
        new_upload(client, -1)
    assert e.value.param == "bytes"


def test_bad_purpose(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as e:
        new_upload(client, 10, purpose="nonsense")
    assert e.value.param == "purpose"


def test_part_over_limit_is_413(client: openai.OpenAI, limits):
    up = new_upload(client, limits["max_part_bytes"] * 2)
    with pytest.raises(openai.APIStatusError) as e:
        client.uploads.parts.create(upload_id=up.id, data=b"\0" * (limits["max_part_bytes"] + 1))
    assert e.value.status_code == 413
    # A part of exactly the limit is accepted.
    ok = client.uploads.parts.create(upload_id=up.id, data=b"\0" * limits["max_part_bytes"])
    assert ok.upload_id == up.id
