"""Patient-level train/validation/test splits, saved to a file and checked for leaks.

All images of one patient land in one split. Patients are ordered by a seeded hash of their id
(so the split does not depend on the order the images were listed in) and dealt, per stratum
(the patient's majority label), to the split furthest below its target image count.
``check_leaks`` looks for the same patient, the same file (sha256) or a near-duplicate image
(perceptual hash) in two splits.
"""

import collections
import hashlib
import json
import logging
import os
import time

from edge.errors import ConfigError, MedkioskError
from edge.lazy import require
from training.data import Sample

LOG = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SPLIT_FORMAT = "medkiosk-split"
SPLIT_VERSION = 1
HASH_CACHE_SUFFIX = ".hashes.json"
# A 256-bit DCT hash (imagehash.phash, hash_size=16). The 64-bit default cannot tell X-rays apart:
# on the Kermany and NIH images, different patients were within 4 bits of each other. Measured on
# 2646 real X-rays: a copy resized to 80% and re-encoded as JPEG q70 is <= 12 bits away, while the
# nearest other image is >= 54 bits away for 99.5% of the images.
PHASH_SIZE = 16
PHASH_KEY = "phash{}".format(PHASH_SIZE)
DEFAULT_NEAR_DUPLICATE_DISTANCE = 24


class LeakError(MedkioskError):
    """A patient, a file or a near-identical image appears in more than one split."""

    def __init__(self, leaks, report=None):
        self.leaks = list(leaks)
        self.report = dict(report or {})
        kinds = collections.Counter(leak["kind"] for leak in self.leaks)
        lines = ["{} leak(s) between splits ({}):".format(
            len(self.leaks), ", ".join("{} {}".format(n, k) for k, n in sorted(kinds.items())))]
        for leak in self.leaks[:20]:
            lines.append("  " + describe_leak(leak))
        if len(self.leaks) > 20:
            lines.append("  ... and {} more".format(len(self.leaks) - 20))
        lines.append("Fix: remove the duplicates from the data set or fix the patient ids, then make the "
                     "split again (medkiosk data split)")
        super().__init__("\n".join(lines))


def describe_leak(leak):
    """One line naming a leak and the offending paths."""
    where = " / ".join("{}: {}".format(split, path) for split, path in zip(leak["splits"], leak["paths"]))
    if leak["kind"] == "patient":
        return "patient {} in {}: {}".format(leak["patient"], ", ".join(sorted(set(leak["splits"]))), where)
    if leak["kind"] == "identical":
        return "identical file (sha256 {}) in {}".format(leak["sha256"][:12], where)
    return "near-duplicate image (hash distance {}) in {}".format(leak["distance"], where)


def _hash_order(seed, patient):
    return hashlib.sha256("{}:{}".format(seed, patient).encode("utf-8")).hexdigest()


def _majority_label(samples):
    counts = collections.Counter(label for sample in samples for label in sample.labels)
    if not counts:
        return ""
    best = max(counts.values())
    return sorted(label for label, count in counts.items() if count == best)[0]


def _check_fractions(fractions):
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError("split fractions must be three non-negative numbers (train, val, test) summing to "
                          "1, got {}".format(list(fractions)))
    if fractions[0] <= 0:
        raise ConfigError("the train fraction must be > 0, got {}".format(fractions[0]))
    return tuple(float(f) for f in fractions)


