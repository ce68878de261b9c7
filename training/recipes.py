"""Recipes for the shipped chest X-ray modules, designed for a 2-core CPU.

``python -m training.recipes pediatric-pneumonia --out runs/pediatric-pneumonia`` (or ``chest``)
does everything from the committed split to the installed bundle:

1. samples and the committed patient-level split (``splits/<module>.json``; made once if missing);
2. every image resized once by ``edge.preprocess`` and kept in memory (uint8);
3. the frozen *trunk* of an ImageNet-pretrained backbone (all but its last ``tune_blocks`` blocks)
   runs ONCE over all images and its feature maps are cached;
4. stage 1: the linear head is trained on the pooled embeddings of the frozen network (seconds);
5. stage 2: the last blocks + head are fine-tuned on the cached feature maps (BatchNorm frozen),
   early stopping on the validation loss, best epoch kept;
6. temperature scaling and the abstain threshold on the validation split;
7. the input check (``training.ood``): Mahalanobis distance of the embedding, threshold on
   validation X-rays, measured on the test X-rays and on out-of-scope images;
8. checkpoint -> ONNX bundle (``export.onnx_export.export_bundle``, golden images, parity) ->
   model card; evaluation report, confusion matrix, ROC curves and reliability diagrams on the test split.

A baseline (``--baseline``) trains the seed project's architecture the same way on the same split
under a stated CPU budget, reports it, and installs nothing.
"""

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edge.description import InputSpec, ModelDescription
from edge.errors import ConfigError, MedkioskError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA_ROOT = os.path.join(os.path.dirname(ROOT), "shared", "data")
NIH_ATTRIBUTION = (
    "NIH ChestX-ray14, provided by the NIH Clinical Center (https://nihcc.app.box.com/v/ChestXray-NIHCC). "
    "Wang X, Peng Y, Lu L, Lu Z, Bagheri M, Summers RM. ChestX-ray8: Hospital-scale Chest X-ray Database "
    "and Benchmarks on Weakly-Supervised Classification and Localization of Common Thorax Diseases. "
    "IEEE CVPR 2017. We acknowledge the NIH Clinical Center as the data provider."
)
KERMANY_ATTRIBUTION = (
    "Kermany DS, Goldbaum M, et al. Identifying Medical Diagnoses and Treatable Diseases by Image-Based "
    "Deep Learning. Cell 172(5), 2018. Data: Mendeley Data, doi:10.17632/rscbjbr9sj.2, licensed CC BY 4.0 "
    "(https://creativecommons.org/licenses/by/4.0/)."
)


@dataclass
class Recipe:
    """Everything one module's training depends on (stored in the checkpoint's config)."""

    module: str
    data: str  # below the data root: images folder (CSV layout) or class folders
    csv: Optional[str] = None
    arch: str = "efficientnet_lite0"
    image_size: int = 224
    pretrained: bool = True
    tune_blocks: int = 2  # backbone blocks fine-tuned in stage 2 (0: head only; -1: whole network)
    head_epochs: int = 60
    head_lr: float = 1e-3
    tune_epochs: int = 8
    tune_lr: float = 3e-4
    patience: int = 2
    batch_size: int = 32
    weight_decay: float = 1e-4
    augment: bool = False  # only possible when the whole network trains (tune_blocks=-1)
    abstain_coverage: float = 0.9
    ood_accept: float = 0.99
    ood_shrinkage: float = 0.1
    ood_components: int = 256
    colour_threshold: float = 0.08  # mean chroma above which an image is a colour photo, not an X-ray
    contrast_fraction: float = 0.5  # grey-level std below this fraction of the lowest val X-ray's: blank
    seed: int = 0
    version: str = "1.0.0"
    attribution: tuple = ()
    limit_per_class: Optional[int] = None  # tiny runs (tests): at most this many images per class per split
    budget: str = ""  # for baselines: the CPU budget they were trained under, in words
    cross_check: bool = True  # re-evaluate the saved checkpoint from the image files (training.evaluate)

    def to_dict(self):
        data = asdict(self)
        data["attribution"] = list(self.attribution)
        return data


RECIPES = {
    "pediatric-pneumonia": Recipe(
        module="pediatric-pneumonia",
        data="chest-pediatric/train",
        patience=3,  # the validation loss is noisy between epochs (measured: a spike at epoch 2, best at 4)
        attribution=(KERMANY_ATTRIBUTION,),
    ),
    "chest": Recipe(
        module="chest",
        data="chest-nih/images",
        csv="chest-nih/labels.csv",
        tune_epochs=10,
        abstain_coverage=0.8,
        attribution=(NIH_ATTRIBUTION,),
    ),
}
# The seed project's VGG16: no ImageNet weights are available offline here, so it trains from
# scratch, at 64x64 (its FLOPs at 224 are ~15 G per image: an epoch on 2 cores takes hours).
BASELINES = {
    "vgg16_seed": dict(
        arch="vgg16_seed",
        image_size=64,
        pretrained=False,
        tune_blocks=-1,
        tune_epochs=3,
        tune_lr=1e-4,
        patience=2,
        augment=True,
        budget="from scratch (no offline ImageNet weights for VGG16), 64x64 input, early stopping, "
        "AdamW lr 1e-4, chest-xray augmentation, 2 shared CPU cores",
    ),
}


def log(message):
    sys.stderr.write("[recipe {}] {}\n".format(time.strftime("%H:%M:%S"), message))
    sys.stderr.flush()


# --- backbone split: frozen trunk (cached once) and trainable tail ---------------------------------


class _Lite0Trunk(nn.Module):
    def __init__(self, net, stop):
        super().__init__()
        self.net = net
        self.stop = stop

    def forward(self, x):
        model = self.net.backbone.body.model
        x = model._swish(model._bn0(model._conv_stem(self.net.normalise(x))))
        for idx in range(self.stop):
            x = model._blocks[idx](x, drop_connect_rate=_drop_rate(model, idx))
        return x


class _Lite0Tail(nn.Module):
    def __init__(self, net, start):
        super().__init__()
        self.net = net
        self.start = start

    def forward(self, x):
        model = self.net.backbone.body.model
        for idx in range(self.start, len(model._blocks)):
            x = model._blocks[idx](x, drop_connect_rate=_drop_rate(model, idx))
        x = model._swish(model._bn1(model._conv_head(x)))
        return torch.flatten(model._avg_pooling(x), 1)

    def trainable(self):
        model = self.net.backbone.body.model
        modules = [model._blocks[i] for i in range(self.start, len(model._blocks))]
        return [p for m in modules + [model._conv_head, model._bn1] for p in m.parameters()]


def _drop_rate(model, idx):
    rate = model._global_params.drop_connect_rate
    return rate * float(idx) / len(model._blocks) if rate else rate


def _lite0_parts(net, tune_blocks):
    blocks = len(net.backbone.body.model._blocks)
    start = blocks - max(0, min(int(tune_blocks), blocks))
    return _Lite0Trunk(net, start), _Lite0Tail(net, start)


class _Raw(nn.Module):
    """Trunk of a whole-network split: the raw pixels themselves are cached."""

    def forward(self, x):
        return x


