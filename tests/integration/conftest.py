"""Fixtures of the integration tests: a real S3-compatible server (moto's server mode on a
free loopback port) for the artifact store and Kafka-mode export tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from tests.ports import free_port


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """The server's URL, for the module's tests (buckets are theirs to create)."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
