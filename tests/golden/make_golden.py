"""Write golden bytes for event types that have none yet (never rewrites existing files)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from deardiary.schemas import codec
from deardiary.schemas.events import event_tag
from tests.golden.examples import EXAMPLES, VARIANTS, envelope

GOLDEN = Path(__file__).with_name("v1")


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    named = [(event_tag(e), e) for e in EXAMPLES] + list(VARIANTS.items())
    for name, event in named:
        path = GOLDEN / f"{name}.msgpack"
        if not path.exists():
            path.write_bytes(codec.encode(envelope(event)))
            print("wrote", path.name)


if __name__ == "__main__":
    main()
