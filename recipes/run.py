"""A recipe end to end: data -> cached trunk outputs -> stage 1 -> stage 2 -> calibration and input
check -> test metrics -> checkpoint -> bundle (``export``) -> report and model card -> cross-check."""

import copy
import json
import os
import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from edge.description import InputSpec, ModelDescription
from edge.errors import ConfigError
from export.onnx_export import ExportSource, export_bundle
from recipes import cv, evaluation, operating_point, photo_data, tail_recipe
from recipes.card import write_model_card
from recipes.config import DEFAULT_DATA_ROOT, ROOT, log
from recipes.data import cache_images, counts_of, limit_samples, resolve_split, targets_of
from recipes.report import write_report
from recipes.stages import fine_tune, run_module, train_head
from training import ood
from training.augment import build_transform
from training.checkpoint import build_net, make_checkpoint, save_checkpoint
from training.evaluate import evaluate_samples
from training.nets import DeployModel, default_normalisation
from training.registry import check_image_size, split_network

GOLDEN_IMAGES = 16


@dataclass
class RunResult:
    run_dir: str
    checkpoint: str
    metrics: dict
    bundle: Optional[str] = None
    report: Optional[str] = None
    timings: dict = field(default_factory=dict)
    cross_check: Optional[dict] = None


class RunRecord(object):
    """What one run has found so far (filled in stage by stage)."""

    def __init__(self, recipe, run_dir, module, split, split_info, parts):
        self.recipe, self.run_dir, self.module = recipe, run_dir, module
        self.split, self.split_info, self.parts = split, split_info, parts
        self.task, self.classes = module.task, list(module.classes)
        self.timings, self.history, self.metrics = {}, {}, {}
        self.started = time.time()
        self.description = build_description(recipe, module)
        self.counts = split.counts() if not recipe.limit_per_class else counts_of(parts)

    def lap(self, key, since):
        self.timings[key] = round(time.time() - since, 1)
        return self.timings[key]


def build_description(recipe, module):
    mean, std = default_normalisation(module.colour)
    return ModelDescription(
        arch=recipe.arch,
        task=module.task,
        classes=list(module.classes),
        input_spec=InputSpec(recipe.image_size, recipe.image_size, colour=module.colour,
                             contrast=recipe.contrast),
        mean=mean,
        std=std,
        display_names=list(module.display_names),
        extra={"module": module.id, "trained_with": "recipes"},
    )


def _prepare(recipe, out, data_root, split_dir):
    run_dir = os.path.abspath(out)
    os.makedirs(run_dir, exist_ok=True)
    module, split, split_info = resolve_split(recipe, data_root, split_dir or os.path.join(ROOT, "splits"))
    parts = {name: limit_samples(samples, recipe.limit_per_class) for name, samples in split.parts()}
    if recipe.train_limit:
        parts["train"] = photo_data.train_subset(recipe, split)
    run = RunRecord(recipe, run_dir, module, split, split_info, parts)
    run.data_root = data_root
    log("{}: train {} / val {} / test {} images ({} patients in all)".format(
        module.id, len(parts["train"]), len(parts["val"]), len(parts["test"]),
        len({s.patient_id for p in parts.values() for s in p})))
    spec = run.description.input
    run.images = {name: cache_images(samples, spec) for name, samples in parts.items()}
    run.targets = {name: targets_of(samples, run.classes, run.task) for name, samples in parts.items()}
    run.samples = dict(parts)
    add_extra_images(run, data_root, spec)
    run.lap("load_images_s", run.started)
    return run


def add_extra_images(run, data_root, spec):
    """Photographed TRAIN/VAL crops (``<part>_photo``), the other patient group's X-rays
    (``other_<part>``) and generated non-X-rays (``negatives``), as the recipe asks."""
    recipe = run.recipe
    if recipe.photo_renders and not recipe.limit_per_class:
        for part in ("train", "val"):
            samples, images = photo_data.photo_part(recipe, run.split, part, spec)
            run.images[part + "_photo"], run.samples[part + "_photo"] = images, samples
            run.targets[part + "_photo"] = targets_of(samples, run.classes, run.task)
        log("photographed crops: train {} / val {}".format(len(run.images["train_photo"]),
                                                           len(run.images["val_photo"])))
    if recipe.other_group:
        for part in ("train", "val", "test"):
            _samples, run.images["other_" + part] = photo_data.other_group(
                recipe, data_root, spec, part,
                limit=2 * recipe.limit_per_class if recipe.limit_per_class else None)
        log("other patient group ({}): train {} / val {} / test {}".format(recipe.other_group, *(
            len(run.images["other_" + p]) for p in ("train", "val", "test"))))
    if recipe.negatives:
        run.negative_names, run.images["negatives"] = photo_data.negatives(spec)


