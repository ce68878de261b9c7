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
    publish_folder,
    tighten_tree,
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


class Refused(Exception):
    pass


class Failed(Exception):
    pass


def _publish(destination, write):
    return publish_folder(str(destination), "export", "export-", write, refused=lambda exc: Refused(exc),
                          failed=lambda exc: Failed(exc))


def test_publish_folder_renames_a_written_folder_to_a_free_name(tmp_path):
    (tmp_path / "export").mkdir()

    def write(tmp):
        assert os.path.basename(tmp).startswith(".export-") and tmp.endswith(TMP_SUFFIX)
        write_private(os.path.join(tmp, "cases.csv"), b"a,b\r\n")

    folder = _publish(tmp_path, write)
    assert folder == str(tmp_path / "export-2")
    assert _mode(folder) == 0o700
    assert sorted(os.listdir(str(tmp_path))) == ["export", "export-2"]
    assert os.listdir(folder) == ["cases.csv"]


def test_publish_folder_leaves_nothing_when_the_write_fails(tmp_path):
    def write(tmp):
        write_private(os.path.join(tmp, "cases.csv"), b"a")
        write_private(os.path.join(tmp, "cases.csv"), b"b")  # exists: OSError

    with pytest.raises(Failed) as failure:
        _publish(tmp_path, write)
    assert isinstance(failure.value.__cause__, FileExistsError)
    assert os.listdir(str(tmp_path)) == []

    def interrupted(tmp):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _publish(tmp_path, interrupted)
    assert os.listdir(str(tmp_path)) == []


def test_publish_folder_refuses_a_destination_it_cannot_write(tmp_path):
    missing = tmp_path / "not-mounted"
    with pytest.raises(Refused) as refusal:
        _publish(missing, lambda tmp: None)
    assert isinstance(refusal.value.__cause__, FileNotFoundError)


def test_tighten_tree_sets_0700_folders_and_0600_files_but_not_through_links(tmp_path):
    root = tmp_path / "root"
    (root / "day").mkdir(parents=True)
    image = root / "day" / "case.png"
    image.write_bytes(b"png")
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not ours")
    os.chmod(str(outside), 0o644)
    os.symlink(str(outside), str(root / "day" / "link"))
    os.chmod(str(root / "day"), 0o755)
    os.chmod(str(image), 0o644)
    tighten_tree(str(root))
    assert _mode(str(root / "day")) == 0o700
    assert _mode(str(image)) == 0o600
    assert _mode(str(outside)) == 0o644  # the link's target is left alone
