"""Mixin classes loaded on first use: `import deardiary` loads none of the SDK's media,
checkpoint, management and system-metrics code, which a sweep trial never calls."""

from __future__ import annotations

from _thread import allocate_lock

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from collections.abc import Iterable
    from typing import Any

_LOADING = allocate_lock()


def lazy_mixins(*where: tuple[str, str]) -> type:
    """A base class standing in for the mixin classes `where` names (an SDK module and a
    class in it, in MRO order): their modules are imported, and their attributes copied
    onto the stand-in, the first time an instance or a subclass looks up a name that
    neither has. So `import deardiary` loads none of them (media, checkpoints,
    management, system metrics: ~3 ms of every sweep trial, which uses none) and the first
    call of one of their methods does. For type checkers the subclass derives from the
    mixins themselves (under TYPE_CHECKING)."""
    loaded = False

    def load() -> bool:
        """Copy the mixins' attributes onto the stand-in; False if that was done before."""
        nonlocal loaded
        with _LOADING:
            if loaded:
                return False
            for module, name in reversed(where):  # the first mixin's names win, as in an MRO
                mixin = getattr(__import__(f"{__package__}.{module}", None, None, (name,)), name)
                for cls in reversed(mixin.__mro__[:-1]):
                    for key, value in vars(cls).items():
                        if not key.startswith("__"):
                            setattr(stand_in, key, value)
            del stand_in.__getattr__  # from now on a missing name is a plain AttributeError
            loaded = True
            return True

    class Meta(type):
        def __getattr__(cls, name: str) -> Any:  # a class attribute: Client.set_tags
            if name.startswith("__") or not load():
                raise AttributeError(f"type object {cls.__name__!r} has no attribute {name!r}")
            return getattr(cls, name)

        def __dir__(cls) -> Iterable[str]:
            load()
            return super().__dir__()

    class Mixins(metaclass=Meta):
        def __getattr__(self, name: str) -> Any:  # an instance's: it.log_image
            if name.startswith("__") or not load():
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            return getattr(self, name)

    stand_in = Mixins
    return stand_in
