"""Training: data -> patient-level split -> backbone -> best.pt / last.pt / metrics.csv.

Adam(W), cross-entropy (multiclass) or BCE (multilabel), linear warm-up then cosine decay per
step, best-validation-loss checkpoint, early stopping, deterministic seeds (every epoch reseeds
from ``seed + epoch`` so a resumed run continues exactly), AMP + channels_last on CUDA. Under
``torchrun`` (see ``training.distributed``) it trains with DDP and only rank 0 writes files.
At the end the temperature is fitted on the validation split and written into best.pt.
"""

import csv
import dataclasses
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch
from torch import nn

from edge.description import InputSpec, ModelDescription
from edge.errors import ConfigError, MedkioskError
from training.checkpoint import build_net, make_checkpoint, read_checkpoint, save_checkpoint
from training.nets import default_normalisation
from training.registry import get_arch

OPTIMIZERS = ("adam", "adamw")
BALANCE_MODES = ("none", "sampler", "weights")
DEVICES = ("auto", "cpu", "cuda")
SPLIT_FILE = "split.json"
METRICS_FILE = "metrics.csv"
BEST = "best.pt"
MAX_RECORDED_VAL_IMAGES = 64
LAST = "last.pt"


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in the checkpoint as ``config``)."""

    data: str
    arch: str = "efficientnet_lite0"  # the one architecture whose ImageNet weights ship offline
    epochs: int = 10
    out: str = "runs/run"
    image_size: Optional[int] = None  # None: the module's size, else the architecture's (224)
    batch_size: int = 32
    seed: int = 0
    pretrained: bool = True
    workers: int = 2
    progress: bool = True
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    label_smoothing: float = 0.0
    task: Optional[str] = None  # None: the module's task, else multiclass
    module: Optional[str] = None  # built-in module id or module file
    csv: Optional[str] = None  # NIH-style CSV; then ``data`` is the images folder
    split_file: Optional[str] = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    balance: str = "none"
    augmentation: Optional[str] = None  # None: the module's preset, else "none"
    colour: Optional[str] = None  # None: the module's colour, else RGB
    warmup_epochs: float = 1.0  # linear warm-up, capped at a fifth of the run
    patience: Optional[int] = None  # epochs without val-loss improvement before stopping
    resume: bool = False
    device: str = "auto"
    calibrate: bool = True
    abstain_coverage: float = 0.9  # fraction of validation cases the kiosk should answer
    max_grad_norm: Optional[float] = 5.0
    precise_bn_batches: int = 50  # re-estimate BatchNorm statistics on this many train batches per epoch
    cache_images: bool = True  # keep resized images in memory (a 224px RGB image is 150 KB)

    def validate(self):
        if self.epochs < 1:
            raise ConfigError("epochs must be >= 1, got {}".format(self.epochs))
        if self.batch_size < 1:
            raise ConfigError("batch size must be >= 1, got {}".format(self.batch_size))
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer must be one of {}, got {!r}".format(OPTIMIZERS, self.optimizer))
        if self.balance not in BALANCE_MODES:
            raise ConfigError("balance must be one of {}, got {!r}".format(BALANCE_MODES, self.balance))
        if self.device not in DEVICES:
            raise ConfigError("device must be one of {}, got {!r}".format(DEVICES, self.device))
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ConfigError("val/test fractions must be in [0, 1) and sum below 1, got {} and {}".format(
                self.val_fraction, self.test_fraction))
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError("label smoothing must be in [0, 1), got {}".format(self.label_smoothing))
        if not 0 < self.abstain_coverage <= 1:
            raise ConfigError("abstain coverage must be in (0, 1], got {}".format(self.abstain_coverage))
        if self.workers < 0:
            raise ConfigError("workers must be >= 0, got {}".format(self.workers))
        get_arch(self.arch)

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    best_checkpoint: str
    last_checkpoint: str
    history: List[dict] = field(default_factory=list)
    run_dir: str = ""


@dataclass
class _Dist:
    """Distributed context: a single process unless torch.distributed is initialised."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self):
        return self.rank == 0

    @property
    def enabled(self):
        return self.world_size > 1

    @classmethod
    def current(cls):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
        return cls()

    def broadcast_buffers(self, net):
        """Give every rank rank 0's BatchNorm statistics so all validate (and stop) identically."""
        if self.enabled:
            import torch.distributed as dist

            for buffer in net.buffers():
                dist.broadcast(buffer, 0)

    def barrier(self):
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