class _WholeNet(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.features(x)

    def trainable(self):
        return list(self.net.backbone.body.parameters())


class _FrozenBody(nn.Module):
    """Tail of a head-only split: the cached trunk output is already the embedding."""

    def forward(self, x):
        return x

    def trainable(self):
        return []


def split_network(net, arch, tune_blocks):
    """(trunk, tail): trunk(raw pixels) is computed once and cached; tail(trunk output) -> embedding."""
    if tune_blocks < 0:
        return _Raw(), _WholeNet(net)
    if tune_blocks == 0:
        return _Composed(net), _FrozenBody()
    if arch not in PARTIAL_SPLITTERS:
        raise ConfigError(
            "fine-tuning the last blocks is not implemented for {} (only {}). Fix: use "
            "tune_blocks 0 (head only) or -1 (whole network)".format(arch, sorted(PARTIAL_SPLITTERS))
        )
    return PARTIAL_SPLITTERS[arch](net, tune_blocks)


class _Composed(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.features(x)


PARTIAL_SPLITTERS = {"efficientnet_lite0": _lite0_parts}


# --- data --------------------------------------------------------------------------------------------


def resolve_split(recipe, data_root, split_dir):
    """The committed split (made and written once if missing), samples resolved under ``data_root``."""
    from training.data import load_samples
    from training.modules import get_module
    from training.splits import Split, check_leaks, make_split

    module = get_module(recipe.module)
    images_dir = os.path.join(data_root, recipe.data)
    path = os.path.join(split_dir, "{}.json".format(recipe.module))
    if os.path.isfile(path):
        split = Split.from_file(path, root=images_dir)
        missing = [s.path for _n, part in split.parts() for s in part if not os.path.isfile(s.path)]
        if missing:
            raise ConfigError(
                "{} lists {} images missing under {} (e.g. {}). Fix: pass --data-root pointing "
                "at the folder that holds {}".format(path, len(missing), images_dir, missing[0], recipe.data)
            )
        return module, split, {"split_file": os.path.relpath(path, ROOT), "created": False}
    csv_path = os.path.join(data_root, recipe.csv) if recipe.csv else None
    samples = load_samples(module, images_dir, csv_path)
    split = make_split(
        samples,
        fractions=(0.7, 0.15, 0.15),
        seed=recipe.seed,
        root=images_dir,
        meta={"module": recipe.module, "classes": list(module.classes), "samples": samples.summary},
    )
    split.to_file(path, root=images_dir)
    leaks = check_leaks(split, cache_path=os.path.join(split_dir, ".{}.hashes.json".format(recipe.module)))
    return module, split, {"split_file": os.path.relpath(path, ROOT), "created": True, "leak_check": leaks}


def limit_samples(samples, per_class):
    """At most ``per_class`` samples per (first) label, in the split's order."""
    if not per_class:
        return list(samples)
    kept, counts = [], {}
    for sample in samples:
        key = sample.labels[0]
        if counts.get(key, 0) < per_class:
            kept.append(sample)
            counts[key] = counts.get(key, 0) + 1
    return kept


def cache_images(samples, spec):
    """Samples -> uint8 tensor [N, C, H, W] of the images exactly as edge.preprocess feeds the device."""
    from edge.preprocess import load_image, preprocess

    batch = np.empty(spec.shape(len(samples)), dtype=np.uint8)
    failures = []
    for index, sample in enumerate(samples):
        try:
            batch[index] = preprocess(load_image(sample.path), spec)[0].astype(np.uint8)
        except MedkioskError as exc:
            failures.append(str(exc))
    if failures:
        raise ConfigError(
            "{} of {} images cannot be read: {}. Fix: repair or remove them, then make the split "
            "again".format(len(failures), len(samples), "; ".join(failures[:3]))
        )
    return torch.from_numpy(batch)


def targets_of(samples, classes, task):
    index = {c: i for i, c in enumerate(classes)}
    if task == "multilabel":
        hot = torch.zeros(len(samples), len(classes))
        for row, sample in enumerate(samples):
            for label in sample.labels:
                hot[row, index[label]] = 1.0
        return hot
    return torch.tensor([index[s.labels[0]] for s in samples], dtype=torch.long)


@torch.no_grad()
def run_module(module, inputs, batch_size=64, to_float=True):
    """Apply a module (or function) to a (uint8 or float) tensor in batches; eval mode, no grad."""
    if hasattr(module, "eval"):
        module.eval()
    outputs = []
    for start in range(0, len(inputs), batch_size):
        x = inputs[start : start + batch_size]
        outputs.append(module(x.float() if to_float else x))
    return torch.cat(outputs) if outputs else torch.empty(0)


def _loss(logits, targets, task):
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.cross_entropy(logits, targets)


# --- training stages ------------------------------------------------------------------------------


def _fit(
    params,
    forward,
    train_x,
    train_y,
    val_x,
    val_y,
    task,
    epochs,
    lr,
    weight_decay,
    batch_size,
    patience,
    seed,
    state_of,
    load_state,
    train_mode=None,
    augment=None,
    label="stage",
):
    """Mini-batch AdamW with early stopping on the validation loss; the best state is restored.

    The starting state competes too (epoch 0): fine-tuning that never beats the stage-1 model
    leaves the stage-1 model in place.
    """
    if not params:
        return []
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        start_loss = _loss(_batched(forward, val_x), val_y, task).item()
    best, best_state, stale = start_loss, state_of(), 0
    history = [{"epoch": 0, "val_loss": round(start_loss, 5)}]
    for epoch in range(epochs):
        started = time.time()
        if train_mode:
            train_mode(True)
        order = torch.randperm(len(train_x), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = train_x[idx].float()
            if augment is not None:
                x = torch.stack([augment(img) for img in x])
            loss = _loss(forward(x), train_y[idx], task)
            if not torch.isfinite(loss):
                raise MedkioskError(
                    "{} diverged at epoch {} (loss {}). Fix: lower the learning rate".format(
                        label, epoch + 1, loss.item()
                    )
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            total += loss.item() * len(idx)
        if train_mode:
            train_mode(False)
        with torch.no_grad():
            val_logits = _batched(forward, val_x)
            val_loss = _loss(val_logits, val_y, task).item()
            val_acc = _accuracy(val_logits, val_y, task)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": round(total / len(order), 5),
                "val_loss": round(val_loss, 5),
                "val_accuracy": round(val_acc, 5),
                "seconds": round(time.time() - started, 2),
            }
        )
        if val_loss < best - 1e-5:
            best, best_state, stale = val_loss, state_of(), 0
        else:
            stale += 1
        stop = stale >= patience
        if epochs <= 20 or stop or (epoch + 1) % 10 == 0:
            log(
                "{} epoch {}: train {:.4f} val {:.4f} acc {:.3f} ({:.0f}s){}".format(
                    label,
                    epoch + 1,
                    history[-1]["train_loss"],
                    val_loss,
                    val_acc,
                    time.time() - started,
                    " best" if stale == 0 else "",
                )
            )
        if stop:
            break
    load_state(best_state)
    return history


def _batched(forward, x, size=128):
    return torch.cat([forward(x[s : s + size].float()) for s in range(0, len(x), size)])


def _accuracy(logits, targets, task):
    if task == "multilabel":
        return float(((logits > 0).float() == targets).float().mean())
    return float((logits.argmax(1) == targets).float().mean())


def _snapshot(modules):
    return [copy.deepcopy(m.state_dict()) for m in modules]


def _restore(modules, states):
    for module, state in zip(modules, states):
        module.load_state_dict(state)


# --- evaluation -------------------------------------------------------------------------------------


def wilson(successes, n, z=1.96):
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return [float("nan"), float("nan")]
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _auroc(scores, positives):
    from sklearn.metrics import roc_auc_score

    if positives.min() == positives.max():
        return float("nan")
    return float(roc_auc_score(positives, scores))


def bootstrap_auroc(scores, positives, reps=500, seed=0):
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(reps):
        idx = rng.integers(0, len(scores), len(scores))
        if positives[idx].min() != positives[idx].max():
            values.append(_auroc(scores[idx], positives[idx]))
    if not values:
        return [float("nan"), float("nan")]
    return [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))]


