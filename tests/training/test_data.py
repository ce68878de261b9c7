"""training.data: class folders, Kermany patient ids, NIH-style CSVs (real files when present)."""

import csv
import os

import pytest

from edge.errors import ConfigError
from training.data import Sample, patient_id_for, samples_from_csv, samples_from_folder
from training.modules import get_module
from training.synth import generate_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
KERMANY = os.path.join(SHARED, "chest-pediatric", "train")
NIH_CSV = os.path.join(SHARED, "chest-nih", "labels.csv")
NIH_IMAGES = os.path.join(SHARED, "chest-nih", "images")
CHEST = ("Effusion", "Pneumonia", "Pneumothorax", "No Finding")


@pytest.mark.parametrize("name, patient", [
    ("person1000_bacteria_2931.jpeg", "person1000"),
    ("person1000_virus_1681.jpeg", "person1000"),
    ("person1_virus_6_2.jpeg", "person1"),
    ("IM-0115-0001.jpeg", "IM-0115"),
    ("IM-0439-0001-0001.jpeg", "IM-0439"),
    ("NORMAL2-IM-1423-0001.jpeg", "IM-1423"),
    ("NORMAL2-IM-0806-0001-0002.jpeg", "IM-0806"),
    ("00000061_012.png", "00000061_012"),
])
def test_kermany_patient_rules(name, patient):
    assert patient_id_for(os.path.join("x", name)) == patient


def test_patient_pattern():
    assert patient_id_for("a/p17_scan3.png", r"^(?P<patient>p\d+)_") == "p17"
    assert patient_id_for("a/other.png", r"^(?P<patient>p\d+)_") == "other"
    with pytest.raises(ConfigError):
        patient_id_for("a/p17_scan3.png", r"^(p\d+)_")


