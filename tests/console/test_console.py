"""The web console (`GET /console`) in a real headless Chromium: what a person does with it, step by
step, asserted on what the page shows; a screenshot of each step in the `screenshots` directory
(target/console-screenshots/ unless $RAGSTORE_CONSOLE_SCREENSHOTS says otherwise)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

DOC_NAME = "volcanoes.md"
DOC = b"""# Volcanic rocks

Basalt forms when lava cools quickly at the surface of a volcano. Its grains are too fine to see.
Granite cools slowly deep underground, so its crystals grow large.

# Glaciers

A glacier moves downhill under its own weight and grinds the rock beneath it into flour.
"""
# An image: no extractor reads it, so it fails with a reason.
BLOB_NAME = "diagram.png"
BLOB = b"\x89PNG\r\n\x1a\n" + bytes(64)

# Ingestion of a small file takes well under a second once the model is loaded; the first one
# loads it.
INGEST_TIMEOUT_MS = 60_000


@pytest.fixture
def page(browser: Browser, server) -> Iterator[Page]:
    """A fresh browser context (no stored key) on the console; fails the test on any script error
    or Content-Security-Policy violation in the page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
    page.on(
        "console",
        lambda m: problems.append(f"console: {m.text}")
        if m.type == "error" and "Content Security Policy" in m.text
        else None,
    )
    page.goto(server.url + "/console")
    yield page
    context.close()
    assert not problems, problems


