"""Atomic replacement is for regular files: a link is written through, anything else is refused by name."""

from __future__ import annotations

import os
import stat

import pytest

from lrlab.cli.main import main
from lrlab.files import atomic_write, atomic_write_text, check_replaceable, stale_temporaries


def test_a_file_is_replaced_whole_with_its_permissions(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    path.chmod(0o640)
    assert atomic_write_text(path, "new") == path
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stale_temporaries(path) == []
    with pytest.raises(RuntimeError):
        atomic_write(path, lambda f: (f.write(b"half"), (_ for _ in ()).throw(RuntimeError("stop"))))
    assert path.read_text() == "new" and stale_temporaries(path) == []


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path):
    target, link = tmp_path / "target.txt", tmp_path / "link.txt"
    target.write_text("old")
    link.symlink_to(target)
    assert atomic_write_text(link, "new") == target
    assert link.is_symlink() and target.read_text() == "new"
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "made.txt")
    atomic_write_text(dangling, "x")
    assert dangling.is_symlink() and (tmp_path / "made.txt").read_text() == "x"


def special_files(tmp_path) -> dict:
    """A directory, a named pipe, and (as root, which CI is) a character device node like /dev/null."""
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    found = {"folder": "a directory", "pipe": "a named pipe"}
    if os.geteuid() == 0:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        found["null"] = "a character device"
    return found


def test_a_directory_a_pipe_or_a_device_is_refused_and_left_as_it_was(tmp_path):
    for name, kind in special_files(tmp_path).items():
        path = tmp_path / name
        before = path.stat().st_mode
        with pytest.raises(ValueError, match=f"^{path} is {kind}: lrlab writes its files only over regular files"):
            atomic_write_text(path, "x")
        with pytest.raises(ValueError):
            check_replaceable(path)
        assert path.stat().st_mode == before and stale_temporaries(path) == []
    check_replaceable(tmp_path / "nothing-yet")  # a new name is fine


def test_lab_export_onto_a_device_is_one_line_and_through_a_link_says_where(tmp_path, capsys):
    for name, kind in special_files(tmp_path).items():
        assert main(["lab", "export", str(tmp_path / name), "--epochs", "1"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"is {kind}: lrlab writes its files only over regular files" in err
    link = tmp_path / "book.xlsx"
    link.symlink_to(tmp_path / "real.xlsx")
    assert main(["lab", "export", str(link), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {tmp_path / 'real.xlsx'} (through the link {link}): ")
    assert link.is_symlink() and (tmp_path / "real.xlsx").stat().st_size > 10_000