def classification_metrics(probs, targets, classes, task, abstain_threshold=None):
    """Accuracy, per-class sensitivity/specificity/precision/AUROC with 95% CIs, confusion matrix."""
    from training.calibration import expected_calibration_error

    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    n = len(probs)
    result = {"images": int(n), "task": task, "per_class": {}}
    if task == "multilabel":
        truth = targets.astype(bool)
        predicted = probs >= 0.5
    else:
        truth = np.eye(len(classes), dtype=bool)[targets.astype(int)]
        predicted = np.eye(len(classes), dtype=bool)[probs.argmax(1)]
        correct = int((probs.argmax(1) == targets).sum())
        result["accuracy"] = correct / n if n else float("nan")
        result["accuracy_ci95"] = wilson(correct, n)
        matrix = np.zeros((len(classes), len(classes)), dtype=int)
        for t, p in zip(targets.astype(int), probs.argmax(1)):
            matrix[t, p] += 1
        result["confusion_matrix"] = {"rows_true_cols_predicted": list(classes), "counts": matrix.tolist()}
    aurocs = []
    for k, name in enumerate(classes):
        pos, neg = truth[:, k], ~truth[:, k]
        tp, fn = int((predicted[:, k] & pos).sum()), int((~predicted[:, k] & pos).sum())
        tn, fp = int((~predicted[:, k] & neg).sum()), int((predicted[:, k] & neg).sum())
        auroc = _auroc(probs[:, k], pos.astype(int))
        aurocs.append(auroc)
        result["per_class"][name] = {
            "support": int(pos.sum()),
            "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
            "sensitivity_ci95": wilson(tp, tp + fn),
            "specificity": tn / (tn + fp) if tn + fp else float("nan"),
            "specificity_ci95": wilson(tn, tn + fp),
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "precision_ci95": wilson(tp, tp + fp),
            "auroc": auroc,
            "auroc_ci95": bootstrap_auroc(probs[:, k], pos.astype(int), seed=k),
        }
    valid = [a for a in aurocs if not math.isnan(a)]
    result["macro_auroc"] = float(np.mean(valid)) if valid else float("nan")
    result["ece"] = expected_calibration_error(probs, targets, task)
    if abstain_threshold is not None and task == "multiclass" and n:
        answered = probs.max(1) >= abstain_threshold
        k = int(answered.sum())
        good = int((probs.argmax(1) == targets)[answered].sum())
        result["abstain"] = {
            "threshold": float(abstain_threshold),
            "coverage": k / n,
            "accuracy_answered": good / k if k else float("nan"),
            "accuracy_answered_ci95": wilson(good, k),
        }
    return result


def write_plots(out_dir, probs_before, probs, targets, classes, task, prefix=""):
    """Confusion matrix, ROC curves and reliability diagrams (before/after temperature) as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from sklearn.metrics import roc_curve

    from training.calibration import confidences_and_correct, reliability_bins

    os.makedirs(out_dir, exist_ok=True)
    written = []
    targets = np.asarray(targets)
    if task == "multiclass":
        matrix = np.zeros((len(classes), len(classes)), dtype=int)
        for t, p in zip(targets.astype(int), np.asarray(probs).argmax(1)):
            matrix[t, p] += 1
        fig, ax = plt.subplots(figsize=(4.8, 4.2))
        ax.imshow(matrix, cmap="Blues")
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black",
                )
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title("Confusion matrix (test)")
        fig.tight_layout()
        written.append(_save(fig, out_dir, prefix + "confusion_matrix.png"))
    truth = (
        targets.astype(bool)
        if task == "multilabel"
        else np.eye(len(classes), dtype=bool)[targets.astype(int)]
    )
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    for k, name in enumerate(classes):
        if truth[:, k].min() != truth[:, k].max():
            fpr, tpr, _ = roc_curve(truth[:, k].astype(int), np.asarray(probs)[:, k])
            ax.plot(
                fpr,
                tpr,
                label="{} (AUROC {:.2f})".format(
                    name, _auroc(np.asarray(probs)[:, k], truth[:, k].astype(int))
                ),
            )
    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC, one vs rest (test)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    written.append(_save(fig, out_dir, prefix + "roc.png"))
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.0), sharey=True)
    for ax, (title, p) in zip(axes, (("before temperature", probs_before), ("after temperature", probs))):
        confidence, correct = confidences_and_correct(p, targets, task)
        rows = [r for r in reliability_bins(confidence, correct, bins=10) if r[2]]
        ax.bar(
            [(r[0] + r[1]) / 2 for r in rows], [r[4] for r in rows], width=0.09, alpha=0.7, label="accuracy"
        )
        ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
        ax.set_title("Reliability, {} (test)".format(title), fontsize=9)
        ax.set_xlabel("confidence")
    axes[0].set_ylabel("accuracy")
    fig.tight_layout()
    written.append(_save(fig, out_dir, prefix + "reliability.png"))
    return written


def _save(fig, out_dir, name):
    from matplotlib import pyplot as plt

    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --- cost: parameters, FLOPs, latency ----------------------------------------------------------------


def count_macs(net, spec):
    """Multiply-accumulates of Conv2d and Linear layers for one image (the dominant cost)."""
    total = [0]

    def conv_hook(module, _inputs, output):
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total[0] += int(output.numel() // output.shape[0]) * kernel

    def linear_hook(module, _inputs, output):
        total[0] += int(output.numel() // output.shape[0]) * module.in_features

    handles = []
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    with torch.no_grad():
        net.eval()
        net(torch.full(spec.shape(1), 127.0))
    for handle in handles:
        handle.remove()
    return total[0]


def cpu_latency_ms(net, spec, runs=10, threads=1):
    """Median PyTorch CPU latency of one image (``threads`` intra-op threads)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.full(spec.shape(1), 127.0)
        times = []
        with torch.no_grad():
            net.eval()
            net(x)
            for _ in range(runs):
                started = time.perf_counter()
                net(x)
                times.append((time.perf_counter() - started) * 1000.0)
    finally:
        torch.set_num_threads(previous)
    return float(np.median(times))


def cost_of(net, spec):
    return {
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "macs_per_image": count_macs(net, spec),
        "input": "{}x{}".format(spec.height, spec.width),
        "cpu_latency_ms_1thread": cpu_latency_ms(net, spec),
    }


# --- the run -------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    run_dir: str
    checkpoint: str
    metrics: dict
    bundle: Optional[str] = None
    report: Optional[str] = None
    timings: dict = field(default_factory=dict)
    cross_check: Optional[dict] = None


def build_description(recipe, module):
    from training.nets import default_normalisation

    mean, std = default_normalisation(module.colour)
    return ModelDescription(
        arch=recipe.arch,
        task=module.task,
        classes=list(module.classes),
        input_spec=InputSpec(recipe.image_size, recipe.image_size, colour=module.colour),
        mean=mean,
        std=std,
        display_names=list(module.display_names),
        extra={"module": module.id, "trained_with": "training.recipes"},
    )


