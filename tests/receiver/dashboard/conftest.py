"""Exports the dashboard harness fixtures (``make_dash``, ``dash``); cheap password hashes."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST

from receiver.dashboard.operators import use_hasher
from tests.receiver.dashboard._harness import dash, make_dash

__all__ = ["dash", "make_dash"]


@pytest.fixture(autouse=True)
def _cheap_password_hashes() -> None:
    """argon2's CHEAPEST profile: the default costs ~1 s a hash on the shared test machine."""
    use_hasher(PasswordHasher.from_parameters(CHEAPEST))
