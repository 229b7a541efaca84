"""Users, per-project permissions and access tokens. Secrets travel only as hashes."""

from __future__ import annotations

from deardiary.schemas.events.base import Event


class UserCreated(Event, frozen=True, kw_only=True, tag="user_created"):
    user_id: str
    username: str
    password_hash: str
    first_name: str = ""
    last_name: str = ""
    is_admin: bool = False


class UserPasswordChanged(Event, frozen=True, kw_only=True, tag="user_password_changed"):
    user_id: str
    password_hash: str


class UserAdminSet(Event, frozen=True, kw_only=True, tag="user_admin_set"):
    user_id: str
    is_admin: bool


class PermissionGranted(Event, frozen=True, kw_only=True, tag="permission_granted"):
    """Sets the user's flags on the project to exactly these values."""

    user_id: str
    project_id: str
    create: bool = False
    read: bool = False
    update: bool = False
    delete: bool = False


class PermissionRevoked(Event, frozen=True, kw_only=True, tag="permission_revoked"):
    user_id: str
    project_id: str


class AccessTokenCreated(Event, frozen=True, kw_only=True, tag="access_token_created"):
    token_id: str
    user_id: str
    token_hash: str
    description: str = ""
    expires_at: int | None = None  # microseconds since the epoch; None never expires


class AccessTokenRevoked(Event, frozen=True, kw_only=True, tag="access_token_revoked"):
    token_id: str
