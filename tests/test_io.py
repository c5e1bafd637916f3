"""Atomic writes: the destination is either the old file or the complete new one."""

import os

import pytest

from vireid.io import atomic_open, atomic_path, default_file_mode, write_text_atomic


def test_write_replaces_and_sets_normal_mode(tmp_path):
    p = tmp_path / "sub" / "a.txt"
    write_text_atomic(p, "one")
    write_text_atomic(p, "two")
    assert p.read_text() == "two"
    assert (os.stat(p).st_mode & 0o777) == default_file_mode()
    assert [f.name for f in p.parent.iterdir()] == ["a.txt"]


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(p, "wb") as fh:
            fh.write(b"half")
            raise RuntimeError("killed mid-write")
    assert p.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["a.bin"]


def test_atomic_path_for_writers_by_name(tmp_path):
    p = tmp_path / "x.dat"
    with atomic_path(p) as tmp:
        assert tmp.parent == tmp_path and tmp != p
        tmp.write_bytes(b"data")
        assert not p.exists()
    assert p.read_bytes() == b"data"


def test_rejects_append_mode(tmp_path):
    with pytest.raises(ValueError, match="modes"):
        with atomic_open(tmp_path / "a", "a"):
            pass


def test_check_choice_names_key_value_and_choices():
    from vireid.errors import ConfigError, check_choice

    check_choice("model.pool", "gem", ("gem", "avg"))
    with pytest.raises(ConfigError, match=r"model.pool: expected one of gem, avg, got 'mean'"):
        check_choice("model.pool", "mean", ("gem", "avg"))
