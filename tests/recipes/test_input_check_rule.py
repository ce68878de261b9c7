"""The input check's threshold rule (``recipes.evaluation.THRESHOLD_RULES``): "each" accepts the val files
AND the val photographed crops at ``ood_accept``; "pooled" (the chest recipe) is one quantile of both.

Embeddings are synthetic clusters (the rule is arithmetic on scores); the crops sit farther from the
training means than the files, as photographed X-rays do."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from edge.errors import ConfigError
from recipes import evaluation, photo_data
from recipes.config import recipe_for
from training import ood

DIM = 8


def _cluster(rng, centre, n, spread=1.0):
    return torch.from_numpy((centre + rng.normal(0, spread, (n, DIM))).astype(np.float32))


def _inputs(seed=0, n_files=200, n_crops=300):
    """(embeddings, targets, images, val_groups): two classes; val crops spread twice as wide as files."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (2, DIM))
    train = torch.cat([_cluster(rng, centres[c], 200) for c in range(2)])
    files = torch.cat([_cluster(rng, centres[c], n_files // 2) for c in range(2)])
    crops = torch.cat([_cluster(rng, centres[c], n_crops // 2, spread=2.0) for c in range(2)])
    targets = {"train": torch.arange(len(train)) // 200, "val": torch.zeros(len(files) + len(crops))}
    grey = torch.from_numpy(np.repeat(rng.integers(0, 256, (1, 1, 16, 16)), 3, axis=1).astype(np.uint8))
    images = {"train": grey.expand(len(train), -1, -1, -1),
              "val": grey.expand(len(files) + len(crops), -1, -1, -1)}
    embeddings = {"train": train, "val": torch.cat([files, crops])}
    return embeddings, targets, images, [files, crops]


def _fit(rule, negatives=(), **kwargs):
    embeddings, targets, images, groups = _inputs(**kwargs)
    recipe = replace(recipe_for("pediatric-pneumonia"), ood_rule=rule)
    head, thresholds = evaluation.fit_input_check(recipe, embeddings, targets, images, "multiclass", 2,
                                                  negatives=negatives, val_groups=groups)
    return head, thresholds, groups


def test_each_rule_is_the_crop_quantile_and_a_crop_exactly_at_it_is_accepted():
    head, thresholds, (files, crops) = _fit("each")
    fit = ood.MahalanobisFit(head.means.numpy(), head.basis.numpy(), head.scale.numpy(),
                             head.tail_variance, 0.1)
    crop_d, file_d = fit.distances(crops.numpy()), fit.distances(files.numpy())
    threshold = thresholds["distance_threshold"]
    assert threshold == ood.choose_threshold(crop_d, 0.99) > ood.choose_threshold(file_d, 0.99)
    at = np.sort(crop_d)[int(np.searchsorted(np.sort(crop_d), threshold))]
    assert at == threshold
    assert ood.rates([at / threshold]) == 0.0  # exactly at the quantile: accepted
    assert ood.rates([np.nextafter(at, np.inf) / threshold]) == 1.0  # the next float up: refused
    assert ood.rates(crop_d / threshold) <= 0.01 and ood.rates(file_d / threshold) <= 0.01
    assert thresholds["threshold_rule"] == "each"


def test_pooled_rule_lets_more_than_one_percent_of_crops_be_refused():
    """The failure the "each" rule fixes (issue 12: 5.5% of val crops refused under the pooled quantile)."""
    head, thresholds, (files, crops) = _fit("pooled")
    scores = head(crops).numpy()
    pooled = head(torch.cat([files, crops])).numpy()
    assert ood.rates(pooled) <= 0.011
    assert ood.rates(scores) > 0.01
    each_head, _t, _g = _fit("each")
    assert ood.rates(each_head(crops).numpy()) < ood.rates(scores)


def test_each_rule_sets_the_scope_score_threshold_per_group():
    rng = np.random.default_rng(5)
    negatives = [torch.from_numpy(rng.normal(6, 1, (200, DIM)).astype(np.float32))]
    head, thresholds, groups = _fit("each", negatives=negatives)
    group = head.group
    expected = max(ood.choose_threshold(group.logits(g.numpy()), 0.99) for g in groups)
    assert thresholds["scope_threshold"] == group.threshold == expected
    for g in groups:
        assert ood.rates(group.scores(g.numpy())) <= 0.01
    assert ood.rates(group.scores(negatives[0].numpy())) >= 0.95


def test_pooled_rule_equals_one_group():
    """Chest behaviour: the split groups give exactly the old single-group (files + crops) threshold."""
    _h, split, _g = _fit("pooled")
    embeddings, targets, images, _groups = _inputs()
    recipe = replace(recipe_for("chest"), ood_components=256)
    _h2, single = evaluation.fit_input_check(recipe, embeddings, targets, images, "multiclass", 2)
    assert recipe_for("chest").ood_rule == "pooled"
    assert split["distance_threshold"] == single["distance_threshold"]


def test_unknown_rule_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="ood_rule.*Fix: use one of each, pooled"):
        _fit("median")


def test_pediatric_renders_more_crops_per_val_image_only():
    recipe = recipe_for("pediatric-pneumonia")
    assert recipe.ood_rule == "each"
    assert photo_data.photo_renders(recipe, "val") == recipe.val_photo_renders >= 2
    assert photo_data.photo_renders(recipe, "train") == recipe.photo_renders == 1
    assert photo_data.photo_renders(recipe_for("chest"), "val") == recipe_for("chest").photo_renders


def test_val_images_are_rendered_val_photo_renders_times_with_distinct_seeded_crops(tmp_path, monkeypatch):
    """Real X-rays of the committed val split, rendered through the device's crop path (2 per image)."""
    import os

    from recipes.config import DEFAULT_DATA_ROOT, ROOT
    from recipes.data import resolve_split
    from recipes.run import build_description
    from training.modules import get_module

    recipe = replace(recipe_for("pediatric-pneumonia"), photo_limit=4, val_photo_renders=2)
    if not os.path.isdir(os.path.join(DEFAULT_DATA_ROOT, recipe.data)):
        pytest.skip("../shared/data is not beside this checkout")
    monkeypatch.setattr(photo_data, "CROPS_DIR", str(tmp_path))
    _module, split, _info = resolve_split(recipe, DEFAULT_DATA_ROOT, os.path.join(ROOT, "splits"))
    spec = build_description(recipe, get_module(recipe.module)).input
    samples, crops = photo_data.photo_part(recipe, split, "val", spec)
    assert len(samples) == len(crops) == 2 and samples[0] is samples[1]  # 4 // 4 = 1 val image, 2 renders
    assert not torch.equal(crops[0], crops[1])
    assert os.listdir(str(tmp_path)) == ["pediatric-pneumonia-val-r2-s1000-l1-224.pt"]
    _samples, cached = photo_data.photo_part(recipe, split, "val", spec)  # stored: the same seeded crops
    assert torch.equal(cached, crops)
