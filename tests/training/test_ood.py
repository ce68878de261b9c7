"""The Mahalanobis input check on synthetic embeddings, and its images of out-of-scope inputs."""

import numpy as np
import pytest
import torch

from edge.errors import ConfigError
from training import ood


def _clusters(rng, n_per_class=200, dim=16, classes=3):
    centres = rng.normal(0, 4, (classes, dim))
    x = np.concatenate([centres[c] + rng.normal(0, 1, (n_per_class, dim)) for c in range(classes)])
    y = np.repeat(np.arange(classes), n_per_class)
    return x.astype(np.float32), y


def test_fit_accepts_in_distribution_and_rejects_far_points():
    rng = np.random.default_rng(0)
    x, y = _clusters(rng)
    val, _ = _clusters(np.random.default_rng(0), n_per_class=100)  # same centres, fresh noise
    fit = ood.fit_mahalanobis(x, y, num_classes=3)
    threshold = ood.choose_threshold(fit.distances(val), accept=0.99)
    far = rng.normal(0, 1, (50, 16)).astype(np.float32) * 30.0
    assert ood.rates(fit.distances(val), threshold) <= 0.01
    assert ood.rates(fit.distances(far), threshold) == 1.0


def test_head_matches_numpy_and_normalises_threshold_to_one():
    rng = np.random.default_rng(1)
    x, y = _clusters(rng, dim=8)
    fit = ood.fit_mahalanobis(x, y, num_classes=3, shrinkage=0.2)
    head = ood.InputCheckHead(fit, distance_threshold=2.5)
    probe = rng.normal(0, 5, (20, 8)).astype(np.float32)
    got = head(torch.from_numpy(probe), None).numpy()
    np.testing.assert_allclose(got, fit.distances(probe) / 2.5, rtol=1e-4, atol=1e-4)
    rebuilt = ood.InputCheckHead.from_state(head.state())
    np.testing.assert_allclose(rebuilt(torch.from_numpy(probe)).numpy(), got, rtol=1e-6)
    entry = ood.input_check_entry(head, accept=0.99)
    assert entry["threshold"] == 1.0 and entry["output"] == "ood_score" and entry["method"] == "mahalanobis"


def test_full_rank_fit_is_the_exact_mahalanobis_distance():
    rng = np.random.default_rng(3)
    x, y = _clusters(rng, dim=6)
    fit = ood.fit_mahalanobis(x, y, num_classes=3, shrinkage=0.3, components=6)
    means = np.stack([x[y == c].mean(0) for c in range(3)]).astype(np.float64)
    centred = np.concatenate([x[y == c] - means[c] for c in range(3)]).astype(np.float64)
    cov = centred.T @ centred / (len(x) - 3)
    cov = 0.7 * cov + 0.3 * np.trace(cov) / 6 * np.eye(6)
    precision = np.linalg.inv(cov)
    probe = rng.normal(0, 3, (10, 6))
    squared = [np.einsum("nf,fg,ng->n", probe - m, precision, probe - m) for m in means]
    exact = np.sqrt(np.min(squared, axis=0))
    np.testing.assert_allclose(fit.distances(probe), exact, rtol=1e-4)
    low_rank = ood.fit_mahalanobis(x, y, num_classes=3, shrinkage=0.3, components=2)
    assert low_rank.basis.shape == (6, 2)
    assert np.all(np.isfinite(low_rank.distances(probe)))


def test_colour_and_contrast_terms_flag_colour_photos_and_blank_frames():
    rng = np.random.default_rng(2)
    x, y = _clusters(rng, dim=4)
    head = ood.InputCheckHead(
        ood.fit_mahalanobis(x, y, 3), distance_threshold=1e6, colour_threshold=0.05, contrast_threshold=10.0
    )
    grey = torch.from_numpy(rng.integers(0, 256, (1, 1, 16, 16)).astype(np.float32)).repeat(1, 3, 1, 1)
    colour = grey.clone()
    colour[:, 0] = torch.clamp(colour[:, 0] + 80.0, max=255.0)
    blank = torch.full((1, 3, 16, 16), 120.0)
    emb = torch.from_numpy(x[:1])
    assert head(emb, None, grey).item() < 1.0
    assert head(emb, None, colour).item() > 1.0
    assert head(emb, None, blank).item() > 1.0
    assert head(emb).item() < 1.0  # without the image only the distance counts
    assert ood.grey_contrast(blank).item() == 0.0
    assert ood.colour_scores(grey).item() == 0.0
    entry = ood.input_check_entry(head, accept=0.99)
    assert entry["method"] == "mahalanobis+colour+contrast"