@pytest.fixture()
def folder(tmp_path):
    generate_dataset(str(tmp_path), num_classes=3, per_class=4, size=32, seed=0)
    (tmp_path / "circle" / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_classes_and_patients(folder):
    samples = samples_from_folder(str(folder))
    assert len(samples) == 12
    assert all(isinstance(s, Sample) and len(s.labels) == 1 for s in samples)
    assert samples.summary["per_class"] == {"circle": 4, "square": 4, "triangle": 4}
    # 000.png in two class folders is not one patient.
    assert samples.summary["patients"] == 12
    assert samples.summary["skipped_non_image_files"] == 1
    assert samples == sorted(samples, key=lambda s: s.path)


def test_folder_maps_module_classes_case_insensitively(tmp_path):
    for folder in ("NORMAL", "PNEUMONIA", "extra"):
        os.makedirs(str(tmp_path / folder))
    generate_dataset(str(tmp_path / "gen"), num_classes=2, per_class=2, size=32)
    gen = tmp_path / "gen"
    os.replace(str(gen / "circle" / "000.png"), str(tmp_path / "NORMAL" / "IM-0001-0001.png"))
    os.replace(str(gen / "square" / "000.png"), str(tmp_path / "PNEUMONIA" / "person5_virus_1.png"))
    samples = samples_from_folder(str(tmp_path), get_module("pediatric-pneumonia"))
    assert [(s.labels, s.patient_id) for s in samples] == [
        (("Normal",), "IM-0001"), (("Pneumonia",), "person5")]
    assert samples.summary["skipped_folders"] == ["extra", "gen"]
    with pytest.raises(ConfigError, match="Psoriasis"):
        samples_from_folder(str(tmp_path), ["Normal", "Psoriasis"])
    with pytest.raises(ConfigError):
        samples_from_folder(str(tmp_path / "missing"))


@pytest.mark.skipif(not os.path.isdir(KERMANY), reason="../shared/data/chest-pediatric is absent")
def test_real_kermany_patients():
    samples = samples_from_folder(KERMANY, get_module("pediatric-pneumonia"))
    assert samples.summary["per_class"] == {"Normal": 1341, "Pneumonia": 3875}
    # 2635 patients: person ids in PNEUMONIA, IM-NNNN (with NORMAL2- merged in) in NORMAL.
    assert samples.summary["patients"] == 2635
    by_patient = {}
    for sample in samples:
        by_patient.setdefault(sample.patient_id, []).append(sample)
    assert len(by_patient["person23"]) > 1
    assert all(s.patient_id.startswith(("person", "IM-")) for s in samples)


def _write_csv(path, header, rows):
    with open(str(path), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_csv_drop_and_multilabel(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png", "c.png", "d.png", "e.png"):
        (images / name).write_bytes(b"x")
    rows = [("a.png", "Effusion|Atelectasis", "1"), ("b.png", "Effusion|Pneumonia", "1"),
            ("c.png", "Cardiomegaly", "2"), ("d.png", "No Finding", "3"), ("e.png", "pneumothorax", "4"),
            ("gone.png", "Pneumonia", "5")]
    _write_csv(tmp_path / "l.csv", ("Image Index", "Finding Labels", "Patient ID"), rows)
    drop = samples_from_csv(str(tmp_path / "l.csv"), str(images), CHEST, multi_finding="drop")
    assert [(os.path.basename(s.path), s.labels, s.patient_id) for s in drop] == [
        ("a.png", ("Effusion",), "1"), ("d.png", ("No Finding",), "3"), ("e.png", ("Pneumothorax",), "4")]
    assert drop.summary["dropped"] == {"missing_file": 1, "no_module_class": 1, "several_module_classes": 1}
    multi = samples_from_csv(str(tmp_path / "l.csv"), str(images), CHEST, multi_finding="multilabel")
    assert ("Effusion", "Pneumonia") in [s.labels for s in multi]
    assert len(multi) == 4
    with pytest.raises(ConfigError):
        samples_from_csv(str(tmp_path / "l.csv"), str(images), CHEST, image_column="nope")


def _nih_expected():
    """Counts read straight from labels.csv with the csv module (independent of training.data), so the
    test follows the data when it grows (907 rows before 2026-12-03, 1,198 after)."""
    with open(NIH_CSV, newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [(row, [f for f in row["finding_labels"].split("|") if f in CHEST]) for row in rows]
    single = [(row, found) for row, found in kept if len(found) == 1]
    per_class = {}
    for _row, found in single:
        per_class[found[0]] = per_class.get(found[0], 0) + 1
    return {"rows": len(rows), "none": sum(not found for _r, found in kept),
            "several": sum(len(found) > 1 for _r, found in kept), "single": len(single),
            "patients": len({row["patient_id"] for row, _f in single}), "per_class": per_class}


@pytest.mark.skipif(not os.path.isfile(NIH_CSV), reason="../shared/data/chest-nih is absent")
def test_real_nih_csv_counts():
    expected = _nih_expected()
    assert expected["rows"] == len(os.listdir(NIH_IMAGES)) >= 907  # every row has its image
    drop = samples_from_csv(NIH_CSV, NIH_IMAGES, get_module("chest"), multi_finding="drop")
    multi = samples_from_csv(NIH_CSV, NIH_IMAGES, get_module("chest"), multi_finding="multilabel")
    assert drop.summary["rows"] == multi.summary["rows"] == expected["rows"]
    assert drop.summary["dropped"] == {"no_module_class": expected["none"],
                                       "several_module_classes": expected["several"]}
    assert len(drop) == expected["single"] and drop.summary["patients"] == expected["patients"]
    assert drop.summary["per_class"] == expected["per_class"]
    assert multi.summary["dropped"] == {"no_module_class": expected["none"]}
    assert len(multi) == expected["single"] + expected["several"]
    assert all(len(s.labels) == 1 for s in drop)
    assert sum(len(s.labels) > 1 for s in multi) == expected["several"]
    assert all(os.path.isfile(s.path) for s in drop)