class Split(object):
    """Train/val/test lists of Sample, plus how they were made (seed, fractions, optional meta)."""

    def __init__(self, train, val, test, seed=0, fractions=(0.7, 0.15, 0.15), root=None, meta=None,
                 path=None):
        self.train = sorted(train, key=lambda s: s.path)
        self.val = sorted(val, key=lambda s: s.path)
        self.test = sorted(test, key=lambda s: s.path)
        self.seed = seed
        self.fractions = tuple(fractions)
        self.root = root
        self.meta = dict(meta or {})
        self.path = path

    def parts(self):
        """(name, samples) for train, val, test."""
        return (("train", self.train), ("val", self.val), ("test", self.test))

    def __getitem__(self, name):
        if name not in SPLITS:
            raise KeyError(name)
        return getattr(self, name)

    def classes(self):
        """Sorted class names seen in any split (prefer meta['classes'] when known)."""
        if self.meta.get("classes"):
            return list(self.meta["classes"])
        return sorted({label for _name, part in self.parts() for s in part for label in s.labels})

    def counts(self):
        result = {}
        for name, part in self.parts():
            per_class = collections.Counter(label for s in part for label in s.labels)
            result[name] = {"images": len(part), "patients": len({s.patient_id for s in part}),
                            "per_class": dict(sorted(per_class.items()))}
        return result

    def _root(self):
        if self.root:
            return os.path.abspath(self.root)
        paths = [os.path.abspath(s.path) for _name, part in self.parts() for s in part]
        if not paths:
            return os.getcwd()
        common = os.path.commonpath(paths)
        return common if os.path.isdir(common) else os.path.dirname(common)

    def to_dict(self, root=None, relative_to=None):
        """The split as JSON data; ``root`` is stored relative to the folder ``relative_to`` when given
        (the split file's folder), so a checkout with its data beside it works on any machine."""
        root = os.path.abspath(root) if root else self._root()
        stored_root = root
        if relative_to:
            stored_root = os.path.relpath(root, os.path.abspath(relative_to)).replace(os.sep, "/")
        data = {
            "format": SPLIT_FORMAT,
            "version": SPLIT_VERSION,
            "seed": self.seed,
            "fractions": list(self.fractions),
            "root": stored_root,
            "meta": self.meta,
            "counts": self.counts(),
        }
        for name, part in self.parts():
            data[name] = [{"path": os.path.relpath(os.path.abspath(s.path), root).replace(os.sep, "/"),
                           "labels": list(s.labels), "patient": s.patient_id} for s in part]
        return data

    def to_file(self, path, root=None):
        """Write the split as JSON (deterministic bytes: same split -> same file)."""
        path = str(path)
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        text = json.dumps(self.to_dict(root, relative_to=parent), indent=1, sort_keys=True) + "\n"
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
        self.path = path
        return path

    @classmethod
    def from_file(cls, path, root=None):
        """Read a split file; image paths are resolved against ``root`` (default: the stored root)."""
        path = str(path)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except OSError as exc:
            raise ConfigError("split file {}: cannot be read ({}). Fix: make one with `medkiosk data split`"
                              .format(path, exc.strerror)) from exc
        except ValueError as exc:
            raise ConfigError("split file {}: not valid JSON ({}). Fix: make it again with `medkiosk data "
                              "split`".format(path, exc)) from exc
        if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
            raise ConfigError("split file {}: not a medkiosk split file. Fix: make one with `medkiosk data "
                              "split`".format(path))
        if data.get("version") != SPLIT_VERSION:
            raise ConfigError("split file {}: version {!r} not supported (expected {})".format(
                path, data.get("version"), SPLIT_VERSION))
        folder = os.path.dirname(os.path.abspath(path))
        stored = data.get("root")
        if root:
            base = str(root)
        elif stored:
            # Relative roots (written since the split files moved with the repository) are relative to
            # this file's folder; absolute ones (older files) are used as they are.
            stored = str(stored)
            if os.path.isabs(stored):
                base = stored
            else:
                base = os.path.normpath(os.path.join(folder, *stored.split("/")))
        else:
            base = folder
        parts = {}
        for name in SPLITS:
            entries = data.get(name)
            if not isinstance(entries, list):
                raise ConfigError("split file {}: field {!r} missing or not a list".format(path, name))
            try:
                parts[name] = [Sample(os.path.join(base, *entry["path"].split("/")), tuple(entry["labels"]),
                                      str(entry["patient"])) for entry in entries]
            except (KeyError, TypeError, AttributeError) as exc:
                raise ConfigError("split file {}: malformed entry in {!r} ({}). Fix: make it again".format(
                    path, name, exc)) from exc
        return cls(parts["train"], parts["val"], parts["test"], seed=data.get("seed"),
                   fractions=tuple(data.get("fractions") or ()), root=base, meta=data.get("meta"), path=path)


def make_split(samples, fractions=(0.7, 0.15, 0.15), seed=0, stratify=True, root=None, meta=None):
    """Split samples by patient, stratified by each patient's majority label; reproducible for a seed."""
    fractions = _check_fractions(fractions)
    if not samples:
        raise ConfigError("cannot split an empty data set")
    by_patient = collections.defaultdict(list)
    for sample in samples:
        by_patient[str(sample.patient_id)].append(sample)
    strata = collections.defaultdict(list)
    for patient, items in by_patient.items():
        strata[_majority_label(items) if stratify else ""].append(patient)
    assigned = {name: [] for name in SPLITS}
    for stratum in sorted(strata):
        patients = sorted(strata[stratum], key=lambda p: (_hash_order(seed, p), p))
        total = sum(len(by_patient[p]) for p in patients)
        targets = [f * total for f in fractions]
        counts = [0, 0, 0]
        for patient in patients:
            # The split furthest below its target gets the patient; ties go to train, then val.
            deficits = [targets[i] - counts[i] if fractions[i] > 0 else float("-inf") for i in range(3)]
            best = max(range(3), key=lambda i: (deficits[i], -i))
            counts[best] += len(by_patient[patient])
            assigned[SPLITS[best]].extend(by_patient[patient])
    return Split(assigned["train"], assigned["val"], assigned["test"], seed=seed, fractions=fractions,
                 root=root, meta=meta)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _phash(path):
    imagehash = require("imagehash", "pip install 'medkiosk[train]' (imagehash)")
    pil_image = require("PIL.Image", "pip install pillow")
    with pil_image.open(path) as image:
        return str(imagehash.phash(image, hash_size=PHASH_SIZE))