def test_invalid_inputs_raise_config_errors():
    with pytest.raises(ConfigError):
        ood.fit_mahalanobis(np.zeros((4, 3)), np.zeros(5), 2)
    with pytest.raises(ConfigError):
        ood.choose_threshold([])
    with pytest.raises(ConfigError):
        ood.InputCheckHead.from_state({"method": "energy"})


def test_generated_out_of_scope_images_cover_every_category():
    images = ood.generated_images(count=2, size=64)
    cats = {ood.category(name) for name in images}
    assert cats == {"skin-like", "shapes", "blank", "noise"}
    assert all(img.shape == (64, 64, 3) and img.dtype == np.uint8 for img in images.values())
    table = ood.summarise(list(images), [2.0] * len(images))
    assert table["all"]["rate"] == 1.0


def test_skimage_photos_are_real_bundled_images():
    pytest.importorskip("skimage")
    photos = ood.skimage_photos(("astronaut", "camera"))
    assert photos["skimage:astronaut"].shape == (512, 512, 3)
    assert photos["skimage:camera"].shape == (512, 512, 3)


def _groups(seed=3, dim=16):
    rng = np.random.default_rng(seed)
    own = rng.normal(0, 1, (300, dim))
    other = rng.normal(0, 1, (300, dim)) + np.r_[2.0, np.zeros(dim - 1)]  # differs along one direction
    own_val = rng.normal(0, 1, (200, dim))
    return own, other, own_val


def test_group_score_accepts_its_group_at_the_chosen_rate_and_refuses_the_other():
    own, other, own_val = _groups()
    group = ood.fit_group_score(own, other, own_val, accept=0.95)
    # The threshold is the 95% quantile of the validation logits: at most 5% of them above 1.
    assert ood.rates(group.scores(own_val)) <= 0.05
    assert ood.rates(group.scores(own_val)) > 0.0  # and it is a quantile, not a loose bound
    assert ood.rates(group.scores(other)) >= 0.6
    # Exactly at the threshold the score is 1.0: accepted (out of scope means strictly above 1).
    at = own_val[[int(np.argmin(np.abs(group.logits(own_val) - group.threshold)))]]
    assert group.scores(at)[0] == pytest.approx(1.0) and ood.rates(group.scores(at)) == 0.0


def test_group_score_inside_the_head_matches_numpy_and_survives_its_state():
    own, other, own_val = _groups()
    group = ood.fit_group_score(own, other, own_val)
    fit = ood.fit_mahalanobis(own, np.zeros(len(own), int), 1, components=8)
    head = ood.InputCheckHead(fit, 1e6, group=group)  # distance term switched off by a huge threshold
    x = torch.tensor(np.concatenate([own_val, other]), dtype=torch.float32)
    with torch.no_grad():
        got = head(x).numpy()
    assert np.allclose(got, np.maximum(group.scores(x.numpy()), fit.distances(x.numpy()) / 1e6), atol=1e-4)
    again = ood.InputCheckHead.from_state(head.state())
    with torch.no_grad():
        assert torch.allclose(again(x), head(x))
    assert ood.input_check_entry(head, 0.99)["method"] == "mahalanobis+scope"
    without = ood.InputCheckHead.from_state(dict(head.state(), group=None))
    assert without.group is None and ood.input_check_entry(without, 0.99)["method"] == "mahalanobis"


def test_group_score_refuses_to_fit_without_negatives():
    own, _other, own_val = _groups()
    with pytest.raises(ConfigError, match="other_group or negatives"):
        ood.fit_group_score(own, own[:0], own_val)
