"""What the registry refuses before anything is looked up, in MLflow's words.

MLflow's own rules (a model name has no ``/`` or ``:``, since it goes into
``models:/<name>/<version>`` URIs; aliases are letters, digits, ``_`` and ``-`` and not
``latest`` or ``v<number>``; stages are None, Staging, Production, Archived in any
case) and ours where they are tighter (a tag key is at most 250 characters of letters,
digits, spaces and ``_ - . / :``; a tag value at most 8,000 characters; a name 500).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from deardiary.schemas.events import ModelStage
from deardiary.schemas.limits import MAX_NAME_CHARS, MAX_TAG_VALUE_CHARS
from deardiary.schemas.rules import key_problem
from deardiary.services.mlflow_api.errors import MlflowError
from deardiary.services.mlflow_api.registry_wire import RegistryTag, Version

_ALIAS = re.compile(r"^[\w\-]+$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
_STAGES = {s.value.lower(): s.value for s in ModelStage}


def missing(field: str) -> MlflowError:
    return MlflowError(f"Missing value for required parameter '{field}'.")


def model_name(name: str, field: str = "name") -> str:
    """A name to look a model up by."""
    if not name or not name.strip():
        raise missing(field)
    return name


def new_model_name(name: str, field: str = "name") -> str:
    """A name a model may be created or renamed to."""
    model_name(name, field)
    if "/" in name or ":" in name:
        raise MlflowError(f"Invalid model name '{name}'. Names cannot contain '/' or ':'.")
    if len(name) > MAX_NAME_CHARS:
        raise MlflowError(f"Invalid model name: longer than {MAX_NAME_CHARS} characters.")
    if name in (".", "..") or name != name.strip():
        raise MlflowError(f"Invalid model name '{name}'.")
    return name


def version_number(version: Version) -> int:
    text = str(version).strip()
    if text == "":
        raise missing("version")
    if not re.fullmatch(r"\d{1,18}", text):
        raise MlflowError(f"Parameter 'version' must be an integer, got '{str(version)[:100]}'.")
    return int(text)


def stage_name(stage: str) -> str:
    found = _STAGES.get(stage.strip().lower())
    if found is None:
        valid = ", ".join(s.value for s in ModelStage)
        raise MlflowError(
            f"Invalid Model Version stage: {stage[:100]}. Value must be one of {valid}."
        )
    return found


def alias_name(alias: str, reserved_ok: bool = False) -> str:
    """An alias to set (or, with `reserved_ok`, to look up or delete)."""
    if not alias:
        raise MlflowError("Registered model alias name cannot be empty.")
    if not _ALIAS.match(alias) or len(alias) > 250:
        raise MlflowError(
            f"Invalid alias name: '{alias[:100]}'. Names may only contain alphanumerics, "
            "underscores (_), and dashes (-), at most 250 of them."
        )
    if not reserved_ok:
        if alias.lower() == "latest":
            raise MlflowError("'latest' alias name (case insensitive) is reserved.")
        if _VERSION_ALIAS.match(alias):
            raise MlflowError(f"Version alias name '{alias}' is reserved.")
    return alias


def tag_key(key: str) -> str:
    if not key:
        raise missing("key")
    problem = key_problem(key)
    if problem is not None:
        raise MlflowError(f"Invalid value '{key[:100]}' for parameter 'key': the key {problem}.")
    return key


def tags_of(tags: Iterable[RegistryTag]) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag in tags:
        tag_key(tag.key)
        if len(tag.value) > MAX_TAG_VALUE_CHARS:
            raise MlflowError(
                f"Tag '{tag.key}' has a value of {len(tag.value)} characters; "
                f"at most {MAX_TAG_VALUE_CHARS} are kept."
            )
        out[tag.key] = tag.value
    return out
