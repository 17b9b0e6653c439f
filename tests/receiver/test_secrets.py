"""receiver.secrets: token hashing, encryption at rest, the key file beside the store."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from receiver.secrets import (
    decrypt_token,
    encrypt_token,
    hash_token,
    key_path_for,
    load_key,
    new_token,
    token_matches,
)
from sf_metadata.errors import CredentialsError


def test_tokens_are_long_urlsafe_and_distinct() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    for t in tokens:
        assert len(t) == 43
        assert set(t) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_token_matches_only_the_same_token() -> None:
    token = new_token()
    digest = hash_token(token)
    assert len(digest) == 64 and token not in digest
    assert token_matches(token, digest)
    assert not token_matches(token + "x", digest)
    assert not token_matches(token[:-1], digest)
    assert not token_matches("", digest)
    assert not token_matches(None, digest)


def test_encryption_round_trips_and_wrong_key_is_a_credentials_error() -> None:
    key = Fernet.generate_key()
    token = new_token()
    ciphertext = encrypt_token(token, key)
    assert token not in ciphertext
    assert decrypt_token(ciphertext, key) == token
    with pytest.raises(CredentialsError, match="not the key the token was encrypted with"):
        decrypt_token(ciphertext, Fernet.generate_key())


def test_key_path_is_beside_a_sqlite_store_else_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert key_path_for("sqlite:///data/x.db") == tmp_path / "data" / "x.db.key"
    assert key_path_for("sqlite:///agent_provision.db") == tmp_path / "agent_provision.db.key"
    assert key_path_for("postgresql+psycopg://u@h/db") == tmp_path / "agent_provision.key"


def test_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    first = load_key(url)
    path = tmp_path / "x.db.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(url) == first
    Fernet(first)  # a valid key
    assert [p.name for p in tmp_path.iterdir()] == ["x.db.key"]  # no temp files left


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait()
        keys.append(load_key(url))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1


def test_configured_secret_key_wins_and_passphrases_are_derived(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    fernet_key = Fernet.generate_key()
    assert load_key(url, fernet_key.decode()) == fernet_key
    derived = load_key(url, "correct horse battery staple")
    Fernet(derived)
    assert derived == load_key(url, "correct horse battery staple")
    assert not (tmp_path / "x.db.key").exists()


def test_a_corrupt_key_file_is_a_credentials_error(tmp_path: Path) -> None:
    (tmp_path / "x.db.key").write_text("not a key\n")
    with pytest.raises(CredentialsError, match="does not hold a Fernet key"):
        load_key(f"sqlite:///{tmp_path / 'x.db'}")