def log(message):
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


# --- setup -----------------------------------------------------------------------------------

def resolve_device(name, dist_ctx=None):
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked but no CUDA GPU is usable here. Fix: run on a GPU "
                              "machine or pass --device cpu")
        index = dist_ctx.local_rank if dist_ctx is not None else 0
        return torch.device("cuda", index)
    return torch.device("cpu")


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _worker_init(worker_id):
    seed = torch.initial_seed() % (2 ** 32)
    random.seed(seed)
    np.random.seed(seed)


def resolve_module(config):
    """The ModuleDefinition (or None) and the resolved task/colour/size/augmentation."""
    module = None
    if config.module:
        from training.modules import get_module

        module = get_module(config.module)
    task = config.task or (module.task if module else "multiclass")
    colour = config.colour or (module.colour if module else "RGB")
    size = int(config.image_size or (module.image_size if module else get_arch(config.arch).default_size))
    augmentation = config.augmentation or (module.augmentation if module else "none")
    return module, task, colour, size, augmentation


def load_training_samples(config, module):
    """Samples of the data set (folder or CSV) and the class list."""
    from training import data as data_mod

    if config.csv:
        if module is None:
            raise ConfigError("--csv needs --module (the CSV's class list comes from the module). Fix: pass "
                              "--module chest or a module file")
        samples = data_mod.samples_from_csv(config.csv, config.data, module.classes,
                                            multi_finding=module.multi_finding)
    else:
        samples = data_mod.samples_from_folder(config.data, classes=module.classes if module else None)
    if module is not None:
        classes = list(module.classes)
    else:
        classes = sorted({label for sample in samples for label in sample.labels})
    if len(samples) == 0:
        raise ConfigError("no images found in {}".format(config.data))
    return samples, classes


def make_or_load_split(config, samples, run_dir, dist_ctx):
    """Reuse --split-file or the run's split.json (on resume), else make a patient-level split."""
    from training import splits

    existing = config.split_file or (os.path.join(run_dir, SPLIT_FILE) if config.resume else None)
    if existing and os.path.isfile(existing):
        split = splits.Split.from_file(existing)
    elif config.split_file:
        raise ConfigError("split file {} does not exist. Fix: pass a split written by `medkiosk data split` "
                          "or drop --split-file".format(config.split_file))
    else:
        train_fraction = 1.0 - config.val_fraction - config.test_fraction
        split = splits.make_split(samples, fractions=(train_fraction, config.val_fraction,
                                                      config.test_fraction), seed=config.seed)
    if dist_ctx.main:
        # Rank 0 alone checks (and caches image hashes in the run folder); a leak stops every rank.
        cache = None if split.path else os.path.join(run_dir, SPLIT_FILE + ".hashes.json")
        splits.check_leaks(split, cache_path=cache)
    if not split.train:
        raise ConfigError("the training split is empty. Fix: add images or lower "
                          "--val-fraction/--test-fraction")
    if dist_ctx.main:
        split.to_file(os.path.join(run_dir, SPLIT_FILE))
    return split


def _split_stats(samples, classes):
    per_class = {c: 0 for c in classes}
    for sample in samples:
        for label in sample.labels:
            if label in per_class:
                per_class[label] += 1
    return {"images": len(samples), "patients": len({s.patient_id for s in samples}), "per_class": per_class}


def data_summary(config, split, classes):
    return {
        "source": os.path.abspath(config.data),
        "csv": os.path.abspath(config.csv) if config.csv else None,
        "classes": list(classes),
        "splits": {name: _split_stats(getattr(split, name), classes) for name in ("train", "val", "test")},
    }


def _targets(samples, classes, task):
    index = {c: i for i, c in enumerate(classes)}
    if task == "multiclass":
        return np.array([index[s.labels[0]] for s in samples], dtype=np.int64)
    hot = np.zeros((len(samples), len(classes)), dtype=np.float32)
    for row, sample in enumerate(samples):
        for label in sample.labels:
            hot[row, index[label]] = 1.0
    return hot


def class_weights(samples, classes, task):
    """Inverse-frequency class weights (multiclass) or positive weights neg/pos (multilabel)."""
    targets = _targets(samples, classes, task)
    if task == "multiclass":
        counts = np.bincount(targets, minlength=len(classes)).astype(np.float64)
        weights = len(targets) / (len(classes) * np.maximum(counts, 1.0))
    else:
        positives = targets.sum(axis=0).astype(np.float64)
        weights = (len(targets) - positives) / np.maximum(positives, 1.0)
    return torch.tensor(weights, dtype=torch.float32)


