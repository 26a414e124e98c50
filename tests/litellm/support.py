"""Helpers shared by the LiteLLM-proxy tests (conftest.py holds the fixtures)."""

from __future__ import annotations

import io
import time
import uuid

from openai import OpenAI

MODEL = "all-MiniLM-L6-v2"
DIMS = 384


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def upload(client: OpenAI, name: str, data: bytes | str, mime: str = "text/plain", purpose: str = "assistants", **kw):
    if isinstance(data, str):
        data = data.encode()
    return client.files.create(file=(name, io.BytesIO(data), mime), purpose=purpose, **kw)


def wait_store_idle(client: OpenAI, vector_store_id: str, timeout: float = 60.0):
    """Polls the store (through whichever client is given) until no file is `in_progress`."""
    deadline = time.monotonic() + timeout
    while True:
        vs = client.vector_stores.retrieve(vector_store_id)
        if vs.file_counts.in_progress == 0:
            return vs
        if time.monotonic() > deadline:
            raise AssertionError(f"vector store still in progress after {timeout}s: {vs}")
        time.sleep(0.1)
