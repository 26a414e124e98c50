"""GET /openapi.json is a valid OpenAPI 3.1 document (checked by openapi-spec-validator)."""

import json
import urllib.request

from openapi_spec_validator import validate


def test_openapi_document_is_valid(server: str):
    with urllib.request.urlopen(f"{server}/openapi.json", timeout=10) as resp:
        assert resp.status == 200
        doc = json.load(resp)
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    for path in ["/v1/files", "/v1/vector_stores/{vector_store_id}/search", "/v1/files/session:{upload_id}"]:
        assert path in doc["paths"], path
    assert "VectorStoreObject" in doc["components"]["schemas"]
