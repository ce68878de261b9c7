"""Issue 13 item 1 on CPU: fine-tune the last EfficientNet-Lite0 blocks of the chest module, on cached
feature maps (``recipes.tail_data``), cross-validated against the shipped head on the SAME folds.

A ``Variant`` says what trains: ``tune_blocks`` 0 is the shipped recipe (a head on the frozen network:
stage 1 of ``recipes.stages``); k > 0 adds stage 2 (``stages.fine_tune``: the last k blocks, the 1x1
head convolution and the head, BatchNorm statistics frozen, early stopping on the validation fold).
``pretrain`` "pediatric" first fine-tunes the same k blocks on the paediatric module's TRAIN + VAL
files (Normal vs Pneumonia; early stopping on its VAL split; its TEST split is never read), then the
adult folds start from those blocks. ``aux_weight`` > 0 adds the 14 NIH findings as auxiliary
sigmoid outputs (the dropped NIH images join as training rows of their patients' folds): the tuned
blocks are shared, so the auxiliary targets can change the module's outputs. ``flip`` mirrors each
training feature map left-right with probability 1/2.

Folds: ``recipes.cv.fold_of_patients`` over the module's files in split order (the shipped CV's).
Fold i tests, fold i + 1 validates (early stopping, temperature), the rest train; the photographed
crops of TRAIN/VAL split images join their patient's fold. Every variant's out-of-fold probabilities
are kept, so differences are paired: a patient-level bootstrap of the pooled out-of-fold AUROCs.
"""

import copy
import os
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edge.errors import ConfigError
from recipes import cv
from recipes.config import log
from recipes.evaluation import probs_of
from recipes.stages import fine_tune, run_module, train_head
from recipes.tail_data import CUT
from training.calibration import fit_temperature
from training.metrics import expected_calibration_error, rank_auroc
from training.registry import Lite0Tail

BLOCKS = 16  # EfficientNet-Lite0's MBConv blocks


@dataclass(frozen=True)
class Variant:
    """One recipe variant of the trial (see the module's docstring)."""

    tune_blocks: int = 0
    pretrain: str = ""
    aux_weight: float = 0.0
    flip: bool = False
    keep_last: bool = False  # stage 2 runs all its epochs and keeps the last state (no early stopping)


VARIANTS = {
    "head": Variant(),
    "tail1": Variant(tune_blocks=1),
    "tail2": Variant(tune_blocks=2),
    "tail4": Variant(tune_blocks=4),
    "tail2-flip": Variant(tune_blocks=2, flip=True),
    "tail2-last": Variant(tune_blocks=2, keep_last=True),
    "tail1-last": Variant(tune_blocks=1, keep_last=True),
    "tail2-last-flip": Variant(tune_blocks=2, keep_last=True, flip=True),
    "ped-tail2-last": Variant(tune_blocks=2, pretrain="pediatric", keep_last=True),
    "ped-tail2-last-aux": Variant(tune_blocks=2, pretrain="pediatric", aux_weight=0.5, keep_last=True),
    "ped-tail2-last-flip": Variant(tune_blocks=2, pretrain="pediatric", flip=True, keep_last=True),
    "tail2-aux": Variant(tune_blocks=2, aux_weight=0.5),
    "ped-head": Variant(pretrain="pediatric"),
    "ped-tail2": Variant(tune_blocks=2, pretrain="pediatric"),
    "ped-tail2-aux": Variant(tune_blocks=2, pretrain="pediatric", aux_weight=0.5),
}
PRETRAIN_BLOCKS = 2  # blocks tuned on the paediatric images (a "ped-" variant's pretrained tail)
PRETRAIN_LR = 5e-5  # at 3e-4 the first paediatric epoch doubled its validation loss (0.073 -> 0.143)
PRETRAIN_EPOCHS = 2  # a fixed schedule, last state kept (one epoch over 3,650 maps: 8 minutes here)


class AuxLoss(object):
    """Cross-entropy on the module's classes (rows with a class; target column 0) + ``weight`` x binary
    cross-entropy on the auxiliary findings (columns 1..L, every row). Validation: the module's loss."""

    def __init__(self, classes, weight):
        self.classes, self.weight = int(classes), float(weight)
        self.validation = self if not weight else AuxLoss(classes, 0.0)

    def __call__(self, logits, targets):
        main = targets[:, 0].long()
        has = main >= 0
        loss = F.cross_entropy(logits[has, :self.classes], main[has]) if bool(has.any()) else logits.sum() * 0
        if self.weight:
            loss = loss + self.weight * F.binary_cross_entropy_with_logits(logits[:, self.classes:],
                                                                           targets[:, 1:])
        return loss

    def accuracy(self, logits, targets):
        main = targets[:, 0].long()
        has = main >= 0
        return float((logits[has, :self.classes].argmax(1) == main[has]).float().mean()) if bool(has.any()) \
            else float("nan")


