"""recipes.tail_cv / tail_data / tail_report: the adult tail fine-tuning trial. The real pretrained
EfficientNet-Lite0 (its offline weights) on real NIH X-rays; folds never share a patient; the paired
bootstrap sees a real difference and no difference where there is none; the paediatric TEST split is
never read for pretraining."""

import os

import numpy as np
import pytest
import torch

from recipes import tail_cv
from recipes.tail_cv import AuxLoss, Variant, flip_map, fold_data, paired_difference, prefix
from training.data import Sample

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "shared", "data")
needs_data = pytest.mark.skipif(not os.path.isdir(SHARED),
                                reason="../shared/data is not beside this checkout")
CLASSES = ["Effusion", "Pneumonia", "Pneumothorax", "No Finding"]


def test_aux_loss_is_the_module_loss_plus_weighted_findings_and_validates_on_the_module_loss():
    logits = torch.zeros(2, 4 + 3)
    targets = torch.tensor([[-1.0, 1, 0, 0], [2.0, 0, 0, 1]])
    loss = AuxLoss(4, 0.5)
    assert loss(logits, targets).item() == pytest.approx(np.log(4.0) + 0.5 * np.log(2.0), rel=1e-5)
    assert loss.validation(logits, targets).item() == pytest.approx(np.log(4.0), rel=1e-5)
    assert AuxLoss(4, 0.0).validation(logits, targets).item() == pytest.approx(np.log(4.0), rel=1e-5)
    logits[1, 2] = 5.0
    assert loss.accuracy(logits, targets) == 1.0  # the row without a class is not counted


def test_flip_map_mirrors_about_half_of_the_maps_left_right():
    x = torch.arange(12.0).reshape(1, 3, 4)
    apply = flip_map(torch.Generator().manual_seed(0))
    outcomes = [apply(x) for _ in range(200)]
    flipped = sum(bool(torch.equal(o, torch.flip(x, dims=(-1,)))) for o in outcomes)
    kept = sum(bool(torch.equal(o, x)) for o in outcomes)
    assert flipped + kept == 200 and 70 < flipped < 130


def _parts(patients=40):
    samples = [Sample("f{}.png".format(p), (CLASSES[p % 4],), "p{}".format(p)) for p in range(patients)]
    crops = [Sample("f{}.png".format(p), (CLASSES[p % 4],), "p{}".format(p)) for p in range(0, patients, 2)]
    extra = [Sample("e{}.png".format(i), ("Mass",), "p{}".format(i) if i < 5 else "stranger{}".format(i))
             for i in range(10)]

    def part(rows, tag):
        n = len(rows)
        return (rows, torch.full((n, 1), float(tag)), torch.arange(n), torch.arange(n).float()[:, None])

    return {"chest": part(samples, 0), "crops": part(crops, 1), "extra": part(extra, 2)}


def test_fold_data_keeps_patients_apart_and_tests_only_files():
    parts = _parts()
    folds_of = tail_cv.cv.fold_of_patients(parts["chest"][0], CLASSES, 5, 0)
    tested = []
    for fold in range(5):
        train, val, test = fold_data(parts, folds_of, fold, 5, with_extra=True)
        assert set(test[0].flatten().tolist()) == {0.0}  # files only
        assert 2.0 in set(train[0].flatten().tolist()) and 2.0 not in set(val[0].flatten().tolist())
        test_patients = {parts["chest"][0][i].patient_id for i in test[1].tolist()}
        val_rows = [i for i, s in enumerate(parts["chest"][0]) if folds_of[s.patient_id] == (fold + 1) % 5]
        assert not test_patients & {parts["chest"][0][i].patient_id for i in val_rows}
        # the extra rows of a test patient never train; strangers (no fold) always do
        extra_rows = train[1][train[0].flatten() == 2.0].tolist()
        extra_patients = {parts["extra"][0][i].patient_id for i in extra_rows}
        assert not extra_patients & test_patients
        assert {"stranger{}".format(i) for i in range(5, 10)} <= extra_patients
        tested += [parts["chest"][0][i].path for i in test[1].tolist()]
    assert sorted(tested) == sorted(s.path for s in parts["chest"][0])  # every file tested once


