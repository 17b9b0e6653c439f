"""Speed-ups measured by the bench without editing the receiver (issue 4, item 2).

Each is a monkeypatch applied in the measured process only: by
``python -m bench.profile_apply --experiment`` in-process, and by
``python -m bench.ingest --experiment NAME[,NAME]`` in the ``serve`` subprocess through
``bench/_site/sitecustomize.py`` (env ``AGENT_BENCH_EXPERIMENTS``). They show what the
profile says limits the receiver; docs/benchmarks.md proposes them to the modules' owners.

- ``fast-core``: memoise ``sf_metadata.mapping._is_username_email`` (email-validator runs
  twice per notification: in the store's state load and in ``map_user``) and compute
  ``sf_metadata.ids.checksum_suffix`` with C-level ``str.translate`` and ``int(..., 2)``.
- ``sqlite-lock``: one process-wide lock around SQLite write transactions, so concurrent
  requests queue in order instead of polling SQLite's busy handler (which sleeps and lets
  later arrivals overtake: the p99 tail).
"""

from __future__ import annotations

import functools
import string
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["EXPERIMENTS", "apply", "patch_fast_core", "patch_sqlite_lock"]

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_UPPER = str.maketrans(
    {c: "1" for c in string.ascii_uppercase}
    | {c: "0" for c in string.ascii_lowercase + string.digits}
)


def patch_fast_core() -> None:
    """The ``fast-core`` experiment (see the module docstring); results are unchanged (the
    new checksum is compared with the original on the verified vectors of reference
    ``outbound-wire-format.md`` section 4 before it is installed)."""
    from sf_metadata import ids, mapping

    original = ids.checksum_suffix

    def fast_suffix(id15: str) -> str:
        if not isinstance(id15, str) or len(id15) != 15 or not (id15.isascii() and id15.isalnum()):
            return original(id15)  # the original raises the typed error
        bits = id15.translate(_UPPER)
        return "".join(_ALPHABET[int(bits[i : i + 5][::-1], 2)] for i in (0, 5, 10))

    for sample in ("70130000001tcyI", "a0BA0000000L2ZC", "AaaAABbbBBCccCC", "005xx000001Sv6E"):
        assert fast_suffix(sample) == original(sample), sample
    ids.checksum_suffix = fast_suffix  # type: ignore[assignment]
    mapping._is_username_email = functools.lru_cache(maxsize=65536)(  # type: ignore[assignment]
        mapping._is_username_email
    )


def patch_sqlite_lock() -> None:
    """The ``sqlite-lock`` experiment: must run before ``receiver.webhook`` is imported
    (it binds ``transaction`` at import time)."""
    from receiver import db

    original = db.transaction
    lock = threading.Lock()

    @contextmanager
    def transaction(engine: Any, *, read_only: bool = False) -> Iterator[Any]:
        if read_only or engine.dialect.name != "sqlite":
            with original(engine, read_only=read_only) as session:
                yield session
            return
        with lock, original(engine) as session:
            yield session

    db.transaction = transaction  # type: ignore[assignment]


EXPERIMENTS = {"fast-core": patch_fast_core, "sqlite-lock": patch_sqlite_lock}


def apply(names: str) -> list[str]:
    """Apply the comma-separated experiments ``names``; return those applied. Raises
    ``KeyError`` for an unknown name."""
    applied = []
    for name in filter(None, (n.strip() for n in names.split(","))):
        EXPERIMENTS[name]()
        applied.append(name)
    return applied
