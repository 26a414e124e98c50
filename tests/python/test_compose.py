"""docker-compose.yml cannot be run here (no Docker), so it is checked by reading: it parses,
every reference in it resolves, the engines' settings agree with what ragstore is told, and every
RAGSTORE_* variable it sets is one the binary reads (from `ragstore serve --help`)."""

from __future__ import annotations

import re
import subprocess
from urllib.parse import urlparse

import pytest
import yaml

from conftest import REPO_ROOT, _find_binary


@pytest.fixture(scope="module")
def compose() -> dict:
    with open(REPO_ROOT / "docker-compose.yml") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def serve_help() -> str:
    out = subprocess.run(
        [str(_find_binary()), "serve", "--help"], capture_output=True, text=True, check=True
    )
    return out.stdout


def test_references_resolve(compose: dict) -> None:
    services = compose["services"]
    declared_volumes = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health"
            elif cond["condition"] == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} must run once"
        for vol in svc.get("volumes") or []:
            source = vol.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared_volumes, f"{name} uses undeclared volume {source}"
        for cfg in svc.get("configs") or []:
            assert cfg["source"] in compose["configs"], f"{name}: config {cfg['source']}"


def test_api_and_workers_scale_and_share_the_engines(compose: dict) -> None:
    services = compose["services"]
    api, worker = services["api"], services["worker"]
    assert api["command"] == ["serve", "--role", "api"]
    assert worker["command"] == ["serve", "--role", "worker"]
    for name, svc in (("api", api), ("worker", worker)):
        # Scalable: no fixed name, no host port.
        assert "container_name" not in svc and "ports" not in svc, name
        assert "healthcheck" in svc, name
    assert api["environment"]["RAGSTORE_DATABASE_URL"] == worker["environment"][
        "RAGSTORE_DATABASE_URL"
    ]
    env = api["environment"]

    pg = urlparse(env["RAGSTORE_DATABASE_URL"])
    pg_env = services["postgres"]["environment"]
    assert pg.scheme == "postgres" and pg.hostname == "postgres" and pg.port == 5432
    assert (pg.username, pg.password, pg.path.lstrip("/")) == (
        pg_env["POSTGRES_USER"],
        pg_env["POSTGRES_PASSWORD"],
        pg_env["POSTGRES_DB"],
    )

    s3 = urlparse(env["RAGSTORE_STORAGE_URL"])
    assert s3.scheme == "s3"
    bucket_cmd = " ".join(services["bucket"]["command"])
    assert f"mc mb --ignore-existing local/{s3.hostname}" in bucket_cmd
    minio_env = services["minio"]["environment"]
    assert env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]
    assert f"{minio_env['MINIO_ROOT_USER']} {minio_env['MINIO_ROOT_PASSWORD']}" in bucket_cmd
    assert urlparse(env["AWS_ENDPOINT_URL"]).hostname == "minio"

    qd = urlparse(env["RAGSTORE_QDRANT_URL"])
    assert (qd.hostname, qd.port) == ("qdrant", 6334), "qdrant-client speaks gRPC on 6334"


def test_the_load_balancer_fronts_the_api(compose: dict) -> None:
    lb = compose["services"]["lb"]
    assert lb["ports"] == ["8321:8321"]
    conf = compose["configs"]["lb-config"]["content"]
    # `$$` is compose's escape for a literal `$` in nginx's variables.
    assert "set $$api http://api:8321;" in conf and "proxy_pass $$api;" in conf
    assert "resolver 127.0.0.11" in conf
    assert "client_max_body_size 0;" in conf


def test_every_variable_is_one_the_binary_reads(compose: dict, serve_help: str) -> None:
    known = set(re.findall(r"RAGSTORE_[A-Z_]+", serve_help))
    for name in ("api", "worker"):
        for var in compose["services"][name]["environment"]:
            if var.startswith("RAGSTORE_") and var != "RAGSTORE_LOG":
                assert var in known, f"{name} sets {var}, which `ragstore serve` does not read"


def test_the_kubernetes_example_is_wired(serve_help: str) -> None:
    with open(REPO_ROOT / "deploy" / "kubernetes" / "ragstore.yaml") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    config = by_kind[("ConfigMap", "ragstore")]["data"]
    secret = by_kind[("Secret", "ragstore")]["stringData"]
    known = set(re.findall(r"RAGSTORE_[A-Z_]+", serve_help))
    for var in [*config, *secret]:
        if var.startswith("RAGSTORE_") and var != "RAGSTORE_LOG":
            assert var in known, f"{var} is not read by `ragstore serve`"
    service = by_kind[("Service", "ragstore")]
    for role in ("api", "worker"):
        dep = by_kind[("Deployment", f"ragstore-{role}")]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"] == labels
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["serve", "--role", role]
        refs = {next(iter(e.values()))["name"] for e in container["envFrom"]}
        assert refs == {"ragstore"}
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert service["spec"]["selector"] == {"app": "ragstore", "role": "api"}