def default_hash_cache(split):
    """Where the hash cache lives: beside the split file, or None for an unsaved split."""
    return split.path + HASH_CACHE_SUFFIX if split.path else None


def file_hashes(paths, cache_path=None, perceptual=True):
    """{path: {"sha256", "phash16"}} with a JSON cache keyed by path, size and mtime."""
    cache = {}
    if cache_path and os.path.isfile(cache_path):
        try:
            with open(cache_path, encoding="utf-8") as handle:
                cache = json.load(handle)
        except (OSError, ValueError):
            cache = {}  # an unreadable cache is rebuilt, not trusted
    result = {}
    changed = False
    failures = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError as exc:
            failures.append("{}: {}".format(path, exc.strerror))
            continue
        key = os.path.abspath(path)
        entry = cache.get(key)
        if not entry or entry.get("size") != stat.st_size or entry.get("mtime") != stat.st_mtime:
            entry = {"size": stat.st_size, "mtime": stat.st_mtime, "sha256": _sha256(path)}
            changed = True
        if perceptual and PHASH_KEY not in entry:
            try:
                entry[PHASH_KEY] = _phash(path)
            except OSError as exc:
                failures.append("{}: not a readable image ({})".format(path, exc))
                continue
            changed = True
        cache[key] = entry
        result[path] = entry
    if failures:
        raise ConfigError("{} image(s) cannot be hashed: {}. Fix: remove or repair them".format(
            len(failures), "; ".join(failures[:5])))
    if cache_path and changed:
        tmp = cache_path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(cache, handle, sort_keys=True)
            os.replace(tmp, cache_path)
        except OSError as exc:
            # The hashes are correct either way; only the next check is slower.
            LOG.warning("cannot write the hash cache %s (%s); the next leak check will re-hash", cache_path,
                        exc.strerror)
    return result


def _near_duplicates(items, threshold):
    """items: [(split, path, phash hex)] -> leaks between different splits with distance <= threshold."""
    np = require("numpy", "pip install numpy")
    if not items:
        return []
    values = np.array([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for _s, _p, h in items])
    split_ids = np.array([SPLITS.index(s) for s, _p, _h in items])
    leaks = []
    for index in range(len(items)):
        # Compare each image with the later images from another split only (each pair once).
        others = np.nonzero(split_ids[index + 1:] != split_ids[index])[0] + index + 1
        if others.size == 0:
            continue
        distances = np.bitwise_count(values[others] ^ values[index]).sum(axis=1)
        for hit in np.nonzero(distances <= threshold)[0]:
            other = int(others[hit])
            leaks.append({"kind": "near-duplicate", "distance": int(distances[hit]),
                          "splits": [items[index][0], items[other][0]],
                          "paths": [items[index][1], items[other][1]]})
    return leaks


def check_leaks(split, near_duplicates=True, threshold=DEFAULT_NEAR_DUPLICATE_DISTANCE, cache_path=None):
    """Raise LeakError if a patient, a file or a near-duplicate image is in two splits; else a report.

    Hashes are cached (``cache_path``, default beside the split file) so a re-check is fast.
    """
    started = time.monotonic()
    leaks = []
    patient_splits = collections.defaultdict(dict)
    for name, part in split.parts():
        for sample in part:
            patient_splits[sample.patient_id].setdefault(name, sample.path)
    for patient in sorted(patient_splits):
        where = patient_splits[patient]
        if len(where) > 1:
            names = [n for n in SPLITS if n in where]
            leaks.append({"kind": "patient", "patient": patient, "splits": names,
                          "paths": [where[n] for n in names]})
    paths = [(name, s.path) for name, part in split.parts() for s in part]
    hashes = file_hashes([p for _n, p in paths], cache_path or default_hash_cache(split),
                         perceptual=near_duplicates)
    by_sha = collections.defaultdict(list)
    for name, path in paths:
        by_sha[hashes[path]["sha256"]].append((name, path))
    identical_pairs = set()
    for digest in sorted(by_sha):
        group = by_sha[digest]
        if len({n for n, _p in group}) > 1:
            leaks.append({"kind": "identical", "sha256": digest, "splits": [n for n, _p in group],
                          "paths": [p for _n, p in group]})
            identical_pairs.update(frozenset((a, b)) for _x, a in group for _y, b in group if a != b)
    near = 0
    if near_duplicates:
        found = _near_duplicates([(n, p, hashes[p][PHASH_KEY]) for n, p in paths], int(threshold))
        found = [leak for leak in found if frozenset(leak["paths"]) not in identical_pairs]
        near = len(found)
        leaks.extend(found)
    report = {"images": len(paths), "patients": len(patient_splits), "patient_leaks":
              sum(1 for leak in leaks if leak["kind"] == "patient"),
              "identical_leaks": sum(1 for leak in leaks if leak["kind"] == "identical"),
              "near_duplicate_leaks": near, "near_duplicate_threshold": int(threshold) if near_duplicates
              else None, "seconds": round(time.monotonic() - started, 3)}
    if leaks:
        raise LeakError(leaks, report)
    return report
