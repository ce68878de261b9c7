"""Finding a data set's images, labels and patients.

Two layouts: one folder per class (e.g. Kermany's NORMAL/PNEUMONIA) and an NIH-style CSV. Both
return a ``SampleList`` (a list of ``Sample``) whose ``summary`` says what was kept, what was
dropped and why, and how many patients there are.
"""

import collections
import csv
import logging
import os
import re

from edge.errors import ConfigError
from edge.preprocess import is_image_file

LOG = logging.getLogger(__name__)

Sample = collections.namedtuple("Sample", ["path", "labels", "patient_id"])
Sample.__doc__ = "One image: its path, its labels (tuple of class names) and its patient id."

# Kermany et al. file names: personNNN_bacteria_MMM.jpeg, IM-NNNN-MMMM.jpeg, NORMAL2-IM-NNNN-MMMM.jpeg.
# NORMAL2-IM-NNNN and IM-NNNN are mapped to the same id: whether they are the same child is not
# documented, and merging can only make the split stricter, never leak.
KERMANY_PATTERNS = (
    re.compile(r"^(?P<patient>person\d+)_", re.IGNORECASE),
    re.compile(r"^(?:NORMAL\d*-)?(?P<patient>IM-\d+)-", re.IGNORECASE),
)

IMAGE_COLUMNS = ("Image Index", "image")
LABEL_COLUMNS = ("Finding Labels", "finding_labels")
PATIENT_COLUMNS = ("Patient ID", "patient_id")


class SampleList(list):
    """A list of Sample with a ``summary`` dict (counts kept/dropped and why, patients, classes)."""

    def __init__(self, samples=(), summary=None):
        super().__init__(samples)
        self.summary = dict(summary or {})


def _module_classes(classes):
    """``classes`` may be a list of names or a ModuleDefinition; return the list of names."""
    if classes is None:
        return None
    if hasattr(classes, "classes"):
        return list(classes.classes)
    return list(classes)


def _norm(name):
    return str(name).strip().lower().replace("_", " ").replace("-", " ")


def patient_id_for(path, patient_pattern=None, fallback=None):
    """The patient id of an image file: from ``patient_pattern`` (group ``patient``), Kermany rules,
    else ``fallback`` or the file stem."""
    name = os.path.basename(str(path))
    stem = fallback if fallback is not None else os.path.splitext(name)[0]
    if patient_pattern is not None:
        pattern = re.compile(patient_pattern) if isinstance(patient_pattern, str) else patient_pattern
        if "patient" not in pattern.groupindex:
            raise ConfigError("patient pattern {!r} has no named group 'patient'. Fix: write e.g. "
                              "'^(?P<patient>[^_]+)_'".format(pattern.pattern))
        match = pattern.search(name)
        if match:
            return match.group("patient")
        return stem
    for pattern in KERMANY_PATTERNS:
        match = pattern.search(name)
        if match:
            return match.group("patient")
    return stem


def _summarise(samples, summary):
    per_class = collections.Counter(label for sample in samples for label in sample.labels)
    summary["images"] = len(samples)
    summary["patients"] = len({sample.patient_id for sample in samples})
    summary["per_class"] = dict(sorted(per_class.items()))
    return summary


