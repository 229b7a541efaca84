"""Users, per-project permissions and access tokens (secrets only ever as hashes)."""

from __future__ import annotations

from deardiary.projections.draft import Draft, ts
from deardiary.projections.folds.spec import FoldSpec, Specs
from deardiary.projections.writes import Lookups
from deardiary.schemas.events import (
    AccessTokenCreated,
    AccessTokenRevoked,
    PermissionGranted,
    PermissionRevoked,
    UserAdminSet,
    UserCreated,
    UserPasswordChanged,
)

UserEvent = UserCreated | UserPasswordChanged | UserAdminSet
PermissionEvent = PermissionGranted | PermissionRevoked
TokenEvent = AccessTokenCreated | AccessTokenRevoked


def fold_user(draft: Draft, event: UserEvent) -> None:
    row = draft.get("users", event.user_id)
    match event:
        case UserCreated():
            if row is not None:
                draft.conflict("already_exists", event.user_id, f"user {event.username}")
                return
            row = {
                "user_id": event.user_id,
                "username": event.username,
                "first_name": event.first_name,
                "last_name": event.last_name,
                "password_hash": event.password_hash,
                "is_admin": event.is_admin,
                "created_at": draft.log_time,
            }
        case UserPasswordChanged() if row is not None:
            row["password_hash"] = event.password_hash
        case UserAdminSet() if row is not None:
            row["is_admin"] = event.is_admin
        case _:
            draft.conflict("not_found", event.user_id, "user")
            return
    row["updated_at"] = draft.log_time
    draft.put("users", row)


def fold_permission(draft: Draft, event: PermissionEvent) -> None:
    """A grant sets exactly the given flags; a revoke clears them all."""
    flags = (False, False, False, False)
    if isinstance(event, PermissionGranted):
        flags = (event.create, event.read, event.update, event.delete)
    _set_flags(draft, event.user_id, event.project_id, flags)


def grant_all(draft: Draft, user_id: str, project_id: str) -> None:
    """Every permission on a project (its creator's)."""
    _set_flags(draft, user_id, project_id, (True, True, True, True))


def _set_flags(
    draft: Draft, user_id: str, project_id: str, flags: tuple[bool, bool, bool, bool]
) -> None:
    draft.put(
        "permissions",
        {
            "user_id": user_id,
            "project_id": project_id,
            "can_create": flags[0],
            "can_read": flags[1],
            "can_update": flags[2],
            "can_delete": flags[3],
            "updated_at": draft.log_time,
        },
    )


def fold_token(draft: Draft, event: TokenEvent) -> None:
    match event:
        case AccessTokenCreated():
            if draft.get("access_tokens", event.token_id) is not None:
                return
            draft.put(
                "access_tokens",
                {
                    "token_id": event.token_id,
                    "user_id": event.user_id,
                    "token_hash": event.token_hash,
                    "description": event.description,
                    "expires_at": None if event.expires_at is None else ts(event.expires_at),
                    "revoked": False,
                    "created_at": draft.log_time,
                },
            )
        case AccessTokenRevoked():
            row = draft.existing("access_tokens", event.token_id, "access token")
            if row is None:
                return
            row["revoked"] = True
            draft.put("access_tokens", row)


def _user_lookups(want: Lookups, event: UserEvent) -> None:
    want.want("users", event.user_id)


def _token_lookups(want: Lookups, event: TokenEvent) -> None:
    want.want("access_tokens", event.token_id)


def _no_lookups(want: Lookups, event: PermissionEvent) -> None:
    """A grant or revoke replaces the row whole: nothing to read."""


SPECS: Specs = {
    UserCreated: FoldSpec(fold_user, _user_lookups),
    UserPasswordChanged: FoldSpec(fold_user, _user_lookups),
    UserAdminSet: FoldSpec(fold_user, _user_lookups),
    PermissionGranted: FoldSpec(fold_permission, _no_lookups),
    PermissionRevoked: FoldSpec(fold_permission, _no_lookups),
    AccessTokenCreated: FoldSpec(fold_token, _token_lookups),
    AccessTokenRevoked: FoldSpec(fold_token, _token_lookups),
}