def flip_map(generator):
    """Feature-map augmentation: mirror left-right with probability 1/2 (one draw per map)."""
    def apply(x):
        return torch.flip(x, dims=(-1,)) if bool(torch.rand(1, generator=generator) < 0.5) else x
    return apply


def prefix(net, maps, start):
    """The frozen blocks ``CUT .. start - 1`` applied once to cached maps (no grad)."""
    model = net.backbone.body.model

    def forward(x):
        for idx in range(CUT, start):
            x = model._blocks[idx](x)
        return x
    return run_module(forward, maps, batch_size=128, to_float=False) if start > CUT else maps


def _new_head(features, outputs, seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Dropout(0.2), nn.Linear(features, outputs)).eval()


def train_stages(recipe, net, start, train, val, loss, augment=None, keep_last=False):
    """Stage 1 (head on the frozen tail's embeddings), then stage 2 (blocks ``start``.. + head) when
    ``start`` < ``BLOCKS``. ``train``/``val``: (maps after the frozen prefix, targets[, embeddings of the
    untrained tail: computed when absent]). Returns the tail."""
    tail = Lite0Tail(net, start)
    emb = {}
    for name, part in (("train", train), ("val", val)):
        emb[name] = part[2] if len(part) > 2 else run_module(tail, part[0], batch_size=128)
    head = net.backbone.head
    train_head(recipe, head, emb, {"train": train[1], "val": val[1]}, loss)
    if start < BLOCKS:
        fine_tune(recipe, net, tail, {"train": train[0], "val": val[0]}, {"train": train[1], "val": val[1]},
                  loss, augment, keep_last)
    for p in net.parameters():
        p.requires_grad_(False)
    net.eval()
    return tail


def pretrain_pediatric(data, recipe, blocks=PRETRAIN_BLOCKS, epochs=PRETRAIN_EPOCHS, store=None):
    """The backbone body's state after fine-tuning its last ``blocks`` blocks (and a 2-class head) on the
    paediatric TRAIN files for ``epochs`` epochs (the last state: the aim is chest features, not the
    best paediatric classifier; its VAL loss is logged); and the seconds it took. ``store``: a file
    that keeps the state (read when present with the same settings)."""
    if store and os.path.isfile(store):
        saved = torch.load(store)
        if saved["settings"] == _pretrain_settings(recipe, blocks, epochs):
            log("paediatric-pretrained tail read from {}".format(store))
            return saved["body"], saved["seconds"]
    started = time.time()
    samples, maps = data.sets["pediatric"]
    classes = ["NORMAL", "PNEUMONIA"]
    names = {s.labels[0].upper() for s in samples}
    if not names <= set(classes):
        raise ConfigError("paediatric labels {} are not {}. Fix: check the pediatric split".format(
            names, classes))
    targets = torch.tensor([classes.index(s.labels[0].upper()) for s in samples])
    is_val = torch.tensor([s.path in data.pediatric_val for s in samples])
    net = copy.deepcopy(data.net)
    net.backbone.head = _new_head(net.num_features, 2, recipe.seed)
    start = BLOCKS - blocks
    x = prefix(net, maps, start)
    settings = replace(recipe, tune_epochs=epochs, tune_lr=PRETRAIN_LR)
    train_stages(settings, net, start, (x[~is_val], targets[~is_val]), (x[is_val], targets[is_val]),
                 "multiclass", keep_last=True)
    seconds = round(time.time() - started, 1)
    log("paediatric pretraining of blocks {}-{}: {:.0f}s".format(start, BLOCKS - 1, seconds))
    body = copy.deepcopy(net.backbone.body.state_dict())
    if store:
        torch.save({"settings": _pretrain_settings(recipe, blocks, epochs), "body": body,
                    "seconds": seconds}, store + ".tmp")
        os.replace(store + ".tmp", store)
    return body, seconds


def _pretrain_settings(recipe, blocks, epochs):
    """What a stored pretrained tail must match (the input normalisation too: never a stale tail)."""
    settings = [blocks, epochs, PRETRAIN_LR, recipe.seed, "last"]
    return settings + ([recipe.contrast] if recipe.contrast != "none" else [])


def _rows(samples, folds_of, wanted, train_only=False):
    return [i for i, s in enumerate(samples) if folds_of.get(s.patient_id, -1) in wanted or
            (train_only and s.patient_id not in folds_of)]