def merged(values, part):
    """``part`` and its photographed crops (``<part>_photo``) in one tensor."""
    extra = values.get(part + "_photo")
    return values[part] if extra is None else torch.cat([values[part], extra])


def own(values):
    return {part: merged(values, part) for part in ("train", "val")}


def _train(run, net, trunk, tail):
    """Cache the trunk's outputs, then stage 1 (pretrained networks only) and stage 2."""
    recipe, task = run.recipe, run.task
    mark = time.time()
    if recipe.tune_blocks == 0:  # the frozen network's embeddings: shared cache, computed once
        cache = photo_data.embedding_cache(recipe)
        cached = {name: cache.embed(trunk, x, log=log) for name, x in run.images.items()}
    elif tail_recipe.applies(recipe):  # the last blocks' input maps: shared cache, computed once
        cached = tail_recipe.trunk_outputs(recipe, net, run.images, run.description.input)
        run.timings["tail_pretrain_s"] = tail_recipe.pretrain(recipe, net, run.description, run.data_root)
    else:
        cached = {name: run_module(trunk, x, batch_size=32) for name, x in run.images.items()}
    log("trunk outputs cached in {:.0f}s: {}".format(run.lap("trunk_features_s", mark),
                                                     tuple(cached["train"].shape[1:])))
    head = net.backbone.head
    if recipe.pretrained:  # a network trained from scratch has no meaningful frozen embedding
        mark = time.time()
        with torch.no_grad():
            emb = {name: run_module(tail, x, batch_size=64) for name, x in cached.items()}
        run.initial_head = copy.deepcopy(head.state_dict())
        run.history["head"] = train_head(recipe, head, own(emb), own(run.targets), task)
        run.lap("stage1_s", mark)
        with torch.no_grad():
            stage1 = evaluation.classification_metrics(evaluation.probs_of(head(emb["test"]), task),
                                                       run.targets["test"].numpy(), run.classes, task)
        run.history["stage1_test"] = {k: stage1[k] for k in ("accuracy", "macro_auroc") if k in stage1}
    mark = time.time()
    augment = build_transform(run.module.augmentation, run.description.input) if recipe.augment else None
    tune = fine_tune(recipe, net, tail, own(cached), own(run.targets), task, augment, recipe.tune_keep_last)
    if tune is not None:
        run.history["tune"] = tune
        run.lap("stage2_s", mark)
    for p in net.parameters():
        p.requires_grad_(False)
    net.eval()
    return cached


def _calibrate(run, net, tail, cached):
    """Temperature, abstain threshold and the input check on validation; returns (outputs, ood head)."""
    outputs = {}
    with torch.no_grad():
        for name, x in cached.items():
            emb = run_module(tail, x, batch_size=64)
            outputs[name] = (emb, net.backbone.head(emb))
    temperature, calibration, threshold = evaluation.calibrate(
        run.recipe, merged({k: v[1] for k, v in outputs.items()}, "val"), merged(run.targets, "val"),
        run.task)
    ood_head, thresholds = evaluation.fit_input_check(
        run.recipe, own({k: v[0] for k, v in outputs.items()}), own(run.targets), own(run.images), run.task,
        len(run.classes), negatives=[outputs[k][0] for k in ("other_train", "negatives") if k in outputs],
        val_groups=[outputs[k][0] for k in ("val", "val_photo") if k in outputs])
    torch.save({name: {"embeddings": outputs[name][0], "targets": run.targets.get(name)} for name in outputs},
               os.path.join(run.run_dir, "embeddings.pt"))
    run.description = run.description.replace(
        temperature=temperature, abstain_threshold=threshold,
        input_check=ood.input_check_entry(ood_head, run.recipe.ood_accept, evaluation.NOT_AN_XRAY))
    run.metrics["calibration_val"] = calibration
    run.thresholds = thresholds
    return outputs, ood_head


