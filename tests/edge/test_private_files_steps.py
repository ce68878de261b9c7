"""edge.private_files.publish_folder step by step (mutation survivors, issue 18): the caller's error for
a destination that refuses a new folder, and the temporary folder's cleanup when it has vanished
already (a USB stick pulled mid-export takes it with it) - the caller's error still comes through."""

import os
import shutil

import pytest

from edge.private_files import publish_folder


class _Refused(Exception):
    pass


class _Failed(Exception):
    pass


def _publish(destination, write):
    return publish_folder(destination, "export", "export-", write, refused=lambda exc: _Refused(exc.strerror),
                          failed=lambda exc: _Failed(exc.strerror))


def test_a_destination_that_refuses_a_new_folder():
    with pytest.raises(_Refused) as caught:
        _publish("/sys", lambda tmp: None)  # mkdir is refused there even to root
    assert str(caught.value) == "Operation not permitted"


def test_a_vanished_temporary_folder_does_not_hide_the_write_error(tmp_path):
    def pulled(tmp):
        shutil.rmtree(tmp)
        raise OSError(5, "Input/output error")

    with pytest.raises(_Failed) as caught:
        _publish(str(tmp_path), pulled)
    assert str(caught.value) == "Input/output error"

    def interrupted(tmp):
        shutil.rmtree(tmp)
        raise KeyError("stop")

    with pytest.raises(KeyError):
        _publish(str(tmp_path), interrupted)
    assert os.listdir(str(tmp_path)) == []


def test_a_published_folder(tmp_path):
    folder = _publish(str(tmp_path), lambda tmp: open(os.path.join(tmp, "a.csv"), "w").close())
    assert folder == os.path.join(str(tmp_path), "export") and os.listdir(folder) == ["a.csv"]


def test_tighten_tree_never_loosens_a_stricter_file(tmp_path):
    from edge.private_files import tighten_tree

    strict, loose = tmp_path / "strict", tmp_path / "loose"
    strict.write_bytes(b"a")
    loose.write_bytes(b"b")
    os.chmod(str(strict), 0o400)
    os.chmod(str(loose), 0o644)
    tighten_tree(str(tmp_path))
    assert (os.stat(str(strict)).st_mode & 0o777, os.stat(str(loose)).st_mode & 0o777) == (0o400, 0o600)
