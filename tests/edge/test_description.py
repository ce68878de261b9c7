"""ModelDescription/InputSpec: round trips and the validation errors that name the field."""

import json

import pytest

from edge.description import DescriptionError, InputSpec, ModelDescription


def _description(**changes):
    fields = dict(arch="mobilenet_v3_small", task="multiclass", classes=["normal", "pneumonia"],
                  input_spec=InputSpec(224, 224, colour="GRAY"), mean=[0.5], std=[0.25],
                  display_names=["Normal", "Pneumonia"], temperature=1.7, abstain_threshold=0.6,
                  input_check={"output": "ood_score", "threshold": 3.5, "method": "mahalanobis",
                               "message": "not a chest X-ray"}, extra={"dataset": "Kermany et al. 2018"})
    fields.update(changes)
    return ModelDescription(**fields)


def test_round_trip_through_json():
    description = _description()
    data = json.loads(json.dumps(description.to_dict()))
    again = ModelDescription.from_dict(data)
    assert again == description
    assert data["activation"] == "softmax" and data["normalization"]["applied_in_graph"] is True
    assert again.input.shape(2) == (2, 1, 224, 224)
    assert again.num_classes == 2


def test_replace_keeps_everything_else():
    description = _description()
    fitted = description.replace(temperature=2.5)
    assert fitted.temperature == 2.5 and description.temperature == 1.7
    assert fitted.replace(temperature=1.7) == description


def test_multilabel_uses_sigmoid_and_display_names_default_to_classes():
    description = _description(task="multilabel", classes=["effusion"], display_names=None)
    assert description.activation == "sigmoid"
    assert description.display_names == ["effusion"]


@pytest.mark.parametrize("changes, field", [
    ({"task": "regression"}, "task"),
    ({"classes": ["only"]}, "classes"),
    ({"classes": ["a", "a"], "display_names": None}, "classes"),
    ({"display_names": ["One"]}, "display_names"),
    ({"mean": [0.5, 0.5, 0.5]}, "normalization"),
    ({"std": [0.0]}, "normalization.std"),
    ({"temperature": 0}, "temperature"),
    ({"abstain_threshold": 1.5}, "abstain_threshold"),
    ({"input_check": {"output": "ood_score"}}, "input_check.threshold"),
    ({"arch": ""}, "arch"),
])
def test_invalid_descriptions_name_the_field(changes, field):
    with pytest.raises(DescriptionError) as info:
        _description(**changes)
    assert info.value.field == field


@pytest.mark.parametrize("kwargs, field", [
    ({"height": 4, "width": 224}, "input.height/width"),
    ({"height": 224, "width": 224, "colour": "BGR"}, "input.colour"),
    ({"height": 224, "width": 224, "layout": "NHWC"}, "input.layout"),
    ({"height": 224, "width": 224, "dtype": "uint8"}, "input.dtype"),
    ({"height": 224, "width": 224, "resize": "cubic"}, "input.resize"),
    ({"height": 224, "width": 224, "value_range": (1, 0)}, "input.value_range"),
])
def test_invalid_input_specs(kwargs, field):
    with pytest.raises(DescriptionError) as info:
        InputSpec(**kwargs)
    assert info.value.field == field


def test_from_dict_reports_missing_and_inconsistent_fields():
    data = _description().to_dict()
    del data["input"]["height"]
    with pytest.raises(DescriptionError) as info:
        ModelDescription.from_dict(data)
    assert info.value.field == "input.height"
    data = _description().to_dict()
    data["activation"] = "sigmoid"
    with pytest.raises(DescriptionError) as info:
        ModelDescription.from_dict(data)
    assert info.value.field == "activation"
    with pytest.raises(DescriptionError):
        ModelDescription.from_dict(["not", "a", "dict"])
