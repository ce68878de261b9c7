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
from training.calibration import calibrate_checkpoint
from training.checkpoint import build_net, make_checkpoint, read_checkpoint, save_checkpoint
from training.nets import default_normalisation
from training.predict import predict_logits, progress_bar, recompute_batchnorm, to_device, val_metrics
from training.registry import get_arch
from training.run_data import (
    data_summary,
    load_training_samples,
    make_criterion,
    make_loaders,
    make_or_load_split,
    resolve_module,
)

OPTIMIZERS = ("adam", "adamw")
BALANCE_MODES = ("none", "sampler", "weights")
DEVICES = ("auto", "cpu", "cuda")
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


@dataclass
class _Best:
    """Where the run stands: its history and its best epoch so far."""

    history: list = field(default_factory=list)
    val_loss: float = math.inf
    epoch: int = 0
    accuracy: float = float("nan")
    stale: int = 0
    start_epoch: int = 0

    def update(self, epoch, val_loss, val_acc):
        improved = val_loss < self.val_loss
        if improved:
            self.val_loss, self.epoch, self.accuracy, self.stale = val_loss, epoch + 1, val_acc, 0
        else:
            self.stale += 1
        return improved

    def resume_record(self):
        return {"history": self.history, "best_val_loss": self.val_loss, "best_epoch": self.epoch,
                "best_val_accuracy": self.accuracy, "stale_epochs": self.stale}


class _Session(object):
    """Everything one training run holds: paths, data, network, optimiser and the best epoch."""

    def __init__(self, config, dist_ctx):
        self.config, self.dist = config, dist_ctx
        self.run_dir = os.path.abspath(config.out)
        self.best_path = os.path.join(self.run_dir, BEST)
        self.last_path = os.path.join(self.run_dir, LAST)
        self.metrics_path = os.path.join(self.run_dir, METRICS_FILE)
        self.best = _Best()


def _open_run_dir(run):
    """The run folder made; the saved state when resuming, else a previous run's files removed."""
    if run.dist.main:
        os.makedirs(run.run_dir, exist_ok=True)
    run.dist.barrier()
    if run.config.resume:
        if not os.path.isfile(run.last_path):
            raise ConfigError("cannot resume: {} does not exist. Fix: drop --resume or pass the run's "
                              "--out".format(run.last_path))
        return read_checkpoint(run.last_path)
    if run.dist.main and os.path.isfile(run.best_path):
        log("note: {} already holds a run; it is replaced (use --resume to continue it)".format(run.run_dir))
        for stale_file in (run.best_path, run.last_path, run.metrics_path):
            if os.path.isfile(stale_file):
                os.remove(stale_file)
    return None


def _load_data(run, resume_state):
    config = run.config
    seed_everything(config.seed)
    module, run.task, colour, size, run.augmentation = resolve_module(config)
    samples, run.classes = load_training_samples(config, module)
    run.description = _description(config, module, run.task, colour, size, run.classes)
    if resume_state is not None:
        _check_resume_compatible(resume_state, config, run.description)
    run.split = make_or_load_split(config, samples, run.run_dir, run.dist)
    run.module_info = {"id": module.id if module else None, "title": module.title if module else None}
    if run.dist.main:
        log("data: {} classes; train {} / val {} / test {} images".format(
            len(run.classes), len(run.split.train), len(run.split.val), len(run.split.test)))
    return data_summary(config, run.split, run.classes)


def _build(run):
    """Network (DDP-wrapped when distributed), loaders, loss, optimiser, schedule and AMP scaler."""
    config, device = run.config, run.device
    seed_everything(config.seed)
    run.net = build_net(run.description, pretrained=config.pretrained).to(device)
    if device.type == "cuda":
        run.net = run.net.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    run.model = run.net
    if run.dist.enabled:
        run.model = nn.parallel.DistributedDataParallel(
            run.net, device_ids=[device.index] if device.type == "cuda" else None)
    run.train_loader, run.val_loader, run.generator, run.sampler = make_loaders(
        config, run.split, run.classes, run.task, run.description.input, run.augmentation, device, run.dist)
    run.criterion = make_criterion(config, run.split, run.classes, run.task, device)
    run.optimizer = make_optimizer(config, run.net)
    steps_per_epoch = max(1, len(run.train_loader))
    total_steps = config.epochs * steps_per_epoch
    # Warm-up is capped at a fifth of the run so short runs are not mostly warm-up.
    warmup_steps = int(round(min(config.warmup_epochs * steps_per_epoch, 0.2 * total_steps)))
    run.scheduler = make_scheduler(run.optimizer, total_steps, warmup_steps)
    run.use_amp = device.type == "cuda"
    run.scaler = torch.amp.GradScaler("cuda", enabled=run.use_amp)


def _resume(run, state):
    run.net.load_state_dict(state["state_dict"])
    extra = state["resume"]
    run.optimizer.load_state_dict(extra["optimizer"])
    run.scheduler.load_state_dict(extra["scheduler"])
    run.scaler.load_state_dict(extra["scaler"])
    _restore_rng(extra["rng"])
    best = run.best
    best.history = list(extra["history"])
    best.val_loss, best.epoch, best.stale = extra["best_val_loss"], extra["best_epoch"], extra["stale_epochs"]
    best.accuracy = extra.get("best_val_accuracy", float("nan"))
    best.start_epoch = state["epoch"]
    if run.dist.main:
        log("resuming {} after epoch {}".format(run.run_dir, best.start_epoch))


