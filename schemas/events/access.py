"""Users, per-project permissions and access tokens. Secrets travel only as hashes.

These are written by the server's admin paths (Permission.ADMIN): the gateway never
accepts them from clients.
"""

from __future__ import annotations

from typing import ClassVar

from deardiary.schemas.events.base import Event, Permission
from deardiary.schemas.limits import Id, Name, Text, TimeUs


class AccessEvent(Event, frozen=True, kw_only=True):
    partition_fields: ClassVar[tuple[str, ...]] = ("user_id",)
    subject_kind: ClassVar[str] = "user"
    subject_field: ClassVar[str] = "user_id"
    permission: ClassVar[Permission] = Permission.ADMIN


class UserCreated(AccessEvent, frozen=True, kw_only=True, tag="user_created"):
    user_id: Id
    username: Name
    password_hash: Text
    first_name: Name = ""
    last_name: Name = ""
    is_admin: bool = False


class UserPasswordChanged(AccessEvent, frozen=True, kw_only=True, tag="user_password_changed"):
    user_id: Id
    password_hash: Text


class UserAdminSet(AccessEvent, frozen=True, kw_only=True, tag="user_admin_set"):
    user_id: Id
    is_admin: bool


class PermissionGranted(AccessEvent, frozen=True, kw_only=True, tag="permission_granted"):
    """Sets the user's flags on the project to exactly these values."""

    user_id: Id
    project_id: Id
    create: bool = False
    read: bool = False
    update: bool = False
    delete: bool = False


class PermissionRevoked(AccessEvent, frozen=True, kw_only=True, tag="permission_revoked"):
    user_id: Id
    project_id: Id


class AccessTokenCreated(AccessEvent, frozen=True, kw_only=True, tag="access_token_created"):
    subject_kind: ClassVar[str] = "access_token"
    subject_field: ClassVar[str] = "token_id"

    token_id: Id
    user_id: Id
    token_hash: Text
    description: Text = ""
    expires_at: TimeUs | None = None  # microseconds since the epoch; None never expires


class AccessTokenRevoked(AccessEvent, frozen=True, kw_only=True, tag="access_token_revoked"):
    partition_fields: ClassVar[tuple[str, ...]] = ("token_id",)
    subject_kind: ClassVar[str] = "access_token"
    subject_field: ClassVar[str] = "token_id"

    token_id: Id
