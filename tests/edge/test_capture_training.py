"""A capture export is what ``medkiosk train`` reads: the real data loader, the real patient-level split
(by subject) and a real one-epoch training run on the exported folder. Main venv only (torch)."""

import collections
import glob
import os

import cv2
import pytest

torch = pytest.importorskip("torch", reason="the trainer needs torch (main venv, not the device set)")

from edge.capture import DEFAULT_LABELS, SUBJECT_PATTERN, CaptureStore, parse_labels  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402

SKIN = parse_labels(DEFAULT_LABELS)  # the built-in skin module's classes, the capture default
PHOTOGRAPHED = ("Acne", "Scabies", "Fungal infection")


def distinct_patients(count):
    """Real images of ``count`` different NIH patients (no near-duplicates between people)."""
    chosen = collections.OrderedDict()
    for path in sorted(glob.glob(os.path.join(SHARED_DATA, "chest-nih", "images", "*.png"))):
        chosen.setdefault(os.path.basename(path).split("_")[0], path)
    if len(chosen) < count:
        pytest.skip("../shared/data/chest-nih is not beside this checkout")
    return list(chosen.values())[:count]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Nine people (three per class), two photos each, captured and exported; (folder, subjects by label)."""
    root = tmp_path_factory.mktemp("capture-train")
    images = iter(distinct_patients(18))
    store = CaptureStore(str(root / "state"), "skin", min_free_mb=0).open()
    subjects = collections.defaultdict(list)
    for label in PHOTOGRAPHED:
        for _person in range(3):
            session = store.start_session(True, "tech-07", device="unit-3")
            for _photo in range(2):
                store.save(session, cv2.resize(cv2.imread(next(images)), (96, 96)), label)
            store.end_session(session)
            subjects[label].append(session.subject)
    usb = root / "usb"
    usb.mkdir()
    folder, count = store.export(str(usb), labels=SKIN)
    assert count == 18
    return folder, subjects, root


@pytest.mark.torch
def test_the_training_loader_reads_the_export(exported):
    from training.data import samples_from_folder
    from training.datasets import ImageDataset
    from training.modules import get_module

    folder, subjects, _root = exported
    module = get_module("skin")
    samples = samples_from_folder(folder, classes=module.classes, patient_pattern=SUBJECT_PATTERN)
    assert samples.summary["per_class"] == {"Acne": 6, "Fungal infection": 6, "Scabies": 6}
    assert samples.summary["skipped_folders"] == [] and samples.summary["patients"] == 9
    for sample in samples:
        assert sample.patient_id in subjects[sample.labels[0]]
    from edge.description import InputSpec

    dataset = ImageDataset(samples, module.classes, InputSpec(32, 32, colour="RGB"), module.task)
    image, target = dataset[0]
    assert tuple(image.shape) == (3, 32, 32) and module.classes[target] == samples[0].labels[0]


@pytest.mark.torch
def test_split_by_subject_then_train_one_epoch(exported):
    from training.cli import main
    from training.splits import Split

    folder, subjects, root = exported
    split_file = str(root / "split.json")
    assert main(["data", "split", "--module", "skin", "--data", folder, "--out", split_file,
                 "--patient-pattern", SUBJECT_PATTERN]) == 0  # with the leak check (patients, duplicates)
    split = Split.from_file(split_file)
    where = collections.defaultdict(set)
    for name, part in split.parts():
        for sample in part:
            where[sample.patient_id].add(name)
    assert sorted(where) == sorted(s for people in subjects.values() for s in people)
    assert all(len(parts) == 1 for parts in where.values())  # one person's photos never in two splits
    run = str(root / "run")
    assert main(["train", "--module", "skin", "--data", folder, "--split-file", split_file, "--out", run,
                 "--arch", "mobilenet_v3_small", "--image-size", "32", "--epochs", "1", "--batch-size", "4",
                 "--workers", "0", "--no-pretrained", "--no-progress", "--threads", "1"]) == 0
    assert os.path.isfile(os.path.join(run, "best.pt"))
