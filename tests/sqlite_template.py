"""An empty SQLite store at the newest schema, migrated once per process (one per xdist
worker) and copied wherever a test needs a store that is not itself under test: a copy
takes about 8 ms, the migrations about 0.1 s of CPU plus a commit (an fsync) per step.

- ``template_store() -> Path``: the migrated file (in a temporary directory removed when
  the process exits); never write to it.
- ``copy_migrated_store(path) -> Path``: ``path`` (parents created) becomes a copy of it.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from sqlalchemy.pool import NullPool

from receiver.db import make_engine, migrate

__all__ = ["copy_migrated_store", "template_store"]

_made: dict[str, Path] = {}


def template_store() -> Path:
    """The process's migrated template store (made on the first call)."""
    path = _made.get("path")
    if path is None:
        folder = Path(tempfile.mkdtemp(prefix="agent-provision-template-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "agent_provision.db"
        engine = make_engine(f"sqlite:///{path}", poolclass=NullPool)
        try:
            migrate(engine)
        finally:
            engine.dispose()  # the last connection closed: SQLite folds the WAL into the file
        if path.with_name(path.name + "-wal").exists():
            raise RuntimeError(f"the template store {path} kept its WAL file")
        _made["path"] = path
    return path


def copy_migrated_store(path: Path) -> Path:
    """Make ``path`` a new, empty store at the newest schema (a copy of the template)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template_store(), path)
    return path
