"""edge.bundle_files' bounded JSON read, pinned at its limit (issue 18: mutation survivors).

Real files in a temporary folder. Python 3.6 compatible.
"""

import os

import pytest

from edge.bundle_files import RE_EXPORT, read_json_limited
from edge.errors import BundleError


def test_a_json_file_of_exactly_the_limit_is_read_and_one_byte_more_is_refused(tmp_path):
    path = str(tmp_path / "manifest.json")
    with open(path, "w") as handle:
        handle.write('{"a": "' + "x" * 12 + '"}')  # 21 bytes
    assert os.path.getsize(path) == 21
    assert read_json_limited(str(tmp_path), path, "manifest.json", 21) == {"a": "x" * 12}
    with pytest.raises(BundleError) as caught:
        read_json_limited(str(tmp_path), path, "manifest.json", 20)
    assert str(caught.value) == ("bundle {}: manifest.json: is 21 bytes, over the 20 byte limit. "
                                 "Fix: {}".format(tmp_path, RE_EXPORT))


def test_json_nested_too_deeply_is_one_bundle_error(tmp_path):
    path = str(tmp_path / "manifest.json")
    with open(path, "w") as handle:
        handle.write("[" * 100000 + "]" * 100000)
    with pytest.raises(BundleError) as caught:
        read_json_limited(str(tmp_path), path, "manifest.json", 1 << 20)
    assert str(caught.value) == ("bundle {}: manifest.json: is nested too deeply to be a manifest. "
                                 "Fix: {}".format(tmp_path, RE_EXPORT))


def test_a_json_path_that_cannot_be_read_names_the_os_error(tmp_path):
    folder = tmp_path / "manifest.json"
    folder.mkdir()
    with pytest.raises(BundleError) as caught:
        read_json_limited(str(tmp_path), str(folder), "manifest.json", 1 << 20)
    assert str(caught.value) == ("bundle {}: manifest.json: cannot be read (Is a directory). "
                                 "Fix: {}".format(tmp_path, RE_EXPORT))
