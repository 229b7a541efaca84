"""Derived ids hash with the interpreter's built-in SHA-256, found without a failed import
(each one searches every path entry: a cost every SDK process paid at start-up)."""

from __future__ import annotations

import builtins
import hashlib
from typing import Any

import pytest

from deardiary.schemas import ids


def test_the_builtin_sha256_is_found_at_the_first_try(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    real_import = builtins.__import__

    def spy(name: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", spy)
    sha = ids._sha256()
    monkeypatch.undo()
    assert len(asked) == 1 and asked[0] in ("_sha2", "_sha256")  # hashlib not needed
    assert sha(b"deardiary").hexdigest() == hashlib.sha256(b"deardiary").hexdigest()


def test_derived_ids_are_sha256_of_kind_and_names() -> None:
    digest = hashlib.sha256(b"project\x1fbench").hexdigest()
    assert ids.project_id("bench") == digest[:32]