def shot(page: Page, screenshots: Path, name: str) -> None:
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def drop(page: Page, files: list[tuple[str, bytes, str]]) -> None:
    """Drags files onto the drop zone as a person would: dragenter, dragover and drop events
    carrying a DataTransfer that holds them."""
    data = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const [name, bytes, type] of files) {
                dt.items.add(new File([new Uint8Array(bytes)], name, { type }));
            }
            return dt;
        }""",
        [[name, list(content), mime] for name, content, mime in files],
    )
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event("#drop-zone", event, {"dataTransfer": data})


def file_row(page: Page, filename: str):
    return page.locator("#files-body tr", has=page.locator("td.name", has_text=filename))


def set_filter(page: Page, index: int, key: str, op: str, value: str) -> None:
    row = page.locator("#filters .filter-row").nth(index)
    row.locator(".f-key").fill(key)
    row.locator(".f-op").select_option(op)
    row.locator(".f-value").fill(value)


def test_upload_attach_watch_and_search(page: Page, server, screenshots: Path):
    message = page.locator("#message")

    # 1. The server has keys and the browser has none: the console says so and asks for one.
    expect(message).to_contain_text("You didn't provide an API key")
    expect(message).to_contain_text("Enter a valid API key above.")
    shot(page, screenshots, "01-asks-for-key")

    # 2. The key is entered, kept in the browser, and used: the (empty) lists load.
    page.fill("#api-key", server.api_key)
    page.click("#key-form button[type=submit]")
    expect(message).to_have_text("Key saved in this browser.")
    expect(page.locator("#files-empty")).to_be_visible()
    page.reload()
    expect(page.locator("#api-key")).to_have_value(server.api_key)
    expect(page.locator("#files-empty")).to_be_visible()
    expect(message).to_be_hidden()
    shot(page, screenshots, "02-key-entered")

    # 3. A document and an image (no extractor reads it) are dropped on the drop zone and listed.
    drop(page, [(DOC_NAME, DOC, "text/markdown"), (BLOB_NAME, BLOB, "image/png")])
    expect(file_row(page, DOC_NAME)).to_have_count(1)
    expect(file_row(page, BLOB_NAME)).to_have_count(1)
    expect(file_row(page, DOC_NAME)).to_contain_text(f"{len(DOC)} B")
    expect(message).to_contain_text(f"Uploaded {BLOB_NAME}")
    doc_id = file_row(page, DOC_NAME).get_attribute("data-id")
    blob_id = file_row(page, BLOB_NAME).get_attribute("data-id")
    assert doc_id and doc_id.startswith("file-"), doc_id
    shot(page, screenshots, "03-files-dropped")

    # 4. A vector store is created; it is listed and opened.
    page.fill("#store-name", "geology")
    page.click("#store-form button[type=submit]")
    store_row = page.locator("#stores-body tr", has_text="geology")
    expect(store_row).to_have_count(1)
    expect(page.locator("#store-title")).to_contain_text("geology")
    expect(page.locator("#store-files-empty")).to_be_visible()
    shot(page, screenshots, "04-store-created")

    # 5. The document is attached with attributes; its status and chunk progress are followed
    #    live until it is completed.
    page.select_option("#attach-file", value=doc_id)
    page.fill("#attach-attrs", "topic=geology, year=2024")
    page.click("#attach-form button[type=submit]")
    doc_vs_row = page.locator(f'#store-files-body tr[data-id="{doc_id}"]')
    expect(doc_vs_row).to_contain_text(DOC_NAME)
    expect(doc_vs_row.locator("td.status")).to_have_text("completed", timeout=INGEST_TIMEOUT_MS)
    progress = doc_vs_row.locator("td.progress").inner_text()
    m = re.search(r"(\d+)/(\d+) chunks", progress)
    assert m and m[1] == m[2] and int(m[1]) > 0, progress
    expect(doc_vs_row).to_contain_text('topic="geology", year=2024')
    expect(store_row).to_contain_text("1/1 completed")
    shot(page, screenshots, "05-attached-completed")

    # 6. The image is attached too: it fails, and the console says why.
    page.select_option("#attach-file", value=blob_id)
    page.fill("#attach-attrs", "")
    page.click("#attach-form button[type=submit]")
    blob_vs_row = page.locator(f'#store-files-body tr[data-id="{blob_id}"]')
    expect(blob_vs_row.locator("td.status .badge")).to_have_text("failed", timeout=INGEST_TIMEOUT_MS)
    expect(blob_vs_row.locator(".error-text")).to_contain_text("unsupported_file")
    expect(store_row).to_contain_text("1 failed")
    shot(page, screenshots, "06-failure-with-reason")

    # 7. A search with two filters (a string and a number) finds the chunk: its score, file,
    #    section and text are shown.
    expect(page.locator("#search-store")).to_have_value(re.compile(r"^vs_"))
    page.fill("#search-query", "how does lava become rock")
    page.click("#add-filter")
    set_filter(page, 0, "topic", "eq", "geology")
    page.click("#add-filter")
    set_filter(page, 1, "year", "gte", "2024")
    page.click("#search-form button[type=submit]")
    first = page.locator("#results li").first
    expect(first.locator(".filename")).to_have_text(DOC_NAME)
    expect(first.locator(".score")).to_have_text(re.compile(r"^[01]\.\d{3}$"))
    expect(first.locator(".place")).to_have_text("section Volcanic rocks")
    expect(first.locator(".chunk")).to_contain_text("Basalt forms when lava cools quickly")
    expect(page.locator("#search-summary")).to_contain_text(re.compile(r"\d+ results? in \d+ ms"))
    shot(page, screenshots, "07-search-hit")

    # 8. A filter no attached file meets: no results.
    set_filter(page, 1, "year", "gt", "2024")
    page.click("#search-form button[type=submit]")
    expect(page.locator("#search-summary")).to_have_text("No results.")
    expect(page.locator("#results li")).to_have_count(0)
    shot(page, screenshots, "08-filtered-out")

    # 9. The document is deleted (after the browser's confirmation): gone from the file list and
    #    from the store.
    page.once("dialog", lambda d: d.accept())
    file_row(page, DOC_NAME).locator("button", has_text="Delete").click()
    expect(file_row(page, DOC_NAME)).to_have_count(0)
    expect(doc_vs_row).to_have_count(0)
    expect(message).to_have_text(f"Deleted {DOC_NAME}.")
    shot(page, screenshots, "09-file-deleted")


def test_a_wrong_key_shows_the_servers_401_message(page: Page, server, screenshots: Path):
    page.fill("#api-key", "rsk-not-a-real-key-0000")
    page.click("#key-form button[type=submit]")
    message = page.locator("#message")
    expect(message).to_contain_text("Incorrect API key provided")
    expect(message).to_contain_text("Enter a valid API key above.")
    expect(page.locator("#key-form")).to_have_class(re.compile(r"\bneeds-key\b"))
    expect(page.locator("#files-body tr")).to_have_count(0)
    shot(page, screenshots, "10-wrong-key")
