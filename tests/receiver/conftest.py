"""Exports the shared webhook harness fixtures (``make_receiver``, ``receiver``) from
``tests/receiver/_harness.py`` to every receiver test module."""

from __future__ import annotations

from tests.receiver._harness import make_receiver, receiver

__all__ = ["make_receiver", "receiver"]
