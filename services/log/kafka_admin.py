"""How the Kafka log is set up: its settings (from a kafka:// URL) and its topic.

Why the topic's creation comes first, before any metadata request: a Kafka-protocol broker may
auto-create a topic it is asked about (Tansu does, with 4 partitions and no retention
setting), and that topic would then silently win over the partition count we asked
for. So the admin client asks to *create* the topic, accepts "already exists" (an
existing topic is used as it is: its partition count is part of the key -> partition
mapping and must never change under running writers), and only then describes it.

The topic is created with infinite retention (the log is the source of truth; the
projections can be rebuilt from it at any time) and broker-assigned timestamps
(`LogAppendTime`), so a record's log time does not depend on a writer's clock where
the broker honours it. Tansu accepts both settings at creation but enforces neither.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

from deardiary.schemas.errors import InvalidArgument, Unavailable

_log = logging.getLogger(__name__)

DEFAULT_TOPIC = "deardiary.events"
DEFAULT_PARTITIONS = 8
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")

TOPIC_CONFIGS = {"retention.ms": "-1", "message.timestamp.type": "LogAppendTime"}

_ALREADY_EXISTS = 36
# Request errors no retry can fix (InvalidTopic, InvalidPartitions, InvalidReplicationFactor,
# InvalidReplicaAssignment, InvalidConfig, PolicyViolation).
_INVALID_REQUEST = {17, 37, 38, 39, 40, 44}


class KafkaLogConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the log is and how to talk to it; the URL query keys are these field names."""

    bootstrap: tuple[str, ...]
    topic: str = DEFAULT_TOPIC
    partitions: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_PARTITIONS
    """Partition count for a topic this log creates; an existing topic keeps its own."""
    replication: Annotated[int, msgspec.Meta(ge=1)] = 1
    idempotence: bool = False
    """Idempotent producer; off by default because the Tansu test broker cannot start one."""
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """Bound on one broker request, on delivering an append, and on a fetch answer."""
    fetch_wait_ms: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 50
    max_request_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1 << 20
    """Largest produce request (and so largest record); match the broker's message.max.bytes."""
    compression: Literal["gzip", "snappy", "lz4", "zstd"] | None = None

    @classmethod
    def from_url(cls, url: str) -> KafkaLogConfig:
        """`kafka://host:port[,host:port]/topic?partitions=8&idempotence=false`."""
        parts = urlsplit(url)
        hosts = [h.strip() for h in parts.netloc.split(",") if h.strip()]
        if parts.scheme != "kafka" or not hosts:
            raise InvalidArgument(f"not a Kafka log URL: {url!r} (kafka://host:port[/topic])")
        fields: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
        fields["bootstrap"] = [h if re.search(r":\d+$", h) else f"{h}:9092" for h in hosts]
        fields["topic"] = parts.path.strip("/") or DEFAULT_TOPIC
        if not _TOPIC_NAME.fullmatch(fields["topic"]):
            raise InvalidArgument(f"invalid Kafka topic name {fields['topic']!r} in {url!r}")
        try:
            return msgspec.convert(fields, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise InvalidArgument(f"invalid Kafka log URL {url!r}: {exc}") from exc


async def ensure_topic(config: KafkaLogConfig) -> list[int]:
    """Create the topic unless it exists; returns its partition ids, sorted."""
    bootstrap, topic, partitions = list(config.bootstrap), config.topic, config.partitions
    replication, timeout_s = config.replication, config.timeout_s
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        client_id="deardiary-admin",
    )
    try:
        await admin.start()
        await _create(admin, topic, partitions, replication, timeout_s)
        found = await _partitions(admin, topic, timeout_s)
    except KafkaError as exc:
        raise Unavailable(
            f"cannot set up Kafka topic {topic!r} on {','.join(bootstrap)}: {exc!r}",
            {"retryable": True},
        ) from exc
    finally:
        await admin.close()
    if len(found) != partitions:
        _log.warning(
            "Kafka topic %r exists with %d partitions (asked for %d); using it as it is",
            topic,
            len(found),
            partitions,
        )
    return found


async def _create(
    admin: AIOKafkaAdminClient, topic: str, partitions: int, replication: int, timeout_s: float
) -> None:
    new = NewTopic(topic, partitions, replication, topic_configs=dict(TOPIC_CONFIGS))
    response: Any = await admin.create_topics([new], timeout_ms=int(timeout_s * 1000))
    for entry in response.topic_errors:
        code = int(entry[1])
        if code in (0, _ALREADY_EXISTS):
            continue
        detail = entry[2] if len(entry) > 2 and entry[2] else for_code(code).__name__
        if code in _INVALID_REQUEST:
            raise InvalidArgument(
                f"Kafka refused to create topic {topic!r} ({partitions} partitions, "
                f"replication {replication}): {detail}",
                {"kafka_error_code": code},
            )
        raise Unavailable(
            f"Kafka could not create topic {topic!r}: {detail}",
            {"kafka_error_code": code, "retryable": True},
        )


async def _partitions(admin: AIOKafkaAdminClient, topic: str, timeout_s: float) -> list[int]:
    """The topic's partitions; metadata can lag a fresh creation briefly, so ask again."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics([topic])
        for entry in described:
            if entry["topic"] == topic and entry["error_code"] == 0 and entry["partitions"]:
                return sorted(int(p["partition"]) for p in entry["partitions"])
        if loop.time() >= deadline:
            raise Unavailable(
                f"Kafka topic {topic!r} has no partition metadata after {timeout_s:g} s",
                {"retryable": True},
            )
        await asyncio.sleep(0.05)