def samples_from_folder(root, classes=None, patient_pattern=None):
    """One subfolder per class -> SampleList, sorted by path.

    ``classes``: class names (or a ModuleDefinition); folders are matched to them case-insensitively
    (``NORMAL`` -> ``Normal``); folders that match no class are skipped and reported. Without
    ``classes`` the folder names are the classes. A file that no patient rule matches is its own
    patient, named by its path below ``root`` without extension (``circle/000``), because the same
    file name in two class folders (``000.png``) is not the same patient.
    """
    root = str(root)
    if not os.path.isdir(root):
        raise ConfigError("data folder {} does not exist. Fix: pass a folder with one subfolder per class"
                          .format(root))
    folders = sorted(d for d in os.listdir(root)
                     if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    wanted = _module_classes(classes)
    mapping = {}
    skipped_folders = []
    if wanted is None:
        mapping = {folder: folder for folder in folders}
    else:
        by_norm = {_norm(c): c for c in wanted}
        for folder in folders:
            if _norm(folder) in by_norm:
                mapping[folder] = by_norm[_norm(folder)]
            else:
                skipped_folders.append(folder)
        missing = [c for c in wanted if c not in mapping.values()]
        if missing:
            raise ConfigError("data folder {}: no subfolder for class(es) {} (found {}). Fix: add one folder "
                              "per class, named like the class".format(root, missing, folders))
    if len(mapping) < 2:
        raise ConfigError("data folder {}: found {} class folder(s) {}; need at least 2. Fix: put each "
                          "class's images in its own subfolder".format(root, len(mapping), sorted(mapping)))
    samples = []
    skipped_files = 0
    for folder, cls in sorted(mapping.items()):
        directory = os.path.join(root, folder)
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                if not is_image_file(name):
                    skipped_files += 1
                    continue
                path = os.path.join(dirpath, name)
                fallback = os.path.splitext(os.path.relpath(path, root))[0].replace(os.sep, "/")
                samples.append(Sample(path, (cls,), patient_id_for(path, patient_pattern, fallback)))
    summary = {"source": root, "layout": "folder", "skipped_folders": skipped_folders,
               "skipped_non_image_files": skipped_files}
    result = SampleList(samples, _summarise(samples, summary))
    LOG.info("folder %s: %d images, %d patients, %s", root, len(samples), summary["patients"],
             summary["per_class"])
    return result


def _pick_column(fieldnames, given, candidates, what, csv_path):
    if given:
        if given not in fieldnames:
            raise ConfigError("CSV {}: no column {!r} (columns: {}). Fix: pass the right {} column".format(
                csv_path, given, ", ".join(fieldnames), what))
        return given
    for candidate in candidates:
        if candidate in fieldnames:
            return candidate
    return None


def samples_from_csv(csv_path, images_dir, classes, multi_finding="drop", image_column=None,
                     labels_column=None, patient_column=None):
    """NIH-style CSV (image, '|'-joined findings, patient) -> SampleList.

    ``multi_finding='drop'``: keep images with exactly one of ``classes`` among their findings
    (findings outside the class list are ignored); drop images with several. ``'multilabel'``: keep
    images with at least one of the classes, labelled with all of them. Images with none of the
    classes are dropped; so are rows whose image file is missing. ``summary`` counts each reason.
    """
    wanted = _module_classes(classes)
    if not wanted:
        raise ConfigError("samples_from_csv needs the module's classes")
    if multi_finding not in ("drop", "multilabel"):
        raise ConfigError("multi_finding must be 'drop' or 'multilabel', got {!r}".format(multi_finding))
    csv_path = str(csv_path)
    images_dir = str(images_dir)
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fieldnames = list(reader.fieldnames or [])
            rows = list(reader)
    except OSError as exc:
        raise ConfigError("CSV {}: cannot be read ({})".format(csv_path, exc.strerror)) from exc
    image_col = _pick_column(fieldnames, image_column, IMAGE_COLUMNS, "image", csv_path)
    labels_col = _pick_column(fieldnames, labels_column, LABEL_COLUMNS, "labels", csv_path)
    patient_col = _pick_column(fieldnames, patient_column, PATIENT_COLUMNS, "patient", csv_path)
    if image_col is None or labels_col is None:
        raise ConfigError("CSV {}: cannot find the image and label columns (columns: {}). Fix: name them "
                          "{} / {} or pass image_column/labels_column".format(
                              csv_path, ", ".join(fieldnames), " or ".join(IMAGE_COLUMNS),
                              " or ".join(LABEL_COLUMNS)))
    by_norm = {_norm(c): c for c in wanted}
    order = {c: i for i, c in enumerate(wanted)}
    samples = []
    dropped = collections.Counter()
    combos = collections.Counter()
    for row in rows:
        image = (row.get(image_col) or "").strip()
        if not image:
            dropped["empty_image_name"] += 1
            continue
        findings = [f.strip() for f in (row.get(labels_col) or "").split("|") if f.strip()]
        matched = sorted({by_norm[_norm(f)] for f in findings if _norm(f) in by_norm}, key=order.get)
        if not matched:
            dropped["no_module_class"] += 1
            continue
        if multi_finding == "drop" and len(matched) > 1:
            dropped["several_module_classes"] += 1
            combos["|".join(matched)] += 1
            continue
        path = os.path.join(images_dir, image)
        if not os.path.isfile(path):
            dropped["missing_file"] += 1
            continue
        patient = (row.get(patient_col) or "").strip() if patient_col else ""
        samples.append(Sample(path, tuple(matched), patient or patient_id_for(path)))
    samples.sort(key=lambda s: s.path)
    summary = {"source": csv_path, "layout": "csv", "rows": len(rows), "multi_finding": multi_finding,
               "classes": list(wanted), "dropped": dict(sorted(dropped.items())),
               "dropped_total": sum(dropped.values()), "dropped_combinations": dict(combos.most_common()),
               "patient_column": patient_col}
    result = SampleList(samples, _summarise(samples, summary))
    LOG.info("CSV %s: kept %d of %d rows (%d patients); dropped %s", csv_path, len(samples), len(rows),
             summary["patients"], summary["dropped"])
    if not samples:
        raise ConfigError("CSV {}: no image has any of the classes {}. Fix: check the module and the CSV's "
                          "label column".format(csv_path, wanted))
    return result


def load_samples(module, data_dir, csv_path=None, patient_pattern=None):
    """The samples of ``module`` from ``data_dir`` (class folders) or ``csv_path`` + ``data_dir`` (images)."""
    if csv_path:
        return samples_from_csv(csv_path, data_dir, module.classes, multi_finding=module.multi_finding)
    return samples_from_folder(data_dir, classes=module.classes, patient_pattern=patient_pattern)


def strided(items, limit):
    """At most ``limit`` items, evenly spaced through the list (every class of a sorted split kept)."""
    items = list(items)
    if not limit or limit >= len(items):
        return items
    step = len(items) / float(limit)
    return [items[int(i * step)] for i in range(int(limit))]