def _test(run, net, outputs, deploy, ood_head, with_skimage):
    """Test-split metrics, the input check's rates and the network's cost; returns the test arrays."""
    task, targets = run.task, run.targets["test"].numpy()
    probs_before = evaluation.probs_of(outputs["test"][1], task)
    probs = evaluation.probs_of(outputs["test"][1], task, run.description.temperature)
    metrics = evaluation.classification_metrics(probs, targets, run.classes, task,
                                                run.description.abstain_threshold)
    metrics["ece_before_temperature"] = evaluation.classification_metrics(
        probs_before, targets, run.classes, task)["ece"]
    metrics["calibration_val"] = run.metrics["calibration_val"]
    metrics["stage1_test"] = run.history.get("stage1_test")
    check = evaluation.measure_input_check(deploy, ood_head, outputs["test"][0], run.images["test"],
                                           run.description, with_skimage)
    check.update(run.thresholds)
    check.update(evaluation.scope_rates(ood_head, outputs, run.images))
    metrics["input_check"] = check
    run.lap("total_train_s", run.started)
    metrics["cost"] = evaluation.cost_of(net, run.description.input)
    run.metrics = metrics
    log("test: {}".format(evaluation.headline(metrics)))
    return probs_before, probs, targets


def _cross_validate(run, net, outputs):
    """k-fold CV by patient of the head recipe (with and without photographed crops) and the
    calibration display decision from the CV ECE (``manifest["calibration"]``)."""
    mark = time.time()
    files = (run.samples["train"] + run.samples["val"] + run.samples["test"],
             torch.cat([outputs[p][0] for p in ("train", "val", "test")]),
             torch.cat([run.targets[p] for p in ("train", "val", "test")]))
    photos = None
    if "train_photo" in outputs:
        photos = (run.samples["train_photo"] + run.samples["val_photo"],
                  torch.cat([outputs[p][0] for p in ("train_photo", "val_photo")]),
                  torch.cat([run.targets[p] for p in ("train_photo", "val_photo")]))
    head = net.backbone.head
    if tail_recipe.applies(run.recipe):  # the tail is re-tuned in every fold (recipes.tail_recipe)
        results = {"shipped_recipe": tail_recipe.cross_validate(run.recipe, run.description, run.data_root)}
    else:
        results = {"shipped_recipe": cv.cross_validate(run.recipe, head, run.initial_head, files, photos,
                                                       run.classes, run.task, with_photos=True)}
    if photos is not None and not tail_recipe.applies(run.recipe):
        results["files_only"] = cv.cross_validate(run.recipe, head, run.initial_head, files, photos,
                                                  run.classes, run.task, with_photos=False)
    ece = results["shipped_recipe"]["summary"]["ece"]
    run.metrics["cv"] = results
    run.metrics["module"] = run.module.id
    run.metrics["calibration_display"] = {
        "ece_cv": ece["mean"], "ece_cv_ci95": [max(0.0, ece["ci95"][0]), min(1.0, ece["ci95"][1])],
        "display": cv.display_decision(ece["mean"]),
        "rule": "percent only where the {}-fold patient-level cross-validated ECE (after temperature "
                "scaling) is <= 0.05".format(run.recipe.cv_folds)}
    run.lap("cv_s", mark)
    log("CV ECE {:.3f} [{:.3f}, {:.3f}] -> display {}".format(ece["mean"], ece["ci95"][0], ece["ci95"][1],
                                                              run.metrics["calibration_display"]["display"]))


