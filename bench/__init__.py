"""Benchmarks and load harness of agent-auto-provision (not shipped; run from the repo root).

``python -m bench.ingest`` (or ``.venv/bin/python bench/ingest.py``): see docs/benchmarks.md.
The ``bench._*`` helpers are shared with tests/receiver/test_soak.py and test_faults.py.
"""