def fold_data(parts, folds_of, fold, k, with_extra):
    """(train, val, test) = (maps, targets, embeddings) of one fold; ``parts``: {set: (samples, maps,
    targets, embeddings)}."""
    val_fold = (fold + 1) % k
    train_folds = set(range(k)) - {fold, val_fold}

    def take(names, wanted):
        chosen = [[part[idx] for part in parts[n][1:]] for n in names
                  for idx in [_rows(parts[n][0], folds_of, wanted, train_only=(n == "extra"))] if idx]
        return tuple(torch.cat([c[j] for c in chosen]) for j in range(3))

    train = take(("chest", "crops") + (("extra",) if with_extra else ()), train_folds)
    return train, take(("chest", "crops"), {val_fold}), take(("chest",), {fold})


def targets(data, classes, aux):
    """{set: targets}: class indices, or (aux) [N, 1 + L] = class index (-1: none) + the NIH multi-hot."""
    from recipes import aux_cv

    out = {}
    for name in ("chest", "crops", "extra"):
        samples = data.sets[name][0]
        main = torch.tensor([classes.index(s.labels[0]) if s.labels[0] in classes and name != "extra" else -1
                             for s in samples])
        if aux:
            hot = aux_cv.multi_hot([s.path for s in samples], data.rows, data.names)
            out[name] = torch.cat([main.float().unsqueeze(1), hot], dim=1)
        else:
            out[name] = main
    return out


def fold_metrics(probs, truth, count, classes):
    """What ``cv.summarise`` reads (accuracy, macro AUROC, ECE, per-class AUROC and top-1 sensitivity /
    specificity) without ``classification_metrics``'s per-fold bootstrap (the CI is over folds here)."""
    predicted = probs.argmax(1)
    per_class = {}
    for c, name in enumerate(classes):
        pos = truth == c
        per_class[name] = {"auroc": rank_auroc(pos.astype(np.int64), probs[:, c]),
                           "sensitivity": float((predicted[pos] == c).mean()) if pos.any() else float("nan"),
                           "specificity": float((predicted[~pos] != c).mean())
                           if (~pos).any() else float("nan")}
    aurocs = [v["auroc"] for v in per_class.values() if v["auroc"] is not None]
    return {"accuracy": float((predicted == truth).mean()), "macro_auroc": float(np.mean(aurocs)),
            "ece": expected_calibration_error(probs, truth, "multiclass"), "per_class": per_class,
            "images": int(len(truth))}


def run_variant(data, variant, classes, body_state=None, seed=0):
    """k-fold CV of one variant: {"folds": [...metrics], "summary", "oof": probs [N, C] in files order,
    "seconds"}."""
    recipe = data.recipe
    started = time.time()
    start = BLOCKS - variant.tune_blocks
    net0 = copy.deepcopy(data.net)
    if body_state is not None:
        net0.backbone.body.load_state_dict(body_state)
    aux = variant.aux_weight > 0
    target = targets(data, classes, aux)
    parts = {}
    for n in ("chest", "crops") + (("extra",) if aux else ()):
        maps = prefix(net0, data.sets[n][1], start)
        emb = run_module(Lite0Tail(net0, start), maps, batch_size=128)
        parts[n] = (data.sets[n][0], maps, target[n], emb)
    log("{}: feature maps and embeddings ready ({:.0f}s)".format(variant, time.time() - started))
    files = data.sets["chest"][0]
    folds_of = cv.fold_of_patients(files, classes, recipe.cv_folds, recipe.seed)
    dicom = _dicom_part(data, net0, start)
    dicom_oof = np.zeros((len(dicom[0]), len(classes))) if dicom is not None else None
    loss = AuxLoss(len(classes), variant.aux_weight) if aux else "multiclass"
    outputs = len(classes) + (len(data.names) if aux else 0)
    oof = np.zeros((len(files), len(classes)))
    rows = []
    for fold in range(recipe.cv_folds):
        train, val, test = fold_data(parts, folds_of, fold, recipe.cv_folds, aux)
        net = copy.deepcopy(net0)
        net.backbone.head = _new_head(net.num_features, outputs, recipe.seed)
        augment = flip_map(torch.Generator().manual_seed(seed + fold)) if variant.flip else None
        tail = train_stages(recipe, net, start, train, val, loss, augment, variant.keep_last)
        with torch.no_grad():  # an untouched tail's embeddings are the cached ones
            val_emb, test_emb = (run_module(tail, x[0], batch_size=128) if start < BLOCKS else x[2]
                                 for x in (val, test))
            val_logits = net.backbone.head(val_emb)[:, :len(classes)]
            test_logits = net.backbone.head(test_emb)[:, :len(classes)]
        val_main = val[1][:, 0].long() if aux else val[1]
        test_main = (test[1][:, 0].long() if aux else test[1]).numpy()
        temperature = fit_temperature(val_logits, val_main, "multiclass")
        probs = probs_of(test_logits, "multiclass", temperature)
        metrics = fold_metrics(probs, test_main, len(classes), classes)
        metrics["ece_before_temperature"] = expected_calibration_error(
            probs_of(test_logits, "multiclass"), test_main, "multiclass")
        metrics["temperature"] = temperature
        rows.append(metrics)
        oof[[i for i, s in enumerate(files) if folds_of[s.patient_id] == fold]] = probs
        if dicom is not None:  # the same fold model on its test patients' stretched images
            mine = [i for i, s in enumerate(dicom[0]) if folds_of[s.patient_id] == fold]
            own = None if start == BLOCKS else tail
            dicom_oof[mine] = _fold_probs(net, own, (dicom[1][mine], dicom[2][mine]), len(classes),
                                          temperature)
        log("{} fold {}/{}: macro AUROC {:.3f}, ECE {:.3f} ({:.0f}s)".format(
            variant, fold + 1, recipe.cv_folds, metrics["macro_auroc"], metrics["ece"],
            time.time() - started))
    result = {"summary": cv.summarise(rows, classes), "oof": oof, "seconds": round(time.time() - started, 1),
              "fold_macro_auroc": [float(r["macro_auroc"]) for r in rows], "folds_of": folds_of}
    if dicom is not None:
        result["dicom_stretch"] = dicom_change(files, dicom[0], classes, oof, dicom_oof)
    return result


