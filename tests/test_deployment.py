"""The Dockerfiles and Kubernetes manifests: parsed and cross-checked, since they cannot run here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parent.parent
SERVICES = ROOT / "examples" / "services"
K8S = ROOT / "examples" / "infra" / "k8s"
NAMES = ["auth", "tickets", "orders", "payments", "expiration"]
READ = re.compile(
    r'(?:\.get\(|\[|validation_alias=)"([A-Z][A-Z0-9_]*)"'
)  # env.get("X"), environ["X"], a pydantic-settings field's validation_alias="X": upper case is a variable
# Read with a default that is right in production: by ServiceSettings.from_env, and by payments (Stripe's own
# API unless pointed at another server, such as stripe-mock).
OPTIONAL = {
    "SECURE_COOKIES",
    "STRIPE_API_BASE",
    "MAX_BODY_BYTES",
    "OUTBOX_FLUSH_TIMEOUT",
    "NATS_STREAM_REPLICAS",
    "SIGNIN_RATE_LIMIT_PER_ADDRESS",
    "SIGNIN_RATE_LIMIT_PER_EMAIL",
}


def manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        documents += [document for document in yaml.safe_load_all(path.read_text()) if document]
    return documents


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {document["metadata"]["name"]: document for document in manifests() if document["kind"] == kind}


def variables_read(name: str) -> set[str]:
    """The environment variables the service reads: its own code's, and the service frame's if it uses it."""
    code = "\n".join(path.read_text() for path in (SERVICES / name).glob("*.py"))
    read = set(READ.findall(code))
    if "ServiceSettings.from_env" in code:
        frame = ROOT / "src" / "ticketing_common"
        read |= set(READ.findall((frame / "service.py").read_text() + (frame / "_session.py").read_text()))
        if "uses_nats=False" in code:
            read.discard("NATS_URL")
    return read


def container(name: str) -> dict[str, Any]:
    [only] = of_kind("Deployment")[f"{name}-depl"]["spec"]["template"]["spec"]["containers"]
    assert only["image"] == f"ticketing/{name}:latest"
    return dict(only)


def test_every_manifest_parses_and_names_its_kind() -> None:
    """Each YAML document has apiVersion, kind and a name; every service has its Deployment."""
    documents = manifests()
    assert all({"apiVersion", "kind", "metadata"} <= document.keys() for document in documents)
    assert {f"{name}-depl" for name in NAMES} <= of_kind("Deployment").keys()


@pytest.mark.parametrize("name", NAMES)
def test_each_variable_a_service_reads_is_set_and_nothing_else(name: str) -> None:
    """The Deployment sets exactly the variables the code reads (optional ones may be left to defaults)."""
    given = {variable["name"] for variable in container(name)["env"]}
    read = variables_read(name)
    assert read - OPTIONAL <= given, f"{name} reads {sorted(read - given)} but the manifest does not set them"
    assert given <= read, f"{name}'s manifest sets {sorted(given - read)}, which the service never reads"


def test_secrets_come_from_kubernetes_secrets_and_are_documented() -> None:
    """JWT_KEY, STRIPE_KEY, DATABASE_URL are secretKeyRefs, never values; the README says how to make them."""
    readme = (K8S / "README.md").read_text()
    for name in NAMES:
        for variable in container(name)["env"]:
            if variable["name"] in {"JWT_KEY", "STRIPE_KEY", "DATABASE_URL"}:
                reference = variable["valueFrom"]["secretKeyRef"]
                assert "value" not in variable
                assert reference["key"] == variable["name"]
                assert reference["name"].removeprefix(f"{name}-") in readme.replace("$name-", "")


@pytest.mark.parametrize("name", NAMES)
def test_ports_agree_from_dockerfile_to_ingress(name: str) -> None:
    """PORT, containerPort, the probes, the Service's ports and the Dockerfile's EXPOSE agree."""
    spec = container(name)
    port = int(next(variable["value"] for variable in spec["env"] if variable["name"] == "PORT"))
    assert [entry["containerPort"] for entry in spec["ports"]] == [port]
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    if name != "expiration":  # its port serves only the probes: no Service routes to it
        [service_port] = of_kind("Service")[f"{name}-srv"]["spec"]["ports"]
        assert (service_port["port"], service_port["targetPort"]) == (port, port)
    dockerfile = (SERVICES / name / "Dockerfile").read_text()
    assert f"EXPOSE {port}" in dockerfile
    assert f"PORT={port}" in dockerfile


def test_the_ingress_routes_each_api_prefix_to_its_service() -> None:
    """/api/users, /api/tickets, /api/orders, /api/payments go to existing Services on their ports."""
    services = of_kind("Service")
    [rule] = of_kind("Ingress")["ingress-service"]["spec"]["rules"]
    routes = {}
    for path in rule["http"]["paths"]:
        backend = path["backend"]["service"]
        assert backend["port"]["number"] == services[backend["name"]]["spec"]["ports"][0]["port"]
        routes[path["path"]] = backend["name"]
    assert routes == {
        "/api/users": "auth-srv",
        "/api/tickets": "tickets-srv",
        "/api/orders": "orders-srv",
        "/api/payments": "payments-srv",
    }


def test_nats_is_a_three_node_jetstream_cluster_the_services_reach() -> None:
    """3 replicas with a persistent store, a version with message schedules, and the URL the services use."""
    nats = of_kind("StatefulSet")["nats"]
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    [server] = nats["spec"]["template"]["spec"]["containers"]
    major, minor = (int(part) for part in re.findall(r"nats:(\d+)\.(\d+)", server["image"])[0])
    assert (major, minor) >= (2, 12)
    config = of_kind("ConfigMap")["nats-config"]["data"]["nats.conf"]
    assert "jetstream" in config
    assert config.count("nats-headless:6222") == 3
    assert of_kind("Service")["nats"]["spec"]["ports"][0]["port"] == 4222
    for name in ["tickets", "orders", "payments", "expiration"]:
        urls = [variable["value"] for variable in container(name)["env"] if variable["name"] == "NATS_URL"]
        assert urls == ["nats://nats:4222"]


@pytest.mark.parametrize("name", NAMES)
def test_each_dockerfile_runs_its_service_unprivileged(name: str) -> None:
    """The image copies the service's folder, runs ``python -m <name>``, and not as root."""
    dockerfile = (SERVICES / name / "Dockerfile").read_text()
    assert f"COPY examples/services/{name}/ ./{name}/" in dockerfile
    assert f'CMD ["python", "-m", "{name}"]' in dockerfile
    assert re.search(r"^USER [1-9]\d*$", dockerfile, re.MULTILINE)


@pytest.mark.parametrize("name", ["auth", "tickets", "orders", "payments"])
def test_the_schema_is_migrated_before_the_service_starts(name: str) -> None:
    """An init container of the service's image runs ``migrate`` on the service's own DATABASE_URL."""
    spec = of_kind("Deployment")[f"{name}-depl"]["spec"]["template"]["spec"]
    [init] = spec["initContainers"]
    assert init["image"] == container(name)["image"]
    assert init["command"] == ["python", "-m", name, "migrate"]
    [database] = [variable for variable in container(name)["env"] if variable["name"] == "DATABASE_URL"]
    assert init["env"] == [database]
    assert (SERVICES / name / "migrations" / "versions").is_dir()