def train_recipe(
    recipe,
    out,
    data_root=DEFAULT_DATA_ROOT,
    split_dir=None,
    models_dir=None,
    docs_dir=None,
    with_skimage=True,
    threads=2,
):
    """Run a recipe end to end; return RunResult. ``models_dir``/``docs_dir`` None: nothing installed."""
    from training.checkpoint import build_net, make_checkpoint, save_checkpoint
    from training.registry import check_image_size

    torch.set_num_threads(threads)
    torch.manual_seed(recipe.seed)
    check_image_size(recipe.arch, recipe.image_size)
    timings = {}
    started = time.time()
    run_dir = os.path.abspath(out)
    os.makedirs(run_dir, exist_ok=True)
    split_dir = split_dir or os.path.join(ROOT, "splits")
    module, split, split_info = resolve_split(recipe, data_root, split_dir)
    task, classes = module.task, list(module.classes)
    parts = {name: limit_samples(samples, recipe.limit_per_class) for name, samples in split.parts()}
    log(
        "{}: train {} / val {} / test {} images ({} patients in all)".format(
            module.id,
            len(parts["train"]),
            len(parts["val"]),
            len(parts["test"]),
            len({s.patient_id for p in parts.values() for s in p}),
        )
    )
    description = build_description(recipe, module)
    spec = description.input
    images = {name: cache_images(samples, spec) for name, samples in parts.items()}
    targets = {name: targets_of(samples, classes, task) for name, samples in parts.items()}
    timings["load_images_s"] = round(time.time() - started, 1)

    net = build_net(description, pretrained=recipe.pretrained)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    trunk, tail = split_network(net, recipe.arch, recipe.tune_blocks)
    head = net.backbone.head

    if recipe.augment and recipe.tune_blocks >= 0:
        raise ConfigError("augmentation needs the whole network trained on raw pixels. Fix: tune_blocks -1")
    mark = time.time()
    cached = {name: run_module(trunk, x, batch_size=32) for name, x in images.items()}
    timings["trunk_features_s"] = round(time.time() - mark, 1)
    log(
        "trunk outputs cached in {:.0f}s: {}".format(
            timings["trunk_features_s"], tuple(cached["train"].shape[1:])
        )
    )

    history = {}
    # Stage 1: head only, on the frozen network's embeddings (skipped for a network trained from scratch).
    if recipe.pretrained:
        mark = time.time()
        with torch.no_grad():
            emb = {name: run_module(tail, x, batch_size=64) for name, x in cached.items()}
        head_params = list(head.parameters())
        for p in head_params:
            p.requires_grad_(True)
        history["head"] = _fit(
            head_params,
            head,
            emb["train"],
            targets["train"],
            emb["val"],
            targets["val"],
            task,
            recipe.head_epochs,
            recipe.head_lr,
            recipe.weight_decay,
            64,
            max(5, recipe.patience * 4),
            recipe.seed,
            lambda: _snapshot([head]),
            lambda s: _restore([head], s),
            label="stage 1 (head)",
        )
        timings["stage1_s"] = round(time.time() - mark, 1)
        with torch.no_grad():
            stage1 = classification_metrics(
                _probs(head(emb["test"]), task), targets["test"].numpy(), classes, task
            )
        history["stage1_test"] = {k: stage1[k] for k in ("accuracy", "macro_auroc") if k in stage1}
    # Stage 2: the last blocks (or the whole network) and the head, on the cached trunk outputs.
    tail_params = tail.trainable() if hasattr(tail, "trainable") else []
    if tail_params and recipe.tune_epochs > 0:
        mark = time.time()
        params = tail_params + list(head.parameters())
        for p in params:
            p.requires_grad_(True)
        augment = None
        if recipe.augment:
            from training.augment import build_transform

            augment = build_transform(module.augmentation, spec)

        def forward(x):
            return head(tail(x))

        def train_mode(on):
            # BatchNorm statistics stay frozen for a pretrained network (few images, small batches).
            tail.train(on and not recipe.pretrained)
            head.train(on)

        history["tune"] = _fit(
            params,
            forward,
            cached["train"],
            targets["train"],
            cached["val"],
            targets["val"],
            task,
            recipe.tune_epochs,
            recipe.tune_lr,
            recipe.weight_decay,
            recipe.batch_size,
            recipe.patience,
            recipe.seed + 1,
            lambda: _snapshot([net]),
            lambda s: _restore([net], s),
            train_mode=train_mode,
            augment=augment,
            label="stage 2 (tune)",
        )
        timings["stage2_s"] = round(time.time() - mark, 1)
    for p in net.parameters():
        p.requires_grad_(False)
    net.eval()

    # Calibration and abstain threshold on validation; embeddings for the input check.
    from training.calibration import abstain_threshold, calibration_summary, fit_temperature

    outputs = {}
    with torch.no_grad():
        for name, x in cached.items():
            emb = run_module(tail, x, batch_size=64)
            outputs[name] = (emb, head(emb))
    temperature = fit_temperature(outputs["val"][1], targets["val"], task)
    calibration = calibration_summary(
        outputs["val"][1], targets["val"], task, temperature, recipe.abstain_coverage
    )
    val_probs = _probs(outputs["val"][1], task, temperature)
    threshold = abstain_threshold(val_probs, recipe.abstain_coverage) if task == "multiclass" else 0.5

    from training import ood

    train_labels = targets["train"].numpy() if task == "multiclass" else targets["train"].argmax(1).numpy()
    fit = ood.fit_mahalanobis(
        outputs["train"][0].numpy(), train_labels, len(classes), recipe.ood_shrinkage, recipe.ood_components
    )
    distance_threshold = ood.choose_threshold(fit.distances(outputs["val"][0].numpy()), recipe.ood_accept)
    # Image-statistics terms: X-rays are grey (the data's chroma is ~0) and have contrast.
    val_contrast = ood.grey_contrast(images["val"].float()).numpy()
    val_chroma = ood.colour_scores(images["val"].float()).numpy()
    colour_threshold = max(recipe.colour_threshold, 2.0 * float(val_chroma.max()))
    contrast_threshold = recipe.contrast_fraction * float(val_contrast.min())
    ood_head = ood.InputCheckHead(fit, distance_threshold, colour_threshold, contrast_threshold).eval()
    torch.save(
        {name: {"embeddings": outputs[name][0], "targets": targets[name]} for name in outputs},
        os.path.join(run_dir, "embeddings.pt"),
    )
    message = "Not a chest X-ray — check the image or the module"
    description = description.replace(
        temperature=temperature,
        abstain_threshold=threshold,
        input_check=ood.input_check_entry(ood_head, recipe.ood_accept, message),
    )

    # Test metrics.
    test_logits = outputs["test"][1]
    probs_before = _probs(test_logits, task)
    probs = _probs(test_logits, task, temperature)
    metrics = classification_metrics(probs, targets["test"].numpy(), classes, task, threshold)
    metrics["ece_before_temperature"] = classification_metrics(
        probs_before, targets["test"].numpy(), classes, task
    )["ece"]
    metrics["calibration_val"] = calibration
    metrics["stage1_test"] = history.get("stage1_test")
    deploy = _deploy(net, description, ood_head)
    input_check = measure_input_check(
        deploy, ood_head, outputs["test"][0], images["test"], description, with_skimage
    )
    input_check.update(
        distance_threshold=distance_threshold,
        colour_threshold=colour_threshold,
        contrast_threshold=contrast_threshold,
    )
    metrics["input_check"] = input_check
    timings["total_train_s"] = round(time.time() - started, 1)
    metrics["cost"] = cost_of(net, spec)
    log("test: {}".format(_headline(metrics)))

    data = make_checkpoint(
        net,
        description,
        len(history.get("tune", [])),
        calibration["nll_after"],
        module={"id": module.id, "title": module.title},
        training={
            "data": {
                "split": split.counts(),
                "split_file": split_info["split_file"],
                "patients": len({s.patient_id for p in parts.values() for s in p}),
                "source": recipe.data,
                "samples": split.meta.get("samples"),
            },
            "metrics": {"test": _brief(metrics), "calibration": calibration},
            "attribution": list(recipe.attribution),
            "recipe": recipe.to_dict(),
        },
        config=recipe.to_dict(),
    )
    data["ood_head"] = ood_head.state()
    data["history"] = history
    # All of them: export measures their sharpness for the bundle's blur threshold (parity uses 16).
    data["splits"] = {"val": [s.path for s in parts["val"]]}
    checkpoint = save_checkpoint(os.path.join(run_dir, "best.pt"), data)
    result = RunResult(run_dir, checkpoint, metrics, timings=timings)

    bundle = None
    if models_dir:
        mark = time.time()
        bundle = export(
            deploy,
            description,
            data,
            checkpoint,
            parts["test"],
            classes,
            module,
            os.path.join(models_dir, module.id),
            recipe.version,
        )
        timings["export_s"] = round(time.time() - mark, 1)
        result.bundle = bundle
    report_dir = docs_dir or os.path.join(run_dir, "report")
    result.report = write_report(
        report_dir,
        recipe,
        module,
        split.counts() if not recipe.limit_per_class else _counts(parts),
        metrics,
        history,
        timings,
        probs_before,
        probs,
        targets["test"].numpy(),
        classes,
        task,
        split_info,
    )
    with open(os.path.join(run_dir, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(_json(dict(metrics, timings=timings, history=history)), handle, indent=1)
    if bundle:
        write_model_card(bundle, recipe, module, split.counts(), metrics, timings, split_info, history)
    if recipe.cross_check:
        result.cross_check = cross_check(
            checkpoint, parts["test"], os.path.join(report_dir, "medkiosk-evaluate")
        )
    return result


def cross_check(checkpoint, samples, out_dir):
    """Re-evaluate the saved checkpoint with ``training.evaluate`` (image files -> full network), an
    independent check of the cached-feature pipeline's numbers; returns its headline metrics."""
    from training.evaluate import evaluate_samples

    metrics = evaluate_samples(checkpoint, samples, out_dir, source="test split (recipe cross-check)").metrics
    keep = ("accuracy", "macro_auroc", "ece_before", "ece_after")
    return {k: metrics.get(k) for k in keep if k in metrics}


def _counts(parts):
    import collections

    return {
        name: {
            "images": len(s),
            "patients": len({x.patient_id for x in s}),
            "per_class": dict(collections.Counter(x.labels[0] for x in s)),
        }
        for name, s in parts.items()
    }


def _probs(logits, task, temperature=1.0):
    from training.calibration import probabilities

    return probabilities(logits, task, temperature).numpy()


def _deploy(net, description, ood_head):
    from training.nets import DeployModel

    deploy = DeployModel(net, description, ood_head=ood_head)
    deploy.eval()
    return deploy


def measure_input_check(deploy, ood_head, test_embeddings, test_images, description, with_skimage=True):
    """Rejection rates: real test X-rays (should be ~1 - accept) and out-of-scope images (should be ~1)."""
    from edge.preprocess import preprocess
    from training import ood

    with torch.no_grad():
        xray_scores = torch.cat(
            [
                ood_head(test_embeddings[i : i + 256], None, test_images[i : i + 256].float())
                for i in range(0, len(test_images), 256)
            ]
        ).numpy()
    images = ood.out_of_scope_images(
        size=max(64, description.input.height), with_skimage=with_skimage and _has_skimage()
    )
    names = sorted(images)
    batch = np.concatenate([preprocess(images[n], description.input) for n in names])
    with torch.no_grad():
        scores = run_module(lambda x: deploy(x)[1], torch.from_numpy(batch), batch_size=16).numpy()
    table = ood.summarise(names, scores)
    return {
        "test_xrays": {
            "n": int(len(xray_scores)),
            "flagged": int((xray_scores > 1.0).sum()),
            "rate": ood.rates(xray_scores),
        },
        "out_of_scope": table,
        "missed": [n for n, s in zip(names, scores) if s <= 1.0],
        "scores": {n: round(float(s), 3) for n, s in zip(names, scores)},
    }


def _has_skimage():
    try:
        import skimage  # noqa: F401
    except ImportError:
        return False
    return True


def _headline(metrics):
    parts = []
    if "accuracy" in metrics:
        parts.append(
            "accuracy {:.3f} [{:.3f}, {:.3f}]".format(metrics["accuracy"], *metrics["accuracy_ci95"])
        )
    parts.append("macro AUROC {:.3f}".format(metrics["macro_auroc"]))
    parts.append("ECE {:.3f} -> {:.3f}".format(metrics["ece_before_temperature"], metrics["ece"]))
    check = metrics["input_check"]
    parts.append(
        "input check: flags {:.0%} of out-of-scope images, {:.1%} of test X-rays".format(
            check["out_of_scope"]["all"]["rate"], check["test_xrays"]["rate"]
        )
    )
    return "; ".join(parts)


def _brief(metrics):
    keep = ("accuracy", "accuracy_ci95", "macro_auroc", "ece", "ece_before_temperature", "abstain")
    brief = {k: metrics[k] for k in keep if k in metrics}
    brief["per_class"] = {
        c: {k: v for k, v in m.items() if k in ("sensitivity", "specificity", "auroc")}
        for c, m in metrics["per_class"].items()
    }
    brief["input_check"] = {
        "test_xrays_rejected": metrics["input_check"]["test_xrays"]["rate"],
        "out_of_scope_flagged": metrics["input_check"]["out_of_scope"]["all"]["rate"],
    }
    return _json(brief)


def _json(value):
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, (np.floating, np.integer)):
        return _json(value.item())
    return value


def export(deploy, description, data, checkpoint, test_samples, classes, module, out_dir, version):
    """The bundle: export_bundle with golden images drawn from the test split, one per class first."""
    from export.onnx_export import ExportSource, export_bundle

    by_class = {c: [s.path for s in test_samples if s.labels[0] == c] for c in classes}
    samples = []
    for index in range(16):
        for c in classes:
            if index < len(by_class[c]) and len(samples) < 16:
                samples.append(by_class[c][index])
    source = ExportSource(deploy, description, data, checkpoint)
    return export_bundle(
        source, out_dir, sample_images=samples, module_id=module.id, title=module.title, version=version
    )


# --- reports ---------------------------------------------------------------------------------------


def _pct(value, ci=None):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = "{:.1f}%".format(100 * value)
    if ci and not any(math.isnan(c) for c in ci):
        text += " [{:.1f}, {:.1f}]".format(100 * ci[0], 100 * ci[1])
    return text


def _num(value, ci=None):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = "{:.3f}".format(value)
    if ci and not any(math.isnan(c) for c in ci):
        text += " [{:.3f}, {:.3f}]".format(*ci)
    return text


def metrics_markdown(metrics, classes):
    lines = []
    if "accuracy" in metrics:
        lines.append(
            "- Accuracy: **{}** (95% Wilson CI)".format(_pct(metrics["accuracy"], metrics["accuracy_ci95"]))
        )
    lines.append("- Macro AUROC (one vs rest): **{}**".format(_num(metrics["macro_auroc"])))
    lines.append(
        "- ECE (15 bins): {} before temperature scaling, {} after (T = {:.3f}, fitted on val)".format(
            _num(metrics["ece_before_temperature"]),
            _num(metrics["ece"]),
            metrics["calibration_val"]["temperature"],
        )
    )
    if metrics.get("abstain"):
        a = metrics["abstain"]
        lines.append(
            "- Abstain threshold {:.3f} (top probability; chosen on val for {:.0%} coverage): test coverage "
            "{}, accuracy on answered cases {}".format(
                a["threshold"],
                metrics["calibration_val"]["abstain_coverage"],
                _pct(a["coverage"]),
                _pct(a["accuracy_answered"], a["accuracy_answered_ci95"]),
            )
        )
    lines += [
        "",
        "| class | n | sensitivity | specificity | precision | AUROC |",
        "|---|---|---|---|---|---|",
    ]
    for c in classes:
        m = metrics["per_class"][c]
        lines.append(
            "| {} | {} | {} | {} | {} | {} |".format(
                c,
                m["support"],
                _pct(m["sensitivity"], m["sensitivity_ci95"]),
                _pct(m["specificity"], m["specificity_ci95"]),
                _pct(m["precision"], m["precision_ci95"]),
                _num(m["auroc"], m["auroc_ci95"]),
            )
        )
    if "confusion_matrix" in metrics:
        cm = metrics["confusion_matrix"]
        lines += [
            "",
            "Confusion matrix (rows true, columns predicted):",
            "",
            "| | " + " | ".join(classes) + " |",
            "|---" * (len(classes) + 1) + "|",
        ]
        for c, row in zip(classes, cm["counts"]):
            lines.append("| **{}** | ".format(c) + " | ".join(str(v) for v in row) + " |")
    return lines


def input_check_markdown(check):
    lines = ['| images | n | flagged "not a chest X-ray" |', "|---|---|---|"]
    lines.append(
        "| real X-rays of the test split (false rejections) | {} | {} |".format(
            check["test_xrays"]["n"], _pct(check["test_xrays"]["rate"])
        )
    )
    for cat, row in sorted(check["out_of_scope"].items()):
        if cat != "all":
            lines.append("| {} | {} | {} |".format(CATEGORY_NAMES.get(cat, cat), row["n"], _pct(row["rate"])))
    row = check["out_of_scope"]["all"]
    lines.append("| **all out-of-scope images** | {} | **{}** |".format(row["n"], _pct(row["rate"])))
    if check["missed"]:
        lines += [
            "",
            "Missed (accepted as X-rays): "
            + ", ".join("`{}` ({:.2f})".format(n, check["scores"][n]) for n in check["missed"]),
        ]
    return lines


CATEGORY_NAMES = {
    "skin-like": "project-generated skin-like photos",
    "shapes": "project-generated shapes",
    "blank": "blank / constant frames",
    "noise": "noise frames",
    "skimage": "real photos bundled with scikit-image",
}


def write_report(
    out_dir,
    recipe,
    module,
    counts,
    metrics,
    history,
    timings,
    probs_before,
    probs,
    targets,
    classes,
    task,
    split_info,
):
    os.makedirs(out_dir, exist_ok=True)
    write_plots(out_dir, probs_before, probs, targets, classes, task)
    cost = metrics["cost"]
    lines = [
        "# Evaluation: {} ({} @ {}x{})".format(
            module.title, recipe.arch, recipe.image_size, recipe.image_size
        ),
        "",
        "Test split of `{}` (patient-level; never used for training, early stopping, temperature or "
        "thresholds). Generated by `python -m training.recipes`.".format(split_info["split_file"]),
        "",
        "## Data",
        "",
    ]
    lines += split_table(counts)
    lines += ["", "## Test metrics", ""] + metrics_markdown(metrics, classes)
    if metrics.get("stage1_test"):
        lines += [
            "",
            "Stage 1 only (frozen backbone, linear head): test accuracy {}, macro AUROC {}.".format(
                _pct(metrics["stage1_test"].get("accuracy")), _num(metrics["stage1_test"].get("macro_auroc"))
            ),
        ]
    lines += [
        "",
        "![confusion matrix](confusion_matrix.png) ![ROC](roc.png)",
        "",
        "![reliability](reliability.png)",
        "",
        "## Input check (not a chest X-ray)",
        "",
    ]
    lines += input_check_markdown(metrics["input_check"])
    lines += [
        "",
        "## Cost",
        "",
        "- Parameters: {:,}; multiply-accumulates per image: {:.3g} G at {}; PyTorch CPU latency "
        "(1 thread, batch 1): {:.1f} ms".format(
            cost["parameters"], cost["macs_per_image"] / 1e9, cost["input"], cost["cpu_latency_ms_1thread"]
        ),
        "- Training time on 2 CPU cores: {}".format(
            ", ".join("{} {}".format(k, v) for k, v in timings.items())
        ),
    ]
    if recipe.budget:
        lines += ["- Budget: {}; at most {} epochs.".format(recipe.budget, recipe.tune_epochs)]
    lines += [
        "",
        "## Recipe",
        "",
        "```json",
        json.dumps(recipe.to_dict(), indent=1),
        "```",
        "",
        "## Training history",
        "",
        "```json",
        json.dumps(_json(history), indent=1),
        "```",
        "",
    ]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(_json(dict(metrics, timings=timings, recipe=recipe.to_dict())), handle, indent=1)
    return path


MODEL_CARD_NOTES = {
    "pediatric-pneumonia": [
        "Published anchor (Kermany et al., Cell 2018): 92.8% accuracy, 93.2% sensitivity, 90.1% "
        "specificity on their official 624-image test split. That split is not available here: our "
        "test split is a patient-level split of their training set, so the numbers are not "
        "directly comparable.",
        "Trained on children aged 1-5 from one hospital in Guangzhou: adult X-rays are out of its domain "
        "(use the adult chest module); other hospitals' equipment may shift its outputs.",
    ],
    "chest": [
        "NIH labels were mined from radiology reports by NLP and are noisy (estimated >90% accurate); "
        "the test split is small (see counts), so the confidence intervals are wide.",
        "Images with findings outside the four classes (e.g. Infiltration only, Cardiomegaly) were dropped "
        "from training, and images with two or more of the module's findings were dropped (multiclass): "
        "the model has never been told that findings co-occur, and a film showing another disease may be "
        "called 'No Finding' or one of the three.",
        "Adult frontal (PA/AP) X-rays only: paediatric films are out of its domain.",
    ],
}
COMMON_FAILURES = [
    "Photographing a film on a light box or a monitor (glare, perspective, moiré, cropped borders) is not "
    "represented in training: prefer the digital file from a USB stick; expect lower accuracy from photos.",
    "Lateral views, CT slices and other body parts are out of scope; the input check catches many but not "
    "all of them (see its rates above).",
    "The input check was measured on generated images and a few dozen real photos, not on every kind of "
    "image a user may show it.",
]


ANCHORS = {
    "pediatric-pneumonia": {
        "source": "Kermany et al., Cell 2018 (their official 624-image test split)",
        "accuracy": 0.928,
        "sensitivity": 0.932,
        "specificity": 0.901,
        "positive": "Pneumonia",
        "negative": "Normal",
    }
}


def comparison_markdown(module_id, metrics, recipe, docs_root=None):
    """The published anchor (if any) and the baselines evaluated on the same split, as markdown lines."""
    rows = []
    anchor = ANCHORS.get(module_id)
    if anchor and "accuracy" in metrics:
        pos, neg = metrics["per_class"][anchor["positive"]], metrics["per_class"][anchor["negative"]]
        rows.append(
            "| {} | {} | {} | {} | — |".format(
                anchor["source"],
                _pct(anchor["accuracy"]),
                _pct(anchor["sensitivity"]),
                _pct(anchor["specificity"]),
            )
        )
        rows.append(
            "| this model, {} @ {} (our patient-level test split of their training set) "
            "| {} | {} | {} | {} |".format(
                recipe.arch,
                recipe.image_size,
                _pct(metrics["accuracy"], metrics["accuracy_ci95"]),
                _pct(pos["sensitivity"], pos["sensitivity_ci95"]),
                _pct(neg["sensitivity"], neg["sensitivity_ci95"]),
                _num(metrics["macro_auroc"]),
            )
        )
    docs_root = docs_root or os.path.join(ROOT, "docs", "models")
    folder = os.path.join(docs_root, module_id)
    baselines = (
        sorted(d for d in os.listdir(folder) if d.startswith("baseline-")) if os.path.isdir(folder) else []
    )
    for name in baselines:
        path = os.path.join(folder, name, "metrics.json")
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as handle:
            base = json.load(handle)
        base_recipe = base.get("recipe") or {}
        budget = "{}, at most {} epochs".format(base_recipe.get("budget", ""), base_recipe.get("tune_epochs"))
        if anchor:
            bpos, bneg = base["per_class"][anchor["positive"]], base["per_class"][anchor["negative"]]
            extra = [
                _pct(bpos["sensitivity"], bpos["sensitivity_ci95"]),
                _pct(bneg["sensitivity"], bneg["sensitivity_ci95"]),
            ]
        else:
            extra = []
        rows.append(
            "| baseline: the seed's {} ({}; `docs/models/{}/{}/`) | {} | {}{} |".format(
                name[len("baseline-") :],
                budget,
                module_id,
                name,
                _pct(base.get("accuracy"), base.get("accuracy_ci95")),
                "".join(e + " | " for e in extra),
                _num(base.get("macro_auroc")),
            )
        )
    if not rows:
        return []
    if anchor:
        header = [
            "| model | accuracy | sensitivity ({}) | specificity | AUROC |".format(anchor["positive"]),
            "|---|---|---|---|---|",
        ]
    else:
        header = ["| model | accuracy | macro AUROC |", "|---|---|---|"]
        rows.insert(
            0,
            "| this model, {} @ {} | {} | {} |".format(
                recipe.arch,
                recipe.image_size,
                _pct(metrics.get("accuracy"), metrics.get("accuracy_ci95")),
                _num(metrics["macro_auroc"]),
            ),
        )
    return ["", "### Compared with", ""] + header + rows


CROSS_DOMAIN = os.path.join(ROOT, "docs", "models", "input-check-cross-domain.json")


def cross_domain_notes(module_id, path=CROSS_DOMAIN):
    """How often the input check stops X-rays of the other chest data set (measured by the shipped-bundle
    check in docs/models/README.md), as card lines."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        table = json.load(handle)
    notes = []
    for key, row in sorted(table.items()):
        model, _sep, data = key.partition(" model on ")
        if model == module_id and not data.startswith(module_id + " "):
            notes.append(
                "X-rays from the other chest module's data ({}) are stopped by the input check {} of the "
                "time ({} of {}); the rest get this module's findings. The check is built to separate X-rays "
                "from other images, not children from adults: choose the module that fits the "
                "patient.".format(data, _pct(row["rate"]), row["flagged"], row["n"])
            )
    return notes


def tune_summary(history):
    """Words for what stage 2 did: which epoch was kept (0 = the stage-1 model)."""
    tune = [row for row in (history or {}).get("tune", []) if "val_loss" in row]
    if not tune:
        return "stage 2 did not run"
    best = min(tune, key=lambda row: row["val_loss"])
    if best["epoch"] == 0:
        return (
            "stage 2 ran {} epoch(s) without beating the stage-1 validation loss, so the shipped weights are "
            "the stage-1 model (frozen backbone, trained head)".format(len(tune) - 1)
        )
    return "stage 2 kept epoch {} of {} (validation loss {:.4f} vs {:.4f} after stage 1)".format(
        best["epoch"], len(tune) - 1, best["val_loss"], tune[0]["val_loss"]
    )


def failure_notes(metrics, classes):
    """Measured weaknesses for the card: low-sensitivity classes, calibration that did not help."""
    notes = []
    for c in classes:
        m = metrics["per_class"][c]
        sens = m.get("sensitivity")
        if sens is not None and not (isinstance(sens, float) and math.isnan(sens)) and sens < 0.5:
            notes.append(
                "**{} is usually missed**: test sensitivity {} ({} cases). Do not rely on this module to "
                "rule it out.".format(c, _pct(sens, m.get("sensitivity_ci95")), m["support"])
            )
    before, after = metrics.get("ece_before_temperature"), metrics.get("ece")
    if before is not None and after is not None and after > before and after > 0.05:
        notes.append(
            "Temperature scaling, fitted on the small validation split, did not improve calibration on the "
            "test split (ECE {:.3f} -> {:.3f}): treat the percentages as rough.".format(before, after)
        )
    return notes


def split_table(counts):
    """Markdown rows: images, patients and per-class counts of each split."""
    lines = ["| split | images | patients | per class |", "|---|---|---|---|"]
    for name in ("train", "val", "test"):
        c = counts[name]
        row = (name, c["images"], c["patients"], json.dumps(c["per_class"]))
        lines.append("| {} | {} | {} | {} |".format(*row))
    return lines


def write_model_card(bundle, recipe, module, counts, metrics, timings, split_info, history=None):
    """Replace the exporter's generic card with the module's card (the export record is kept below)."""
    path = os.path.join(bundle, "model_card.md")
    with open(path, encoding="utf-8") as handle:
        exporter_card = handle.read()
    if EXPORT_RECORD in exporter_card:  # rewriting our own card: keep only the exporter's part
        exporter_card = "\n" + exporter_card.split(EXPORT_RECORD, 1)[1].lstrip("\n")
    with open(os.path.join(bundle, "manifest.json"), encoding="utf-8") as handle:
        check = json.load(handle)["model"]["input_check"]
    classes = list(module.classes)
    cal = metrics["calibration_val"]
    lines = [
        "# {} — model card".format(module.title),
        "",
        "**Decision support only — not a diagnosis.** For trained health workers, who decide. The kiosk "
        "shows the findings' calibrated probabilities, an *uncertain* state below the abstain threshold and "
        '"Not a chest X-ray" when the input check fails.',
        "",
        "## Intended use",
        "",
        module.description,
        "",
        "## Model",
        "",
        "- {} (ImageNet-pretrained, offline weights), input {}x{} RGB (grey X-rays are replicated), "
        "task {} ({}). Classes: {}.".format(
            recipe.arch,
            recipe.image_size,
            recipe.image_size,
            module.task,
            "softmax" if module.task == "multiclass" else "sigmoid",
            ", ".join(classes),
        ),
        "- Training (CPU recipe `python -m training.recipes {}`): stage 1 trains the head on frozen "
        "embeddings; stage 2 fine-tunes the last {} blocks + head (BatchNorm frozen) with early stopping on "
        "the validation loss; {}. Time on 2 CPU cores: {:.0f} s.".format(
            module.id, recipe.tune_blocks, tune_summary(history), timings.get("total_train_s", 0)
        ),
        "- Temperature scaling on validation: T = {:.3f}; abstain threshold {:.3f} (top probability) chosen "
        "on validation for {:.0%} coverage.".format(
            cal["temperature"], cal["abstain_threshold"], cal["abstain_coverage"]
        ),
        "",
    ]
    lines += MODEL_CARD_TASK_NOTE.get(module.id, [])
    lines += ["## Data and provenance", ""]
    lines += ["- {}".format(a) for a in recipe.attribution]
    lines += [
        "- Split: by patient (`{}`; seed {}; 70/15/15 stratified by each patient's majority label); leak "
        "check (patients, identical files, perceptual near-duplicates) clean.".format(
            split_info["split_file"], recipe.seed
        ),
        "",
    ]
    lines += split_table(counts)
    lines += ["", "## Test metrics (95% confidence intervals)", ""] + metrics_markdown(metrics, classes)
    lines += comparison_markdown(module.id, metrics, recipe)
    lines += [
        "",
        "Full evaluation report, confusion matrix, ROC curves and reliability diagrams: "
        "`docs/models/{}/`.".format(module.id),
        "",
        '## Input check: "Not a chest X-ray"',
        "",
        "Computed inside the ONNX graph as output `ood_score` (above 1.0 = out of scope): the largest of "
        "(a) the Mahalanobis distance of the model's pooled embedding to the nearest training-class mean "
        "(shared covariance shrunk by {}, {} leading directions), divided by its threshold, chosen on "
        "validation X-rays for {:.0%} acceptance; (b) the image's mean colour saturation divided by {:.2f} "
        "(X-rays are grey); (c) 2 - grey-level contrast / {:.1f} (blank or uniform frames; {:.0%} of the "
        "lowest contrast among validation X-rays).".format(
            recipe.ood_shrinkage,
            recipe.ood_components,
            recipe.ood_accept,
            check["colour_threshold"],
            check["contrast_threshold"],
            recipe.contrast_fraction,
        ),
        "",
    ]
    lines += input_check_markdown(metrics["input_check"])
    lines += ["", "## Known failure modes and limitations", ""]
    notes = failure_notes(metrics, classes) + cross_domain_notes(module.id)
    notes += MODEL_CARD_NOTES.get(module.id, []) + COMMON_FAILURES
    lines += ["- " + note for note in notes]
    lines += ["", "---", "", EXPORT_RECORD, ""]
    lines += [line for line in exporter_card.splitlines()[1:]]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


MODEL_CARD_TASK_NOTE = {
    "chest": [
        "- Multiclass rather than multilabel: on the same frozen embeddings and the same 92 test images the "
        "two designs had the same macro AUROC (0.824 vs 0.826); multiclass gives probabilities that rank "
        "the findings directly. Details: `docs/models/chest/task-choice.md`.",
        "",
    ]
}
EXPORT_RECORD = "# Export record (written by the exporter)"


# --- CLI --------------------------------------------------------------------------------------------------


def recipe_for(name, baseline=None, **overrides):
    if name not in RECIPES:
        raise ConfigError("no recipe for {!r}. Fix: use one of {}".format(name, ", ".join(sorted(RECIPES))))
    recipe = RECIPES[name]
    if baseline:
        if baseline not in BASELINES:
            raise ConfigError(
                "unknown baseline {!r}. Fix: use one of {}".format(baseline, ", ".join(BASELINES))
            )
        recipe = replace(recipe, **BASELINES[baseline])
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None})


def rewrite_card(recipe, run_dir, models_dir, split_dir):
    """Rewrite an installed bundle's model card from a finished run's metrics.json (no training)."""
    from training.modules import get_module
    from training.splits import Split

    module = get_module(recipe.module)
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as handle:
        saved = json.load(handle)
    split_file = os.path.join(split_dir, "{}.json".format(recipe.module))
    counts = Split.from_file(split_file, root=os.path.join(DEFAULT_DATA_ROOT, recipe.data)).counts()
    info = {"split_file": os.path.relpath(split_file, ROOT)}
    path = write_model_card(
        os.path.join(models_dir, module.id),
        recipe,
        module,
        counts,
        saved,
        saved["timings"],
        info,
        saved["history"],
    )
    print(path)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m training.recipes",
        description="Train, calibrate, export and evaluate a shipped chest module on CPU.",
    )
    parser.add_argument("module", choices=sorted(RECIPES))
    parser.add_argument("--out", help="run folder (default runs/<module>)")
    parser.add_argument(
        "--data-root", default=DEFAULT_DATA_ROOT, help="folder holding chest-nih/ and chest-pediatric/"
    )
    parser.add_argument(
        "--splits", default=os.path.join(ROOT, "splits"), help="folder of the committed split files"
    )
    parser.add_argument(
        "--models", default=os.path.join(ROOT, "models"), help="where the bundle is installed"
    )
    parser.add_argument(
        "--docs", default=os.path.join(ROOT, "docs", "models"), help="where the report is written"
    )
    parser.add_argument(
        "--baseline", choices=sorted(BASELINES), help="train this baseline instead (installs nothing)"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="write the bundle and report under --out only"
    )
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--tune-blocks", type=int)
    parser.add_argument("--tune-epochs", type=int)
    parser.add_argument("--patience", type=int, help="stage-2 epochs without validation improvement")
    parser.add_argument("--limit-per-class", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--rewrite-card",
        action="store_true",
        help="only rewrite the installed bundle's model card from --out",
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    recipe = recipe_for(
        args.module,
        args.baseline,
        image_size=args.image_size,
        tune_blocks=args.tune_blocks,
        tune_epochs=args.tune_epochs,
        patience=args.patience,
        limit_per_class=args.limit_per_class,
    )
    out = args.out or os.path.join(ROOT, "runs", args.module + ("-" + args.baseline if args.baseline else ""))
    if args.rewrite_card:
        return rewrite_card(recipe, out, args.models, args.splits)
    install = not args.no_install and not args.baseline
    docs = None
    if not args.no_install:
        docs = os.path.join(args.docs, args.module, "baseline-" + args.baseline if args.baseline else "")
    try:
        result = train_recipe(
            recipe,
            out,
            data_root=args.data_root,
            split_dir=args.splits,
            models_dir=args.models
            if install
            else (os.path.join(out, "models") if not args.baseline else None),
            docs_dir=docs,
            threads=args.threads,
        )
    except MedkioskError as exc:
        sys.stderr.write("medkiosk: error: {}\n".format(exc))
        return getattr(exc, "exit_code", 2)
    print(
        json.dumps(
            {
                "checkpoint": result.checkpoint,
                "bundle": result.bundle,
                "report": result.report,
                "headline": _headline(result.metrics),
                "timings": result.timings,
                "cross_check_training_evaluate": result.cross_check,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
