import hashlib
import hmac
import stat

import polars as pl
import pytest

from mapwise.errors import MapwiseError
from mapwise.privacy.pseudonym import KEY_ENV, load_key, pseudonym, pseudonymise

KEY = b"a-key-of-sufficient-length"


def test_pseudonym_is_truncated_hmac_sha256():
    assert pseudonym("17850", KEY) == hmac.new(KEY, b"17850", hashlib.sha256).hexdigest()[:32]


def test_pseudonymise_series():
    ids = pl.Series("id", ["17850", " 17850 ", None, "  ", "42"])
    out = pseudonymise(ids, KEY).to_list()
    assert out == [pseudonym("17850", KEY), pseudonym("17850", KEY), None, None, pseudonym("42", KEY)]


def test_key_file_created_private_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = tmp_path / "secret" / "hmac.key"
    first = load_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64 and load_key(path) == first


def test_key_from_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "environment-key-123456")
    assert load_key(tmp_path / "unused.key") == b"environment-key-123456"
    assert not (tmp_path / "unused.key").exists()
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(MapwiseError, match=r"at least 16 bytes"):
        load_key(tmp_path / "unused.key")
