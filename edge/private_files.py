"""Private, durable files and folders: the case log's and capture mode's one home for them.

Patient data on the unit is written owner-only (files 0600, folders 0700) and durably: a file through
a temporary name, fsync, rename and an fsync of its folder, so a power cut leaves the old file or the
new one, never half of one. Python 3.6 compatible; imports only the standard library.
"""

import os
import shutil
import tempfile
import uuid

TMP_SUFFIX = ".tmp"  # a write in progress (``write_file_atomic``); left-overs are removed by their owners


def fsync_dir(path):
    """fsync a folder, so that the names created or renamed in it survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path):
    """Make ``path`` (and missing parents) and set it to 0700 even when it already existed."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def tighten_tree(root):
    """Folders 0700 and files 0600 under ``root``, whatever an older version left (links are not
    followed: a link's own mode means nothing)."""
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o700)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path) and os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)


def unique_folder(destination, name):
    """``name``, or ``name-2``, ``name-3``... whichever does not exist yet in ``destination``."""
    candidate, index = os.path.join(destination, name), 1
    while os.path.lexists(candidate):
        index += 1
        candidate = os.path.join(destination, "{}-{}".format(name, index))
    return candidate


def write_private(path, data):
    """Create ``path`` (mode 0600; refused if it exists) with the bytes ``data``, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_file_atomic(path, data):
    """Write bytes to ``path`` (mode 0600): temporary file, fsync, rename, fsync of the folder."""
    folder = os.path.dirname(path)
    tmp = "{}.{}{}".format(path, uuid.uuid4().hex[:8], TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except OSError:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    fsync_dir(folder)


def publish_folder(destination, name, prefix, write, refused, failed):
    """All or nothing: ``write(tmp)`` fills a new 0700 folder in ``destination``, which is then renamed
    to ``unique_folder(destination, name)`` and the rename fsynced; return the new folder's path.

    ``refused(exc)`` / ``failed(exc)`` turn the OSError of making the temporary folder / of writing or
    renaming it into the caller's project error; on any failure the temporary folder is removed.
    """
    try:
        tmp = tempfile.mkdtemp(prefix="." + prefix, suffix=TMP_SUFFIX, dir=destination)
    except OSError as exc:
        raise refused(exc) from exc
    try:
        write(tmp)
        folder = unique_folder(destination, name)
        os.rename(tmp, folder)
        fsync_dir(destination)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise failed(exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
