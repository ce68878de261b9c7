"""edge.private_files on real files: owner-only modes, no overwrite, unique names, fsyncs.

The atomic write's fsync/rename order is checked through the case log in test_caselog_durability.py.
"""

import os
import stat

import pytest

from edge.private_files import (
    TMP_SUFFIX,
    fsync_dir,
    private_dir,
    unique_folder,
    write_file_atomic,
    write_private,
)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_private_dir_makes_parents_and_tightens_an_existing_folder(tmp_path):
    nested = tmp_path / "a" / "b"
    private_dir(str(nested))
    assert _mode(str(nested)) == 0o700
    os.chmod(str(nested), 0o755)
    private_dir(str(nested))
    assert _mode(str(nested)) == 0o700


def test_unique_folder_skips_existing_names_and_links(tmp_path):
    assert unique_folder(str(tmp_path), "export") == str(tmp_path / "export")
    (tmp_path / "export").mkdir()
    os.symlink("nowhere", str(tmp_path / "export-2"))  # a dangling link counts as taken
    assert unique_folder(str(tmp_path), "export") == str(tmp_path / "export-3")


def test_write_private_is_0600_and_never_overwrites(tmp_path):
    path = str(tmp_path / "README.txt")
    write_private(path, b"first")
    assert _mode(path) == 0o600
    with pytest.raises(FileExistsError):
        write_private(path, b"second")
    with open(path, "rb") as handle:
        assert handle.read() == b"first"


def test_write_file_atomic_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "case.png")
    write_file_atomic(path, b"old")
    write_file_atomic(path, b"new" * 100000)
    with open(path, "rb") as handle:
        assert handle.read() == b"new" * 100000
    assert _mode(path) == 0o600
    assert not [name for name in os.listdir(str(tmp_path)) if name.endswith(TMP_SUFFIX)]


def test_write_file_atomic_into_a_missing_folder_fails_and_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_file_atomic(str(tmp_path / "missing" / "case.png"), b"data")
    assert os.listdir(str(tmp_path)) == []


def test_fsync_dir_needs_a_folder_that_exists(tmp_path):
    fsync_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        fsync_dir(str(tmp_path / "missing"))