def test_paired_difference_is_zero_for_the_same_scores_and_positive_for_better_ones():
    rng = np.random.RandomState(0)
    files = [Sample("f{}".format(i), (CLASSES[i % 4],), "p{}".format(i // 2)) for i in range(200)]
    truth = np.array([i % 4 for i in range(200)])
    noisy = rng.rand(200, 4)
    same = paired_difference(files, CLASSES, noisy, noisy, draws=50)
    assert all(v == [0.0, 0.0, 0.0] for v in same.values())
    better = noisy + 0.5 * np.eye(4)[truth]
    diff = paired_difference(files, CLASSES, noisy, better, draws=100)
    assert diff["macro"][1] > 0 and diff["macro"][0] > diff["macro"][1]
    worse = paired_difference(files, CLASSES, better, noisy, draws=100)
    assert worse["macro"][2] < 0 and worse["macro"][0] == pytest.approx(-diff["macro"][0], abs=1e-4)


@pytest.fixture(scope="module")
def real():
    from recipes import tail_data
    from recipes.config import ROOT, recipe_for
    from recipes.data import cache_images, resolve_split

    recipe = recipe_for("chest")
    from recipes.tail_cli import chest_description

    description = chest_description()
    net = tail_data.pretrained_net(description)
    _module, split, _info = resolve_split(recipe, SHARED, os.path.join(ROOT, "splits"))
    samples = split.test[:6]
    images = cache_images(samples, description.input)
    return net, tail_data.trunk_of(net, recipe.arch), images


@needs_data
def test_prefix_then_tail_is_the_frozen_network(real):
    from training.registry import Lite0Tail

    net, trunk, images = real
    with torch.no_grad():
        maps = trunk(images.float())
        whole = net.features(images.float())
    assert tuple(maps.shape[1:]) == (192, 7, 7)
    for start in (tail_cv.CUT, 14, 15, 16):
        with torch.no_grad():
            out = Lite0Tail(net, start)(prefix(net, maps, start))
        assert torch.allclose(out, whole, atol=1e-4), start


@needs_data
def test_train_stages_tunes_only_the_tail_and_the_head(real):
    import copy
    from dataclasses import replace

    from recipes.config import recipe_for
    from recipes.tail_cv import _new_head, train_stages

    net0, trunk, images = real
    net = copy.deepcopy(net0)
    net.backbone.head = _new_head(net.num_features, 4, 0)
    with torch.no_grad():
        maps = prefix(net, trunk(images.float()), 15)
    before = copy.deepcopy(net.state_dict())
    recipe = replace(recipe_for("chest"), tune_epochs=3, patience=5, head_epochs=2, tune_lr=1e-4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    train_stages(recipe, net, 15, (maps, y), (maps, y), "multiclass")
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("backbone.head", "backbone.body.model._blocks.15",
                                          "backbone.body.model._conv_head", "backbone.body.model._bn1"))
                           for k in changed)
    assert any(k.startswith("backbone.body.model._blocks.15") for k in changed)
    assert not any(p.requires_grad for p in net.parameters())


@needs_data
def test_pediatric_pretraining_never_reads_its_test_split(monkeypatch):
    from recipes import data as recipe_data
    from recipes.config import ROOT, recipe_for
    from recipes.tail_data import _pediatric_set

    _module, split, _info = recipe_data.resolve_split(recipe_for("pediatric-pneumonia"), SHARED,
                                                      os.path.join(ROOT, "splits"))
    seen = {}

    def spy(samples, spec):
        seen["paths"] = [s.path for s in samples]
        return torch.zeros((0,))

    monkeypatch.setattr(recipe_data, "cache_images", spy)
    out = _pediatric_set(SHARED, None)
    assert seen["paths"] and not set(seen["paths"]) & {s.path for s in split.test}
    assert len(seen["paths"]) == len(split.train) + len(split.val)
    assert out["val_paths"] == {s.path for s in split.val}


def test_unknown_variants_and_too_few_folds_are_refused_by_the_cli(capsys):
    from recipes import tail_cli

    assert tail_cli.main(["--variants", "head,bogus"]) != 0
    assert "bogus" in capsys.readouterr().err
    assert tail_cli.main(["--variants", "head", "--folds", "2"]) != 0
    assert "--folds 2" in capsys.readouterr().err
    assert set(tail_cv.VARIANTS["ped-tail2"].__dict__) == set(Variant().__dict__)


def _record(folder, name, oof, files, variant=None, **recipe_fields):
    from dataclasses import replace
    from types import SimpleNamespace

    from recipes.config import recipe_for
    from recipes.tail_report import store

    recipe = replace(recipe_for("chest"), **recipe_fields)
    result = {"summary": tail_cv.cv.summarise([tail_cv.fold_metrics(oof, np.array(
        [CLASSES.index(s.labels[0]) for s in files]), 4, CLASSES)] * 2, CLASSES),
        "fold_macro_auroc": [0.7, 0.7], "seconds": 1.0, "oof": oof}
    data = SimpleNamespace(recipe=recipe, sets={"chest": (files, None)})
    store(os.path.join(str(folder), name + ".json"), name, variant or Variant(), result, data)


def test_the_report_compares_every_stored_variant_with_the_shipped_head(tmp_path):
    from edge.errors import ConfigError
    from recipes.tail_report import summarise_dir

    rng = np.random.RandomState(1)
    files = [Sample("f{}".format(i), (CLASSES[i % 4],), "p{}".format(i // 2)) for i in range(120)]
    truth = np.array([i % 4 for i in range(120)])
    base = rng.rand(120, 4)
    _record(tmp_path, "tail2", base + 0.4 * np.eye(4)[truth], files, Variant(tune_blocks=2))
    with pytest.raises(ConfigError, match="no head.json"):
        summarise_dir(str(tmp_path), CLASSES, files, draws=20)
    _record(tmp_path, "head", base, files)
    summary = summarise_dir(str(tmp_path), CLASSES, files, draws=50)
    assert set(summary["variants"]) == {"head", "tail2"} and list(summary["differences"]) == ["tail2"]
    assert summary["differences"]["tail2"]["macro"][1] > 0
    text = (tmp_path / "summary.md").read_text()
    assert "| tail2 |" in text and "Paired difference" in text
    with pytest.raises(ConfigError, match="other images"):
        summarise_dir(str(tmp_path), CLASSES, files[::-1], draws=20)


def test_the_recipe_reads_only_its_own_stored_cross_validation(tmp_path):
    from dataclasses import replace

    from recipes.config import recipe_for
    from recipes.tail_recipe import applies, stored_result, variant_of

    files = [Sample("f{}".format(i), (CLASSES[i % 4],), "p{}".format(i)) for i in range(40)]
    oof = np.random.RandomState(0).rand(40, 4)
    recipe = replace(recipe_for("chest"), tune_blocks=2)
    _record(tmp_path, "tail2", oof, files, variant_of(recipe), tune_blocks=2)
    _record(tmp_path, "other", oof, files, replace(variant_of(recipe), keep_last=not recipe.tune_keep_last),
            tune_blocks=2)
    assert applies(recipe) and not applies(replace(recipe, tune_blocks=0))
    assert not applies(replace(recipe, tune_blocks=5)) and not applies(replace(recipe, arch="resnet18"))
    assert stored_result(recipe, str(tmp_path))["variant"] == "tail2"
    assert stored_result(replace(recipe, tune_lr=1e-5), str(tmp_path)) is None
    assert stored_result(replace(recipe, tune_blocks=1), str(tmp_path)) is None
    other_pretraining = "" if recipe.tail_pretrain else "pediatric"
    assert stored_result(replace(recipe, tail_pretrain=other_pretraining), str(tmp_path)) is None
    flipped = replace(recipe, tune_keep_last=not recipe.tune_keep_last)
    assert stored_result(flipped, str(tmp_path))["variant"] == "other"
    assert stored_result(recipe, str(tmp_path / "missing")) is None


def test_feature_maps_and_pretrained_tails_are_kept_per_input_normalisation(monkeypatch, tmp_path):
    """A tail trial with ``--contrast`` never reads maps, a pretrained tail or a CV record made for another
    normalisation; the records and files made before the field (contrast none) still match."""
    from dataclasses import replace
    from types import SimpleNamespace

    from edge.errors import ConfigError
    from recipes import tail_data, tail_recipe
    from recipes.config import recipe_for
    from recipes.tail_report import recipe_fields

    made = []
    monkeypatch.setattr(tail_data, "EmbeddingCache", made.append)
    plain, stretch = recipe_for("chest"), recipe_for("chest", contrast="stretch")
    tail_data.feature_cache(plain)
    tail_data.feature_cache(stretch)
    assert made[0].endswith("efficientnet_lite0-224-imagenet-block12")  # the folder made before the field
    assert made[1].endswith("efficientnet_lite0-224-imagenet-block12-contrast-stretch")
    assert "contrast" not in recipe_fields(plain) and recipe_fields(stretch)["contrast"] == "stretch"
    assert tail_recipe.pretrained_store(plain) == tail_recipe.PRETRAINED
    assert tail_recipe.pretrained_store(stretch).endswith("pretrained-tail-contrast-stretch.pt")

    store = str(tmp_path / "pretrained-tail.pt")
    settings = [tail_cv.PRETRAIN_BLOCKS, tail_cv.PRETRAIN_EPOCHS, tail_cv.PRETRAIN_LR, plain.seed, "last"]
    torch.save({"settings": settings, "body": {"kept": 1}, "seconds": 3.0}, store)
    # Not read: it would train, and these labels stop it at once.
    data = SimpleNamespace(sets={"pediatric": ([Sample("x", ("CAT",), "p")], None)})
    assert tail_cv.pretrain_pediatric(data, plain, store=store) == ({"kept": 1}, 3.0)
    with pytest.raises(ConfigError, match="paediatric labels"):
        tail_cv.pretrain_pediatric(data, stretch, store=store)
    torch.save({"settings": settings + ["stretch"], "body": {"kept": 2}, "seconds": 4.0}, store)
    assert tail_cv.pretrain_pediatric(data, stretch, store=store) == ({"kept": 2}, 4.0)
    with pytest.raises(ConfigError, match="paediatric labels"):
        tail_cv.pretrain_pediatric(data, replace(stretch, contrast="equalize"), store=store)


def test_a_stored_cross_validation_is_read_only_for_its_own_normalisation(tmp_path):
    from dataclasses import replace

    from recipes.config import recipe_for
    from recipes.tail_recipe import stored_result, variant_of

    files = [Sample("f{}".format(i), (CLASSES[i % 4],), "p{}".format(i)) for i in range(40)]
    oof = np.random.RandomState(0).rand(40, 4)
    recipe = replace(recipe_for("chest"), tune_blocks=2)
    name = "tail2-contrast-stretch"
    _record(tmp_path, name, oof, files, variant_of(recipe), tune_blocks=2, contrast="stretch")
    assert stored_result(recipe, str(tmp_path)) is None
    assert stored_result(replace(recipe, contrast="stretch"), str(tmp_path))["variant"] == name
    _record(tmp_path, "tail2", oof, files, variant_of(recipe), tune_blocks=2)
    assert stored_result(recipe, str(tmp_path))["variant"] == "tail2"
    assert stored_result(replace(recipe, contrast="equalize"), str(tmp_path)) is None


def test_the_dicom_change_pairs_each_stretched_image_with_its_own_file():
    files = [Sample("f{}".format(i), (CLASSES[i % 4],), "p{}".format(i)) for i in range(6)]
    oof = np.tile(np.arange(6)[:, None] / 10.0, (1, 4))
    stretched = [files[4], files[1]]
    change = tail_cv.dicom_change(files, stretched, CLASSES, oof, oof[[4, 1]] + [[0.0, 0.0, 0.0, 0.03]] * 2)
    assert change["per_class"]["No Finding"] == {"mean": 0.03, "max": 0.03}
    assert change["per_class"]["Effusion"]["max"] == 0.0 and change["over_tolerance"] == 1.0


def test_the_cli_refuses_an_unknown_normalisation():
    from recipes import tail_cli

    with pytest.raises(SystemExit):
        tail_cli.build_parser().parse_args(["--contrast", "gamma"])
    assert tail_cli.build_parser().parse_args(["--contrast", "stretch"]).contrast == "stretch"
    assert tail_cli.chest_description("stretch").input.contrast == "stretch"
    assert tail_cli.chest_description().input.contrast == "none"


def test_a_variant_run_with_another_normalisation_is_stored_under_its_own_names(monkeypatch, tmp_path):
    """tail_cli end to end with the data, the pretraining and the CV replaced by records of their calls:
    ``--contrast stretch --dicom`` loads the stretched set, keeps its pretrained tail and its record apart
    and compares it with the stored head."""
    import json
    from types import SimpleNamespace

    from recipes import tail_cli, tail_data
    from recipes.config import recipe_for

    files = [Sample("f{}".format(i), (CLASSES[i % 4],), "p{}".format(i // 2)) for i in range(40)]
    oof = np.random.RandomState(0).rand(40, 4)
    calls = {}

    def load(description, sets, data_root, threads):
        calls["sets"], calls["contrast"] = tuple(sets), description.input.contrast
        return SimpleNamespace(recipe=recipe_for("chest", contrast=description.input.contrast),
                               description=description, sets={"chest": (files, None)})

    def pretrain(data, recipe, store=None):
        calls["pretrained"] = store
        return {}, 1.0

    def run_variant(data, variant, classes, body=None):
        summary = tail_cv.cv.summarise([tail_cv.fold_metrics(oof, np.array([i % 4 for i in range(40)]), 4,
                                                             CLASSES)] * 2, CLASSES)
        return {"summary": summary, "fold_macro_auroc": [0.7, 0.7], "seconds": 1.0, "oof": oof,
                "dicom_stretch": {"over_tolerance": 0.25}}

    monkeypatch.setattr(tail_data, "load", load)
    monkeypatch.setattr(tail_cv, "pretrain_pediatric", pretrain)
    monkeypatch.setattr(tail_cv, "run_variant", run_variant)
    _record(tmp_path, "head", oof, files)
    argv = ["--variants", "ped-tail2-last", "--tune-lr", "5e-5", "--contrast", "stretch", "--dicom",
            "--out", str(tmp_path), "--draws", "10"]
    assert tail_cli.main(argv) == 0
    assert calls["contrast"] == "stretch" and calls["sets"][-1] == "dicom"
    assert calls["pretrained"] == str(tmp_path / "pretrained-tail-contrast-stretch.pt")
    with open(str(tmp_path / "ped-tail2-last-lr5e-05-contrast-stretch.json"), encoding="utf-8") as handle:
        record = json.load(handle)
    assert record["recipe"]["contrast"] == "stretch" and record["dicom_stretch"] == {"over_tolerance": 0.25}
    assert tail_cli.main(argv[:4] + ["--out", str(tmp_path), "--draws", "10"]) == 0  # the recipe's own
    assert calls["contrast"] == "none" and "dicom" not in calls["sets"]
    assert calls["pretrained"] == str(tmp_path / "pretrained-tail.pt")
    assert (tmp_path / "ped-tail2-last-lr5e-05.json").exists()