def _fold_probs(net, tail, maps_embeddings, count, temperature):
    """Calibrated probabilities of one fold model (``tail`` None: the cached embeddings are its own)."""
    maps, embeddings = maps_embeddings
    with torch.no_grad():
        emb = run_module(tail, maps, batch_size=128) if tail is not None else embeddings
        return probs_of(net.backbone.head(emb)[:, :count], "multiclass", temperature)


def _dicom_part(data, net, start):
    """(samples, maps after the frozen prefix, embeddings) of the optional "dicom" set, or None."""
    if "dicom" not in data.sets:
        return None
    samples, maps = data.sets["dicom"]
    maps = prefix(net, maps, start)
    return samples, maps, run_module(Lite0Tail(net, start), maps, batch_size=128)


def dicom_change(files, stretched_samples, classes, oof, stretched_oof):
    """``recipes.contrast_chest.probability_change`` of the stretched images against their files."""
    from recipes.dicom_proxy import probability_change

    row_of = {s.path: i for i, s in enumerate(files)}
    clean = oof[[row_of[s.path] for s in stretched_samples]]
    return probability_change(classes, clean, stretched_oof)


def pooled_aurocs(truth, probs, index=None):
    """Per-class AUROC (one vs rest) of pooled out-of-fold probabilities (rows ``index``)."""
    if index is not None:
        truth, probs = truth[index], probs[index]
    return [rank_auroc((truth == c).astype(np.int64), probs[:, c]) for c in range(probs.shape[1])]


def paired_difference(files, classes, baseline, other, draws=1000, seed=0):
    """Pooled out-of-fold AUROC per class and macro of ``other`` - ``baseline``, point and 95% interval of
    a bootstrap over PATIENTS (both variants scored on the same resampled images)."""
    truth = np.array([classes.index(s.labels[0]) for s in files])
    patients = sorted({s.patient_id for s in files})
    rows_of = {p: [] for p in patients}
    for i, s in enumerate(files):
        rows_of[s.patient_id].append(i)
    rng = np.random.RandomState(seed)

    def diff(index=None):
        a, b = pooled_aurocs(truth, baseline, index), pooled_aurocs(truth, other, index)
        if any(v is None for v in a + b):
            return None
        d = [y - x for x, y in zip(a, b)]
        return d + [float(np.mean(d))]

    point = diff()
    boot = []
    for _ in range(draws):
        chosen = rng.randint(0, len(patients), len(patients))
        index = np.concatenate([rows_of[patients[c]] for c in chosen])
        value = diff(index)
        if value is not None:
            boot.append(value)
    boot = np.asarray(boot)
    names = list(classes) + ["macro"]
    return {name: [round(point[j], 4)] + [round(float(v), 4) for v in np.percentile(boot[:, j], [2.5, 97.5])]
            for j, name in enumerate(names)}


def with_recipe(data, **changes):
    """``data`` with its recipe's fields changed (e.g. tune_epochs) for a trial."""
    data.recipe = replace(data.recipe, **changes)
    return data
