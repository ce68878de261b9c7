"""recipes.operating_point: the CV-chosen threshold, its rates at the boundary, the logit offset that makes
the kiosk's top-1 rule apply it, the out-of-fold scores, the refusals and the card section."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from edge.errors import ConfigError
from recipes import operating_point as op
from recipes.config import recipe_for
from training.data import Sample


def test_threshold_reaches_the_target_at_its_boundary_and_not_below():
    negatives = np.arange(1, 21) / 21.0  # 20 negatives, distinct scores
    positives = np.full(5, 0.99)
    scores = np.concatenate([negatives, positives])
    positive = np.concatenate([np.zeros(20, bool), np.ones(5, bool)])
    threshold = op.threshold_for(scores, positive, 0.9)  # 18 of 20 negatives must fall below
    assert negatives[17] < threshold < negatives[18]
    assert op.rates(scores, positive, threshold) == (1.0, 0.9)
    # One negative more above it (the 18th's score as threshold) and the target is missed.
    assert op.rates(scores, positive, negatives[17])[1] == pytest.approx(0.85)
    assert op.threshold_for(scores, positive, 1.0) > negatives[-1]


def test_offset_refuses_a_head_without_a_linear_bias():
    with pytest.raises(ConfigError, match="no linear layer with a bias.*Fix"):
        op.offset_head(torch.nn.Sequential(torch.nn.Linear(4, 2, bias=False)), 1, 0.8, 1.0)


def test_threshold_refuses_a_set_without_negatives():
    with pytest.raises(ConfigError, match="no negative cases.*Fix"):
        op.threshold_for(np.array([0.3, 0.8]), np.array([True, True]), 0.95)


def test_logit_offset_makes_top1_the_threshold_and_matches_shifted_probabilities():
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(16, 2)).eval()  # as the zoo's heads
    embeddings = torch.randn(400, 16) * 2
    temperature, threshold = 1.3, 0.8
    with torch.no_grad():
        before = torch.softmax(head(embeddings) / temperature, dim=1).numpy()
    op.offset_head(head, 1, threshold, temperature)
    with torch.no_grad():
        after = torch.softmax(head(embeddings) / temperature, dim=1).numpy()
    assert np.array_equal(after.argmax(1) == 1, before[:, 1] >= threshold)
    assert ((before[:, 1] >= 0.5) & (before[:, 1] < threshold)).sum() > 10  # cases the offset re-decides
    np.testing.assert_allclose(op.shifted(before, 1, threshold), after, atol=1e-5)


def _oof_data(n_patients=80):
    classes = ["Normal", "Pneumonia"]
    samples = [Sample("p{}-{}.png".format(p, i), (classes[int(p % 3 != 0)],), "p{}".format(p))
               for p in range(n_patients) for i in range(2)]
    rng = np.random.default_rng(1)
    y = torch.tensor([classes.index(s.labels[0]) for s in samples])
    x = torch.tensor(rng.normal(0, 1, (len(samples), 8)), dtype=torch.float32) + 1.5 * y[:, None].float()
    return (samples, x, y), classes


def test_out_of_fold_scores_every_file_once_and_leaves_the_head_as_it_was():
    files, classes = _oof_data()
    recipe = recipe_for("pediatric-pneumonia", head_epochs=30, head_lr=0.05, cv_folds=5)
    head = torch.nn.Linear(8, 2)
    initial = {k: v.clone() for k, v in head.state_dict().items()}
    shipped = {k: v.clone() + 1.0 for k, v in initial.items()}
    head.load_state_dict(shipped)
    probs, targets, fold, again = op.out_of_fold(recipe, head, initial, files, None, classes, "multiclass",
                                                 also=(files[0][::7], files[1][::7]))
    np.testing.assert_allclose(again, probs[::7], atol=1e-6)  # each scored by its own patient's fold model
    assert probs.shape == (160, 2) and np.allclose(probs.sum(1), 1.0)
    assert set(fold.tolist()) == set(range(5))
    for patient in {s.patient_id for s in files[0]}:  # a patient's images share one fold
        assert len({int(f) for s, f in zip(files[0], fold) if s.patient_id == patient}) == 1
    assert ((probs[:, 1] >= 0.5) == (targets == 1)).mean() > 0.7  # learnt, not chance
    assert all(torch.equal(head.state_dict()[k], shipped[k]) for k in shipped)
    record = op.summarise(probs, targets, fold, 1, 0.95, (0.743, 0.625))
    assert record["pooled"]["specificity"] >= 0.95
    assert record["pooled"]["sensitivity"] <= record["top1_pooled"]["sensitivity"] + 1e-9
    assert len(record["sensitivity"]["folds"]) == 5 and len(record["nested_specificity"]["folds"]) == 5
    mix = record["class_mix"][1]
    assert mix["negative_share"] == pytest.approx(0.375)
    assert mix["accuracy"] == pytest.approx(0.625 * record["pooled"]["sensitivity"]
                                            + 0.375 * record["pooled"]["specificity"])
    lines = op.card_lines({"operating_point": dict(record, **{
        "class": "Pneumonia", "sweep": op.sweep(probs, targets, 1), "ece_cv_top1": record["ece_cv"],
        "abstain_threshold_before": 0.8, "abstain_threshold": 0.7})})
    text = "\n".join(lines)
    assert "{:.3f}**".format(record["threshold"]) in text and "| 37.5% |" in text and "nested" in text


def test_apply_refuses_a_class_the_module_lacks_and_card_is_empty_without_a_point():
    run = SimpleNamespace(recipe=SimpleNamespace(operating_point=("Effusion", 0.95)), classes=["Normal",
                          "Pneumonia"], task="multiclass", module=SimpleNamespace(id="pediatric-pneumonia"))
    with pytest.raises(ConfigError, match="'Effusion'.*Fix: name one of its classes"):
        op.apply(run, None, {})
    assert op.card_lines({}) == []


def test_the_child_recipe_asks_for_a_specificity_margin_over_the_goal():
    name, target = recipe_for("pediatric-pneumonia").operating_point
    assert name == "Pneumonia" and target > 0.9
    assert recipe_for("pediatric-pneumonia").train_limit is None  # all train images
    assert recipe_for("chest").operating_point == ()
