"""Loaded by the ``serve`` subprocess of ``bench.ingest --experiment`` only (the bench puts
this directory and the repo root on its PYTHONPATH): applies the experiments named in
``AGENT_BENCH_EXPERIMENTS`` (see ``bench/_experiments.py``)."""

from __future__ import annotations

import os

_names = os.environ.get("AGENT_BENCH_EXPERIMENTS", "")
if _names:
    from bench._experiments import apply

    apply(_names)
