"""File helpers of a model bundle (hashing, atomic JSON, bounded JSON reads), shared by edge.bundle and
edge.signing so that neither imports the other's module back. Python 3.6 compatible.
"""

import hashlib
import json
import os

from edge.errors import BundleError

RE_EXPORT = "re-export it with `medkiosk export onnx CHECKPOINT --out DIR`"


def sha256_file(path, chunk=1 << 20):
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path, data):
    """Write JSON to ``path`` via a temporary file, fsync and rename."""
    path = str(path)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_json_limited(bundle_path, path, field, max_bytes):
    """Parse a JSON file of a bundle; one BundleError when it is too big, malformed or nested too deeply."""
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise BundleError(bundle_path, field, "is {} bytes, over the {} byte limit".format(
                size, max_bytes), RE_EXPORT)
        with open(path, "rb") as handle:
            text = handle.read(max_bytes + 1).decode("utf-8")
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(bundle_path, field, "is not valid JSON ({})".format(
            str(exc).splitlines()[0][:200]), RE_EXPORT) from exc
    except RecursionError:
        raise BundleError(bundle_path, field, "is nested too deeply to be a manifest", RE_EXPORT) from None
    except OSError as exc:
        raise BundleError(bundle_path, field, "cannot be read ({})".format(exc.strerror), RE_EXPORT) from exc
