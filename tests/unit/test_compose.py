"""docker-compose.yml is consistent: images or builds, ports, volumes, env, dependencies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_every_service_is_buildable_or_pulled_and_wired() -> None:
    compose = _compose()
    services: dict[str, Any] = compose["services"]
    assert {"kafka", "serve", "worker-1", "worker-2"} <= set(services)
    named_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert ("image" in service) != ("build" in service), name
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").exists()
        for dep, rule in (service.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            condition = rule["condition"]
            assert condition in ("service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], dep
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in named_volumes, (name, source)
        for port in service.get("ports", []):
            host, _, container = str(port).partition(":")
            assert host.isdigit() and container.isdigit()
        for value in (service.get("environment") or {}).values():
            assert isinstance(value, str), name


def test_workers_and_server_share_the_topic_and_the_data() -> None:
    services = _compose()["services"]
    brokers = set()
    for name in ("serve", "worker-1", "worker-2"):
        command = services[name]["command"]
        brokers.add(command[command.index("--broker") + 1])
        assert command[command.index("--data") + 1] == "/data"
        assert "ddata:/data" in services[name]["volumes"]
    assert len(brokers) == 1
    (broker,) = brokers
    topic = services["topic"]["environment"]
    assert f"/{topic['TOPIC']}?partitions={topic['PARTITIONS']}" in broker
    serve_port = services["serve"]["command"][services["serve"]["command"].index("--port") + 1]
    assert services["serve"]["ports"] == [f"{serve_port}:{serve_port}"]
    kafka_env = services["kafka"]["environment"]
    assert (
        "broker" in kafka_env["KAFKA_PROCESS_ROLES"]
        and "controller" in kafka_env["KAFKA_PROCESS_ROLES"]
    )  # KRaft, no ZooKeeper
    assert kafka_env["KAFKA_LOG_RETENTION_MS"] == "-1"


def test_the_cli_accepts_the_composed_commands() -> None:
    from deardiary.services.cli import build_parser

    parser = build_parser()
    for name in ("serve", "worker-1"):
        parser.parse_args(_compose()["services"][name]["command"])