def add_manifest_section(bundle_dir, name, section):
    """Add ``section`` to the bundle's manifest.json as ``name`` and sign the bundle again (the
    maintainer key from $MEDKIOSK_SIGNING_KEY; unsigned bundles stay unsigned)."""
    from edge.bundle_files import write_json_atomic
    from edge.signing import sign_bundle, signing_key_from_env

    path = os.path.join(bundle_dir, "manifest.json")
    with open(path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    manifest[name] = evaluation.to_json(section)
    write_json_atomic(path, manifest)
    key = signing_key_from_env()
    if key:
        sign_bundle(bundle_dir, key)


def _checkpoint(run, net, ood_head):
    recipe, split, parts = run.recipe, run.split, run.parts
    data = make_checkpoint(
        net, run.description, len(run.history.get("tune", [])), run.metrics["calibration_val"]["nll_after"],
        module={"id": run.module.id, "title": run.module.title},
        training={
            "data": {"split": split.counts(), "split_file": run.split_info["split_file"],
                     "patients": len({s.patient_id for p in parts.values() for s in p}),
                     "source": recipe.data, "samples": split.meta.get("samples")},
            "metrics": {"test": evaluation.brief(run.metrics), "calibration": run.metrics["calibration_val"]},
            "attribution": list(recipe.attribution),
            "recipe": recipe.to_dict(),
        },
        config=recipe.to_dict(),
    )
    data["ood_head"] = ood_head.state()
    data["history"] = run.history
    # All of them: export measures their sharpness for the bundle's blur threshold (parity uses 16).
    data["splits"] = {"val": [s.path for s in parts["val"]]}
    return data, save_checkpoint(os.path.join(run.run_dir, "best.pt"), data)


def export(deploy, description, data, checkpoint, test_samples, classes, module, out_dir, version,
           heatmap=False):
    """The bundle: export_bundle with golden images drawn from the test split, one per class first."""
    by_class = {c: [s.path for s in test_samples if s.labels[0] == c] for c in classes}
    samples = []
    for index in range(GOLDEN_IMAGES):
        for c in classes:
            if index < len(by_class[c]) and len(samples) < GOLDEN_IMAGES:
                samples.append(by_class[c][index])
    source = ExportSource(deploy, description, data, checkpoint)
    return export_bundle(
        source, out_dir, sample_images=samples, module_id=module.id, title=module.title, version=version,
        heatmap=heatmap)


def cross_check(checkpoint, samples, out_dir):
    """Re-evaluate the saved checkpoint with ``training.evaluate`` (image files -> full network), an
    independent check of the cached-feature pipeline's numbers; returns its headline metrics."""
    metrics = evaluate_samples(checkpoint, samples, out_dir, source="test split (recipe cross-check)").metrics
    keep = ("accuracy", "macro_auroc", "ece_before", "ece_after")
    return {k: metrics.get(k) for k in keep if k in metrics}


def _publish(run, result, deploy, data, test, models_dir, docs_dir):
    """Bundle (when ``models_dir``), report, metrics.json, model card and the cross-check."""
    recipe, module = run.recipe, run.module
    if models_dir:
        mark = time.time()
        result.bundle = export(deploy, run.description, data, result.checkpoint, run.parts["test"],
                               run.classes, module, os.path.join(models_dir, module.id), recipe.version,
                               heatmap=recipe.heatmap)
        if "calibration_display" in run.metrics:
            add_manifest_section(result.bundle, "calibration", run.metrics["calibration_display"])
        run.lap("export_s", mark)
    report_dir = docs_dir or os.path.join(run.run_dir, "report")
    result.report = write_report(report_dir, run, test)
    with open(os.path.join(run.run_dir, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(evaluation.to_json(dict(run.metrics, timings=run.timings, history=run.history)), handle,
                  indent=1)
    if result.bundle:
        write_model_card(result.bundle, recipe, module, {
            "metrics": run.metrics, "timings": run.timings, "history": run.history,
            "counts": run.split.counts(), "split_info": run.split_info})
    if recipe.cross_check:
        result.cross_check = cross_check(result.checkpoint, run.parts["test"],
                                         os.path.join(report_dir, "medkiosk-evaluate"))


def train_recipe(recipe, out, data_root=DEFAULT_DATA_ROOT, split_dir=None, models_dir=None, docs_dir=None,
                 with_skimage=True, threads=2):
    """Run a recipe end to end; return RunResult. ``models_dir``/``docs_dir`` None: nothing installed."""
    torch.set_num_threads(threads)
    torch.manual_seed(recipe.seed)
    check_image_size(recipe.arch, recipe.image_size)
    if recipe.augment and recipe.tune_blocks >= 0:
        raise ConfigError("augmentation needs the whole network trained on raw pixels. Fix: tune_blocks -1")
    run = _prepare(recipe, out, data_root, split_dir)
    net = build_net(run.description, pretrained=recipe.pretrained)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    trunk, tail = split_network(net, recipe.arch, recipe.tune_blocks)
    cached = _train(run, net, trunk, tail)
    outputs, ood_head = _calibrate(run, net, tail, cached)
    point = operating_point.apply(run, net, outputs) if run.recipe.operating_point else None
    deploy = DeployModel(net, run.description, ood_head=ood_head).eval()
    test = _test(run, net, outputs, deploy, ood_head, with_skimage)
    if run.recipe.cv_folds and hasattr(run, "initial_head"):
        _cross_validate(run, net, outputs)
    if point is not None:
        operating_point.finish(run, point)
    data, checkpoint = _checkpoint(run, net, ood_head)
    result = RunResult(run.run_dir, checkpoint, run.metrics, timings=run.timings)
    _publish(run, result, deploy, data, test, models_dir, docs_dir)
    return result
