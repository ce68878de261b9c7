"""The options of a training run, shared by ``medkiosk train`` (``training.cli``) and torchrun's
``training.distributed``: the argparse arguments, the thread count and the TrainConfig they make.

Light at import (argparse only): torch is imported inside the functions that need it.
"""


def add_train_arguments(parser):
    parser.add_argument("--data", required=True, help="image folder (one subfolder per class), or the images "
                        "folder of --csv")
    parser.add_argument("--csv", help="NIH-style CSV (image, finding labels, patient id); needs --module")
    parser.add_argument("--module", help="built-in module (skin, chest, pediatric-pneumonia) or a module "
                        ".json/.ini: classes, task, colour, size, augmentation")
    parser.add_argument("--arch", default="efficientnet_lite0", help="architecture (see `medkiosk train "
                        "--list-archs`; default %(default)s)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", required=True, help="run folder: best.pt, last.pt, metrics.csv, split.json")
    parser.add_argument("--image-size", type=int, help="input size (default: the module's, else 224)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--optimizer", choices=("adam", "adamw"), default="adamw")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--task", choices=("multiclass", "multilabel"), help="default: the module's")
    parser.add_argument("--colour", choices=("RGB", "GRAY"), help="default: the module's, else RGB")
    parser.add_argument("--augmentation", help="augmentation preset (default: the module's, else none)")
    parser.add_argument("--balance", choices=("none", "sampler", "weights"), default="none",
                        help="class balancing: weighted sampler or loss weights")
    parser.add_argument("--split-file", help="reuse this split (from `medkiosk data split`)")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--patience", type=int,
                        help="stop after this many epochs without val-loss improvement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="data-loading processes")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                        help="random init (default: ImageNet weights, which must be on this machine)")
    parser.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                        help="skip the temperature fit on the validation split")
    parser.add_argument("--abstain-coverage", type=float, default=0.9,
                        help="fraction of validation cases answered; sets the 'uncertain' threshold")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: one per core)")


def set_threads(args):
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def train_config(args):
    from training.train import TrainConfig

    keys = ("data", "csv", "module", "arch", "epochs", "out", "image_size", "batch_size", "lr",
            "weight_decay", "optimizer", "label_smoothing", "task", "colour", "augmentation", "balance",
            "split_file",
            "val_fraction", "test_fraction", "warmup_epochs", "patience", "seed", "workers", "device",
            "pretrained", "calibrate", "abstain_coverage", "resume", "progress")
    return TrainConfig(**{key: getattr(args, key) for key in keys})