def sample_weights(samples, classes, task):
    """Per-sample weights for a class-balanced sampler."""
    targets = _targets(samples, classes, task)
    if task == "multiclass":
        per_class = class_weights(samples, classes, task).numpy()
        return torch.tensor(per_class[targets], dtype=torch.double)
    counts = targets.sum(axis=0)
    inverse = 1.0 / np.maximum(counts, 1.0)
    weights = np.where(targets.any(axis=1), (targets * inverse).max(axis=1), inverse.mean())
    return torch.tensor(weights, dtype=torch.double)


def make_loaders(config, split, classes, task, input_spec, augmentation, device, dist_ctx):
    from torch.utils.data import DataLoader, WeightedRandomSampler
    from torch.utils.data.distributed import DistributedSampler

    from training.augment import build_transform
    from training.datasets import ImageDataset

    cache = config.cache_images
    train_set = ImageDataset(split.train, classes, input_spec, task,
                             transform=build_transform(augmentation, input_spec), cache=cache)
    val_set = ImageDataset(split.val, classes, input_spec, task, cache=cache) if split.val else None
    generator = torch.Generator()
    common = {"num_workers": config.workers, "pin_memory": device.type == "cuda",
              "worker_init_fn": _worker_init, "persistent_workers": config.workers > 0}
    sampler = None
    if dist_ctx.enabled:
        sampler = DistributedSampler(train_set, num_replicas=dist_ctx.world_size, rank=dist_ctx.rank,
                                     shuffle=True, seed=config.seed, drop_last=False)
    elif config.balance == "sampler":
        sampler = WeightedRandomSampler(sample_weights(split.train, classes, task), len(split.train),
                                        replacement=True, generator=generator)
    train_loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=sampler is None,
                              sampler=sampler, generator=generator,
                              drop_last=len(train_set) > config.batch_size, **common)
    val_loader = None
    if val_set is not None:
        val_loader = DataLoader(val_set, batch_size=config.batch_size, shuffle=False, **common)
    return train_loader, val_loader, generator, sampler


def make_criterion(config, split, classes, task, device):
    weights = class_weights(split.train, classes, task).to(device) if config.balance == "weights" else None
    if task == "multiclass":
        return nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    return nn.BCEWithLogitsLoss(pos_weight=weights)


