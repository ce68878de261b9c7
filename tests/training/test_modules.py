"""training.modules: built-in modules and custom module files (JSON, INI) with validation."""

import json

import pytest

from edge.errors import ConfigError
from training.modules import BUILTIN_MODULES, get_module, list_modules


def test_builtins():
    assert list_modules() == ["chest", "pediatric-pneumonia", "skin"]
    skin = get_module("skin")
    assert skin.classes == ("Acne", "Scabies", "Psoriasis", "Vitiligo", "Warts", "Fungal infection",
                            "Leprosy")
    assert (skin.colour, skin.augmentation, skin.task) == ("RGB", "skin", "multiclass")
    chest = get_module("chest")
    assert chest.classes == ("Effusion", "Pneumonia", "Pneumothorax", "No Finding")
    assert chest.augmentation == "chest-xray" and chest.colour == "RGB"
    assert len(chest.display_names) == 4
    pediatric = get_module("pediatric-pneumonia")
    assert pediatric.classes == ("Normal", "Pneumonia")
    spec = pediatric.input_spec(128)
    assert (spec.height, spec.width, spec.colour) == (128, 128, "RGB")
    assert pediatric.class_for("NORMAL") == "Normal" and pediatric.class_for("x") is None
    for module in BUILTIN_MODULES.values():
        assert module.to_dict()["id"] == module.id


def test_json_module(tmp_path):
    path = tmp_path / "derm.json"
    path.write_text(json.dumps({"id": "derm", "title": "Derm", "classes": ["A", "B", "C"], "colour": "RGB",
                                "image_size": 160, "augmentation": "skin"}))
    module = get_module(str(path))
    assert module.classes == ("A", "B", "C") and module.display_names == ("A", "B", "C")
    assert module.image_size == 160 and module.task == "multiclass"


def test_ini_module(tmp_path):
    path = tmp_path / "xr.ini"
    path.write_text("[module]\nid = xr\ntitle = X-ray\nclasses = Effusion, No Finding\ntask = multilabel\n"
                    "multi_finding = multilabel\naugmentation = chest-xray\nimage_size = 192\n")
    module = get_module(str(path))
    assert module.classes == ("Effusion", "No Finding") and module.task == "multilabel"
    assert module.image_size == 192


@pytest.mark.parametrize("fields, message", [
    ({"classes": ["A"]}, "at least 2"),
    ({"classes": ["A", "a"]}, "duplicates"),
    ({"task": "regression"}, "task"),
    ({"colour": "CMYK"}, "colour"),
    ({"augmentation": "wild"}, "augmentation"),
    ({"image_size": 5}, "image_size"),
    ({"image_size": "big"}, "image_size"),
    ({"display_names": ["x"]}, "display_names"),
    ({"multi_finding": "multilabel"}, "multi_finding"),
    ({"colours": "RGB"}, "unknown field"),
])
def test_invalid_modules(tmp_path, fields, message):
    data = {"id": "bad", "title": "Bad", "classes": ["A", "B"]}
    data.update(fields)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        get_module(str(path))


def test_unknown_and_broken(tmp_path):
    with pytest.raises(ConfigError, match="unknown module"):
        get_module("cardiology")
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        get_module(str(broken))
    missing = tmp_path / "m.ini"
    missing.write_text("[other]\nid = x\n")
    with pytest.raises(ConfigError, match=r"\[module\]"):
        get_module(str(missing))
