"""The query service's look at the workers' manifests in a shared folder (FolderSource):
known partitions are looked at with one stat each, new partition folders are found when
their parent folder changes, or RELIST_S later in any case."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deardiary.services.kafka_mode import exports_view
from deardiary.services.kafka_mode.exports_view import FolderSource
from deardiary.services.kafka_mode.partitions import EXPORT_VERSION, MANIFEST, partition_dir


def _publish(data: Path, partition: int, next_offset: int) -> None:
    folder = partition_dir(data, partition)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"version": EXPORT_VERSION, "partition": partition, "next_offset": next_offset}
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest))
    os.replace(tmp, folder / MANIFEST)


def _bump_mtime(path: Path) -> None:
    """The kernel stamps folders with a coarse clock: two changes within one tick can look
    alike, so the test makes the change visible as a later tick would."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))


def _offsets(source: FolderSource) -> dict[int, int]:
    return {p: int(m["next_offset"]) for p, m in source.manifests().items()}


def test_manifests_replaced_appearing_and_gone_are_seen(tmp_path: Path) -> None:
    source = FolderSource(tmp_path)
    assert _offsets(source) == {}  # no partitions folder yet
    _publish(tmp_path, 0, 3)
    assert _offsets(source) == {0: 3}
    (partition_dir(tmp_path, 1)).mkdir()  # a store opened, nothing published yet
    _bump_mtime(tmp_path / "partitions")
    assert _offsets(source) == {0: 3}
    _publish(tmp_path, 1, 5)  # its first manifest: the folder was known already
    _publish(tmp_path, 0, 12345)  # replaced (another size)
    assert _offsets(source) == {0: 12345, 1: 5}
    (partition_dir(tmp_path, 0) / MANIFEST).unlink()
    assert _offsets(source) == {1: 5}


def test_a_new_partition_folder_is_found_by_its_parents_change(tmp_path: Path) -> None:
    source = FolderSource(tmp_path)
    _publish(tmp_path, 0, 1)
    assert _offsets(source) == {0: 1}
    _publish(tmp_path, 10, 2)  # the topic grew
    _bump_mtime(tmp_path / "partitions")
    assert _offsets(source) == {0: 1, 10: 2}


def test_a_new_partition_folder_is_found_after_relist_s_regardless(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports_view, "RELIST_S", 0.0)  # every look is RELIST_S later
    source = FolderSource(tmp_path)
    _publish(tmp_path, 0, 1)
    assert _offsets(source) == {0: 1}
    stat = (tmp_path / "partitions").stat()
    _publish(tmp_path, 1, 2)
    # as if the new folder had come within the same clock tick as the last listing
    os.utime(tmp_path / "partitions", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _offsets(source) == {1: 2, 0: 1}
