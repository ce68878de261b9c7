"""training.splits: patient-level, stratified, reproducible splits; split files; leak checks."""

import json
import os
import random
import shutil

import cv2
import pytest

from edge.errors import ConfigError, MedkioskError
from training.data import Sample, samples_from_csv, samples_from_folder
from training.modules import get_module
from training.splits import LeakError, Split, check_leaks, make_split
from training.synth import generate_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NIH = os.path.join(os.path.dirname(ROOT), "shared", "data", "chest-nih")
NIH_CSV = os.path.join(NIH, "labels.csv")
NIH_IMAGES = os.path.join(NIH, "images")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(str(root), num_classes=3, per_class=20, size=48, seed=0)
    samples = samples_from_folder(str(root))
    # Three images per patient: patients span files 000-002, 003-005, ... within a class.
    grouped = [s._replace(patient_id="{}-p{}".format(s.labels[0], int(os.path.basename(s.path)[:3]) // 3))
               for s in samples]
    return str(root), grouped


def _patients(part):
    return {s.patient_id for s in part}


def test_split_is_patient_disjoint_and_stratified(dataset):
    _root, samples = dataset
    split = make_split(samples, fractions=(0.6, 0.2, 0.2), seed=1)
    train, val, test = _patients(split.train), _patients(split.val), _patients(split.test)
    assert not (train & val or train & test or val & test)
    assert len(split.train) + len(split.val) + len(split.test) == len(samples)
    for part in (split.train, split.val, split.test):
        assert {s.labels[0] for s in part} == {"circle", "square", "triangle"}
    assert 30 <= len(split.train) <= 42


def test_split_file_is_reproducible_and_order_independent(dataset, tmp_path):
    root, samples = dataset
    shuffled = list(samples)
    random.Random(5).shuffle(shuffled)
    first = make_split(samples, seed=7).to_file(str(tmp_path / "a.json"), root=root)
    second = make_split(shuffled, seed=7).to_file(str(tmp_path / "b.json"), root=root)
    with open(first, "rb") as a, open(second, "rb") as b:
        assert a.read() == b.read()
    other = make_split(samples, seed=8)
    assert [s.path for s in other.val] != [s.path for s in Split.from_file(first).val]


def test_split_file_roundtrip_with_new_root(dataset, tmp_path):
    root, samples = dataset
    split = make_split(samples, seed=0, meta={"module": "synth"})
    path = split.to_file(str(tmp_path / "split.json"), root=root)
    moved = str(tmp_path / "moved")
    shutil.copytree(root, moved)
    loaded = Split.from_file(path, root=moved)
    assert [(s.labels, s.patient_id) for s in loaded.test] == [(s.labels, s.patient_id) for s in split.test]
    assert all(p.path.startswith(moved) and os.path.isfile(p.path) for p in loaded.train)
    assert loaded.meta == {"module": "synth"} and loaded.seed == 0
    assert loaded.counts() == split.counts()
    with pytest.raises(ConfigError):
        Split.from_file(str(tmp_path / "nope.json"))


def test_split_file_travels_with_its_data(dataset, tmp_path):
    """The root is stored relative to the split file: a checkout with its data beside it (the
    repository's splits/ and ../shared on CI) resolves on any machine, without --root."""
    root, samples = dataset
    project = tmp_path / "project"
    shutil.copytree(root, str(project / "data" / "images"))
    split = make_split(samples_from_folder(str(project / "data" / "images")), seed=3)
    path = split.to_file(str(project / "repo" / "splits" / "s.json"), root=str(project / "data" / "images"))
    with open(path) as handle:
        assert json.load(handle)["root"] == "../../data/images"
    moved = tmp_path / "elsewhere"
    shutil.move(str(project), str(moved))
    loaded = Split.from_file(str(moved / "repo" / "splits" / "s.json"))
    assert loaded.root == str(moved / "data" / "images")
    assert all(os.path.isfile(s.path) for _name, part in loaded.parts() for s in part)
    assert [s.patient_id for s in loaded.test] == [s.patient_id for s in split.test]
    # Files written before roots were relative hold an absolute root: still read as it is.
    path = str(moved / "repo" / "splits" / "s.json")
    with open(path) as handle:
        data = json.load(handle)
    data["root"] = str(moved / "data" / "images")
    old = str(tmp_path / "old.json")
    with open(old, "w") as handle:
        json.dump(data, handle)
    assert [s.path for s in Split.from_file(old).train] == [s.path for s in loaded.train]


def test_bad_fractions(dataset):
    with pytest.raises(ConfigError):
        make_split(dataset[1], fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ConfigError):
        make_split([], seed=0)


def _images_for_leaks(tmp_path, dataset):
    """Real X-rays when available (similar-looking images: the hard case), else synthetic."""
    if os.path.isfile(NIH_CSV):
        samples = samples_from_csv(NIH_CSV, NIH_IMAGES, get_module("chest"))
        return list(samples)[:80]
    return dataset[1]


def test_leak_check_clean_then_planted(tmp_path, dataset):
    samples = _images_for_leaks(tmp_path, dataset)
    split = make_split(samples, seed=0)
    report = check_leaks(split, cache_path=str(tmp_path / "hashes.json"))
    assert report["patient_leaks"] == report["identical_leaks"] == report["near_duplicate_leaks"] == 0
    assert os.path.isfile(str(tmp_path / "hashes.json"))

    source = split.train[0]
    # 1. the same patient in train and val
    patient_leak = split.val[0]._replace(patient_id=source.patient_id)
    # 2. a byte-identical copy under another name and patient
    identical = str(tmp_path / "copy_identical.png")
    shutil.copyfile(source.path, identical)
    # 3. a resized (90%) and JPEG re-encoded copy under another patient
    image = cv2.imread(split.train[1].path)
    smaller = cv2.resize(image, None, fx=0.9, fy=0.9, interpolation=cv2.INTER_AREA)
    near = str(tmp_path / "copy_near.jpg")
    cv2.imwrite(near, smaller, [cv2.IMWRITE_JPEG_QUALITY, 80])
    planted = Split(split.train, [patient_leak] + split.val[1:] + [Sample(identical, source.labels, "new-1")],
                    split.test + [Sample(near, split.train[1].labels, "new-2")], seed=0)
    with pytest.raises(LeakError) as caught:
        check_leaks(planted, cache_path=str(tmp_path / "hashes.json"))
    error = caught.value
    assert isinstance(error, MedkioskError)
    kinds = {leak["kind"]: leak for leak in error.leaks}
    assert set(kinds) == {"patient", "identical", "near-duplicate"}
    assert kinds["patient"]["patient"] == source.patient_id
    assert identical in kinds["identical"]["paths"] and source.path in kinds["identical"]["paths"]
    assert set(kinds["near-duplicate"]["paths"]) == {near, split.train[1].path}
    assert identical in str(error) and near in str(error)
    # Without near-duplicate detection the re-encoded copy passes unnoticed, the others do not.
    with pytest.raises(LeakError) as caught:
        check_leaks(planted, near_duplicates=False)
    assert {leak["kind"] for leak in caught.value.leaks} == {"patient", "identical"}


@pytest.mark.skipif(not os.path.isfile(NIH_CSV), reason="../shared/data/chest-nih is absent")
def test_real_nih_split_has_no_leaks(tmp_path):
    samples = samples_from_csv(NIH_CSV, NIH_IMAGES, get_module("chest"))
    split = make_split(samples, seed=0)
    split.to_file(str(tmp_path / "split.json"))
    report = check_leaks(split)
    # Every kept image and patient is checked (the counts follow the data: 631/449 before 2026-12-03).
    assert report["images"] == samples.summary["images"] == len(samples)
    assert report["patients"] == samples.summary["patients"]
    assert os.path.isfile(str(tmp_path / "split.json.hashes.json"))
    again = check_leaks(Split.from_file(str(tmp_path / "split.json")))
    assert again["seconds"] < report["seconds"]
