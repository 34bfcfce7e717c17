"""Atomic writes: unique temporary names per writer, nothing left behind on failure."""

import os
import threading

import pytest

from stt.atomic import atomic_path
from stt.writers import _atomic_write


def test_two_writers_of_one_file_never_collide(tmp_path):
    target = tmp_path / "out.json"
    errors = []

    def write(tag: str) -> None:
        try:
            for _ in range(200):
                _atomic_write(target, tag * 1000)
        except Exception as exc:  # noqa: BLE001 - any failure is what this test looks for
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_text() in ("a" * 1000, "b" * 1000)  # one whole version, never mixed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(OSError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise OSError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_written_files_get_ordinary_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = _atomic_write(tmp_path / "t.txt", "x")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
