"""Constants and helpers shared by the llama-stack-client tests (conftest.py holds the fixtures)."""

from __future__ import annotations

import io
import time

import llama_stack_client
import pytest
from llama_stack_client import LlamaStackClient

CLIENT_VERSION = tuple(int(p) for p in llama_stack_client.__version__.split(".")[:2])
# 0.2.x: `/v1/openai/v1/...` routes, list calls return plain models (no pagination),
# vector_stores.files has only `create`, no file_batches, llama-stack-native model objects.
LEGACY = CLIENT_VERSION < (0, 3)

MODEL = "all-MiniLM-L6-v2"
DIMS = 384


def make_client(root: str, **kwargs) -> LlamaStackClient:
    """`base_url` is the server root: the client puts `/v1/...` (0.3+) or `/v1/openai/v1/...`
    (0.2.x) in every path itself."""
    return LlamaStackClient(base_url=root, max_retries=0, timeout=30.0, **kwargs)


def requires(client: LlamaStackClient, dotted: str) -> None:
    """Skips (with the reason, shown by `-rs`) when the installed client has no such call."""
    obj = client
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise pytest.skip.Exception(
                f"llama-stack-client {llama_stack_client.__version__} has no `{dotted}`",
                _use_item_location=True,  # report the test, not this helper
            )


def items(page) -> list:
    """Every item of a list call: auto-paginates a cursor page (0.3+), reads `.data` of the plain
    list models 0.2.x returns."""
    if hasattr(page, "iter_pages") or hasattr(page, "has_next_page"):
        return list(page)
    return list(page.data)


def upload(client: LlamaStackClient, name: str, data: bytes | str, mime: str = "text/plain"):
    if isinstance(data, str):
        data = data.encode()
    return client.files.create(file=(name, io.BytesIO(data), mime), purpose="assistants")


def wait_store_idle(client: LlamaStackClient, vector_store_id: str, timeout: float = 30.0):
    """Polls the store until no attached file is `in_progress` (every client version has
    `vector_stores.retrieve`); returns the store."""
    deadline = time.monotonic() + timeout
    while True:
        vs = client.vector_stores.retrieve(vector_store_id)
        if vs.file_counts.in_progress == 0:
            return vs
        if time.monotonic() > deadline:
            raise AssertionError(f"vector store still in progress after {timeout}s: {vs}")
        time.sleep(0.1)