def _train_epoch(run, epoch):
    """One pass over the training loader; returns the mean training loss."""
    config, device = run.config, run.device
    seed_everything(config.seed + epoch + 1)
    run.generator.manual_seed(config.seed + epoch + 1)
    if run.sampler is not None and hasattr(run.sampler, "set_epoch"):
        run.sampler.set_epoch(epoch)
    run.model.train()
    total, count = 0.0, 0
    bar = progress_bar(run.train_loader, config.progress and run.dist.main,
                       "epoch {}/{}".format(epoch + 1, config.epochs), total=len(run.train_loader))
    for x, y in bar:
        x, y = to_device(x, y, device)
        run.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=run.use_amp):
            loss = run.criterion(run.model(x), y)
        if not torch.isfinite(loss):
            raise MedkioskError("training diverged at epoch {} (loss {}). Fix: lower --lr".format(
                epoch + 1, loss.item()))
        run.scaler.scale(loss).backward()
        if config.max_grad_norm:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(run.net.parameters(), config.max_grad_norm)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        total += loss.item() * x.shape[0]
        count += x.shape[0]
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss="{:.4f}".format(loss.item()))
    return total / max(count, 1)


def _validate(run, epoch, train_loss):
    recompute_batchnorm(run.net, run.train_loader, run.device, run.config.precise_bn_batches)
    run.dist.broadcast_buffers(run.net)
    if run.val_loader is not None:
        logits, targets = predict_logits(run.net, run.val_loader, run.device)
        val_loss, val_acc = val_metrics(logits, targets, run.task)
    else:
        val_loss, val_acc = train_loss, float("nan")
    if not math.isfinite(val_loss):
        raise MedkioskError("training diverged at epoch {} (validation loss {}). Fix: lower --lr".format(
            epoch + 1, val_loss))
    return val_loss, val_acc


def _save_epoch(run, epoch, val_loss, improved):
    """best.pt when the epoch improved, last.pt (with the resume state) and metrics.csv; rank 0 only."""
    best, config = run.best, run.config
    run.training_info["metrics"] = {"best_epoch": best.epoch, "best_val_loss": best.val_loss,
                                    "best_val_accuracy": best.accuracy, "epochs_trained": epoch + 1,
                                    "history": best.history}
    if improved:
        data = make_checkpoint(run.net, run.description, epoch + 1, val_loss, run.module_info,
                               run.training_info, config.to_dict())
        # Outside "training" (which goes into the bundle manifest): export's parity images.
        data["splits"] = {"val": [s.path for s in run.split.val[:MAX_RECORDED_VAL_IMAGES]]}
        save_checkpoint(run.best_path, data)
    resume = dict(best.resume_record(), optimizer=run.optimizer.state_dict(),
                  scheduler=run.scheduler.state_dict(), scaler=run.scaler.state_dict(), rng=_rng_state())
    save_checkpoint(run.last_path, make_checkpoint(
        run.net, run.description, epoch + 1, val_loss, run.module_info, run.training_info, config.to_dict(),
        resume))
    _write_metrics(run.metrics_path, best.history)


def _run_epochs(run):
    config, best = run.config, run.best
    for epoch in range(best.start_epoch, config.epochs):
        if config.patience is not None and best.stale >= config.patience:
            break
        started = time.time()
        train_loss = _train_epoch(run, epoch)
        val_loss, val_acc = _validate(run, epoch, train_loss)
        best.history.append({"epoch": epoch + 1, "train_loss": round(train_loss, 6),
                             "val_loss": round(val_loss, 6), "val_accuracy": round(val_acc, 6),
                             "lr": run.optimizer.param_groups[0]["lr"],
                             "seconds": round(time.time() - started, 2)})
        improved = best.update(epoch, val_loss, val_acc)
        if run.dist.main:
            log("epoch {}/{}: train loss {:.4f}, val loss {:.4f}, val accuracy {:.3f}{}".format(
                epoch + 1, config.epochs, train_loss, val_loss, val_acc, " (best)" if improved else ""))
            _save_epoch(run, epoch, val_loss, improved)
        run.dist.barrier()


def train(config):
    """Train a model; return TrainResult(best_checkpoint, last_checkpoint, history, run_dir)."""
    config.validate()
    dist_ctx = _Dist.current()
    if dist_ctx.enabled and config.balance == "sampler":
        raise ConfigError("--balance sampler cannot be combined with several processes (each rank draws its "
                          "share with a DistributedSampler). Fix: use --balance weights")
    _check_pretrained_weights(config)
    run = _Session(config, dist_ctx)
    run.device = resolve_device(config.device, dist_ctx)
    resume_state = _open_run_dir(run)
    summary = _load_data(run, resume_state)
    _build(run)
    if resume_state is not None:
        _resume(run, resume_state)
    run.training_info = {"data": summary, "metrics": {},
                         "run": {"device": run.device.type, "world_size": dist_ctx.world_size,
                                 "amp": run.use_amp, "torch": str(torch.__version__)}}
    _run_epochs(run)
    if dist_ctx.main and config.calibrate and run.val_loader is not None and os.path.isfile(run.best_path):
        calibrate_checkpoint(run.best_path, run.val_loader, run.device, coverage=config.abstain_coverage)
    dist_ctx.barrier()
    return TrainResult(best_checkpoint=run.best_path, last_checkpoint=run.last_path, history=run.best.history,
                       run_dir=run.run_dir)