def make_optimizer(config, net):
    decay, no_decay = [], []
    for param in net.parameters():
        if not param.requires_grad:
            continue
        # No weight decay on biases and norm parameters.
        (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.Adam(groups, lr=config.lr)


def make_scheduler(optimizer, total_steps, warmup_steps):
    def factor(step):
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --- the loop --------------------------------------------------------------------------------

def _progress(iterable, enabled, desc, total=None):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


def _to_device(x, y, device):
    x = x.to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


def recompute_batchnorm(net, loader, device, max_batches):
    """Precise BatchNorm: replace the running statistics by their average over training batches.

    Short runs otherwise validate with statistics still dominated by their initial values.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or max_batches <= 0:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for index, (x, y) in enumerate(loader):
            if index >= max_batches:
                break
            x, _y = _to_device(x, y, device)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                net(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def predict_logits(net, loader, device, progress=False, desc="predict"):
    """Logits and targets over a loader (eval mode, no grad), as CPU tensors."""
    net.eval()
    logits, targets = [], []
    with torch.no_grad():
        for x, y in _progress(loader, progress, desc):
            x, y = _to_device(x, y, device)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                out = net(x)
            logits.append(out.float().cpu())
            targets.append(y.cpu())
    if not logits:
        return torch.empty(0), torch.empty(0)
    return torch.cat(logits), torch.cat(targets)


def val_metrics(logits, targets, task):
    """Plain (unweighted, unsmoothed) validation loss and accuracy."""
    if task == "multiclass":
        loss = nn.functional.cross_entropy(logits, targets.long()).item()
        accuracy = (logits.argmax(1) == targets.long()).float().mean().item()
    else:
        loss = nn.functional.binary_cross_entropy_with_logits(logits, targets.float()).item()
        accuracy = ((logits > 0).float() == targets.float()).float().mean().item()
    return loss, accuracy


def _rng_state():
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
    }


def _restore_rng(state):
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _write_metrics(path, history):
    if not history:
        return
    keys = list(history[0].keys())
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        for row in history:
            writer.writerow(row)
    os.replace(tmp, path)


def _description(config, module, task, colour, size, classes):
    mean, std = default_normalisation(colour)
    display = list(module.display_names) if module is not None else list(classes)
    extra = {"trained_with": "medkiosk train"}
    if module is not None:
        extra["module"] = module.id
    return ModelDescription(arch=config.arch, task=task, classes=classes,
                            input_spec=InputSpec(size, size, colour=colour), mean=mean, std=std,
                            display_names=display, extra=extra)


def _check_pretrained_weights(config):
    """Fail before reading the data when the pretrained weights asked for are not on this machine."""
    spec = get_arch(config.arch)
    if config.pretrained and not spec.offline_weights():
        spec.builder(2, True, spec.default_size)  # raises the architecture's own error naming the fix


def _check_resume_compatible(state, config, description):
    old = state.get("config") or {}
    for key in ("arch", "data", "csv", "module", "image_size", "task", "seed", "batch_size"):
        if key in old and old[key] != getattr(config, key):
            raise ConfigError("cannot resume: {} was {!r} in the saved run, now {!r}. Fix: resume with the "
                              "same settings or pass a new --out".format(key, old[key], getattr(config, key)))
    if state["description"]["classes"] != description.classes:
        raise ConfigError("cannot resume: the classes changed. Fix: pass a new --out")


def train(config):
    """Train a model; return TrainResult(best_checkpoint, last_checkpoint, history, run_dir)."""
    config.validate()
    dist_ctx = _Dist.current()
    if dist_ctx.enabled and config.balance == "sampler":
        raise ConfigError("--balance sampler cannot be combined with several processes (each rank draws its "
                          "share with a DistributedSampler). Fix: use --balance weights")
    _check_pretrained_weights(config)
    device = resolve_device(config.device, dist_ctx)
    run_dir = os.path.abspath(config.out)
    best_path, last_path = os.path.join(run_dir, BEST), os.path.join(run_dir, LAST)
    metrics_path = os.path.join(run_dir, METRICS_FILE)
    if dist_ctx.main:
        os.makedirs(run_dir, exist_ok=True)
    dist_ctx.barrier()

    resume_state = None
    if config.resume:
        if not os.path.isfile(last_path):
            raise ConfigError("cannot resume: {} does not exist. Fix: drop --resume or pass the run's "
                              "--out".format(last_path))
        resume_state = read_checkpoint(last_path)
    elif dist_ctx.main and os.path.isfile(best_path):
        log("note: {} already holds a run; it is replaced (use --resume to continue it)".format(run_dir))
        for stale_file in (best_path, last_path, metrics_path):
            if os.path.isfile(stale_file):
                os.remove(stale_file)

    seed_everything(config.seed)
    module, task, colour, size, augmentation = resolve_module(config)
    samples, classes = load_training_samples(config, module)
    description = _description(config, module, task, colour, size, classes)
    if resume_state is not None:
        _check_resume_compatible(resume_state, config, description)
    split = make_or_load_split(config, samples, run_dir, dist_ctx)
    summary = data_summary(config, split, classes)
    if dist_ctx.main:
        log("data: {} classes; train {} / val {} / test {} images".format(
            len(classes), len(split.train), len(split.val), len(split.test)))

    seed_everything(config.seed)
    net = build_net(description, pretrained=config.pretrained).to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    model = net
    if dist_ctx.enabled:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)

    train_loader, val_loader, generator, sampler = make_loaders(
        config, split, classes, task, description.input, augmentation, device, dist_ctx)
    criterion = make_criterion(config, split, classes, task, device)
    optimizer = make_optimizer(config, net)
    steps_per_epoch = max(1, len(train_loader))
    total_steps = config.epochs * steps_per_epoch
    # Warm-up is capped at a fifth of the run so short runs are not mostly warm-up.
    warmup_steps = int(round(min(config.warmup_epochs * steps_per_epoch, 0.2 * total_steps)))
    scheduler = make_scheduler(optimizer, total_steps, warmup_steps)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    history, best_val, best_epoch, best_acc, stale, start_epoch = [], math.inf, 0, float("nan"), 0, 0
    if resume_state is not None:
        net.load_state_dict(resume_state["state_dict"])
        extra = resume_state["resume"]
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
        scaler.load_state_dict(extra["scaler"])
        _restore_rng(extra["rng"])
        history = list(extra["history"])
        best_val, best_epoch, stale = extra["best_val_loss"], extra["best_epoch"], extra["stale_epochs"]
        best_acc = extra.get("best_val_accuracy", float("nan"))
        start_epoch = resume_state["epoch"]
        if dist_ctx.main:
            log("resuming {} after epoch {}".format(run_dir, start_epoch))

    training_info = {"data": summary, "metrics": {},
                     "run": {"device": device.type, "world_size": dist_ctx.world_size,
                             "amp": use_amp, "torch": str(torch.__version__)}}
    module_info = {"id": module.id if module else None, "title": module.title if module else None}
    for epoch in range(start_epoch, config.epochs):
        if config.patience is not None and stale >= config.patience:
            break
        started = time.time()
        seed_everything(config.seed + epoch + 1)
        generator.manual_seed(config.seed + epoch + 1)
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        model.train()
        total, count = 0.0, 0
        bar = _progress(train_loader, config.progress and dist_ctx.main,
                        "epoch {}/{}".format(epoch + 1, config.epochs), total=len(train_loader))
        for x, y in bar:
            x, y = _to_device(x, y, device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, enabled=use_amp):
                loss = criterion(model(x), y)
            if not torch.isfinite(loss):
                raise MedkioskError("training diverged at epoch {} (loss {}). Fix: lower --lr".format(
                    epoch + 1, loss.item()))
            scaler.scale(loss).backward()
            if config.max_grad_norm:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(net.parameters(), config.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total += loss.item() * x.shape[0]
            count += x.shape[0]
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss="{:.4f}".format(loss.item()))
        train_loss = total / max(count, 1)
        recompute_batchnorm(net, train_loader, device, config.precise_bn_batches)
        dist_ctx.broadcast_buffers(net)
        if val_loader is not None:
            logits, targets = predict_logits(net, val_loader, device)
            val_loss, val_acc = val_metrics(logits, targets, task)
        else:
            val_loss, val_acc = train_loss, float("nan")
        if not math.isfinite(val_loss):
            raise MedkioskError("training diverged at epoch {} (validation loss {}). Fix: lower --lr".format(
                epoch + 1, val_loss))
        row = {"epoch": epoch + 1, "train_loss": round(train_loss, 6), "val_loss": round(val_loss, 6),
               "val_accuracy": round(val_acc, 6), "lr": optimizer.param_groups[0]["lr"],
               "seconds": round(time.time() - started, 2)}
        history.append(row)
        improved = val_loss < best_val
        if improved:
            best_val, best_epoch, best_acc, stale = val_loss, epoch + 1, val_acc, 0
        else:
            stale += 1
        if dist_ctx.main:
            log("epoch {}/{}: train loss {:.4f}, val loss {:.4f}, val accuracy {:.3f}{}".format(
                epoch + 1, config.epochs, train_loss, val_loss, val_acc, " (best)" if improved else ""))
            training_info["metrics"] = {"best_epoch": best_epoch, "best_val_loss": best_val,
                                        "best_val_accuracy": best_acc, "epochs_trained": epoch + 1,
                                        "history": history}
            if improved:
                best = make_checkpoint(net, description, epoch + 1, val_loss, module_info, training_info,
                                       config.to_dict())
                # Outside "training" (which goes into the bundle manifest): export's parity images.
                best["splits"] = {"val": [s.path for s in split.val[:MAX_RECORDED_VAL_IMAGES]]}
                save_checkpoint(best_path, best)
            resume = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "scaler": scaler.state_dict(), "rng": _rng_state(), "history": history,
                      "best_val_loss": best_val, "best_epoch": best_epoch, "best_val_accuracy": best_acc,
                      "stale_epochs": stale}
            save_checkpoint(last_path, make_checkpoint(
                net, description, epoch + 1, val_loss, module_info, training_info, config.to_dict(), resume))
            _write_metrics(metrics_path, history)
        dist_ctx.barrier()

    if dist_ctx.main and config.calibrate and val_loader is not None and os.path.isfile(best_path):
        from training.calibration import calibrate_checkpoint

        calibrate_checkpoint(best_path, val_loader, device, coverage=config.abstain_coverage)
    dist_ctx.barrier()
    return TrainResult(best_checkpoint=best_path, last_checkpoint=last_path, history=history, run_dir=run_dir)
