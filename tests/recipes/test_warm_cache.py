"""recipes.warm_cache: the ONNX Runtime trunk equals PyTorch's, the parts it knows, its refusals."""

from dataclasses import replace

import pytest
import torch

from edge.description import InputSpec
from edge.errors import ConfigError
from recipes.config import recipe_for
from recipes.warm_cache import main, onnx_trunk, part_names, warm


def test_onnx_trunk_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    body[1].running_mean.fill_(5.0)  # batch statistics would differ from these
    trunk = torch.nn.Sequential(body)  # a fresh wrapper: training mode, as training.registry.FrozenNet
    forward = onnx_trunk(trunk, InputSpec(32, 32), str(tmp_path))
    assert not trunk.training
    x = torch.rand(5, 3, 32, 32) * 255
    with torch.no_grad():
        assert torch.allclose(forward(x), trunk(x), atol=1e-4)
    assert (tmp_path / "trunk.onnx").is_file()


def test_parts_follow_the_recipe():
    assert part_names(recipe_for("pediatric-pneumonia")) == [
        "train", "val", "test", "train_photo", "val_photo", "other_train", "other_val", "other_test",
        "negatives"]
    bare = replace(recipe_for("chest"), photo_renders=0, other_group=None, negatives=False)
    assert part_names(bare) == [
        "train", "val", "test"]


def test_a_fine_tuning_recipe_is_refused(monkeypatch):
    from recipes import config

    tuned = recipe_for("pediatric-pneumonia", tune_blocks=2)
    monkeypatch.setitem(config.RECIPES, "pediatric-pneumonia", tuned)
    with pytest.raises(ConfigError, match="fine-tunes the network.*Fix"):
        warm("pediatric-pneumonia")


def test_unknown_part_is_refused_before_any_work(capsys):
    with pytest.raises(ConfigError, match="unknown part.*'tests'.*Fix"):
        warm("pediatric-pneumonia", ["tests"])
    assert main(["pediatric-pneumonia", "--parts", "tests"]) == 2
    assert "unknown part" in capsys.readouterr().err


def test_contrast_warms_that_normalisations_cache(monkeypatch):
    """``--contrast`` overrides the recipe's normalisation (checked before any work, like the parts)."""
    from recipes import warm_cache

    seen = []

    def stop(recipe):
        seen.append(recipe.contrast)
        raise ConfigError("stop")

    monkeypatch.setattr(warm_cache, "part_names", stop)
    for contrast in (None, "clahe"):
        with pytest.raises(ConfigError, match="stop"):
            warm("pediatric-pneumonia", None, None, contrast)
    assert seen == [recipe_for("pediatric-pneumonia").contrast, "clahe"]
    with pytest.raises(SystemExit):
        main(["pediatric-pneumonia", "--contrast", "gamma"])
