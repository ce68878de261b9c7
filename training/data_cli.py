"""``medkiosk data``: synthetic data, patient-level splits, leak checks, offline augmentation,
photographed (camera-frame) test sets.

Thin: the work is in training.synth, training.data, training.splits, training.offline and
training.photograph below.
Light at import (no torch, no numpy): the libraries are imported inside the handlers.
"""

import json
import os

from edge.errors import ConfigError


def _print_json(data):
    print(json.dumps(data, indent=1, sort_keys=True))


def run_synth(args):
    from training import synth

    if args.kind == "skin":
        from training.modules import get_module

        skin_classes = list(get_module("skin").classes)
        if not 2 <= args.classes <= len(skin_classes):
            raise ConfigError("--kind skin supports 2..{} classes, got {}".format(
                len(skin_classes), args.classes))
        names = skin_classes[:args.classes]
        synth.generate_skin_like(args.out, args.per_class, size=args.size or 224, seed=args.seed,
                                 classes=names)
    else:
        names = synth.generate_dataset(args.out, num_classes=args.classes, per_class=args.per_class,
                                       size=args.size or 96, seed=args.seed)
    print("wrote {} x {} images ({}) to {}".format(len(names), args.per_class, ", ".join(names), args.out))
    return 0


def _fractions(args):
    train = 1.0 - args.val_fraction - args.test_fraction
    return (round(train, 6), args.val_fraction, args.test_fraction)


def run_split(args):
    from training import data, splits
    from training.modules import get_module

    module = get_module(args.module)
    samples = data.load_samples(module, args.data, csv_path=args.csv, patient_pattern=args.patient_pattern)
    meta = {"module": module.id, "classes": list(module.classes), "task": module.task,
            "augmentation": module.augmentation,
            "data": os.path.abspath(args.data), "csv": os.path.abspath(args.csv) if args.csv else None,
            "loaded": samples.summary}
    split = splits.make_split(samples, fractions=_fractions(args), seed=args.seed,
                              stratify=not args.no_stratify, root=args.data, meta=meta)
    split.to_file(args.out)
    print("data: {}".format(json.dumps(samples.summary, sort_keys=True)))
    _print_json(split.counts())
    print("split written to {}".format(args.out))
    if args.leakcheck:
        report = splits.check_leaks(split, near_duplicates=True)
        print("leak check passed: {}".format(json.dumps(report, sort_keys=True)))
    return 0


def run_leakcheck(args):
    from training import splits

    split = splits.Split.from_file(args.split, root=args.root)
    threshold = splits.DEFAULT_NEAR_DUPLICATE_DISTANCE if args.threshold is None else args.threshold
    report = splits.check_leaks(split, near_duplicates=not args.no_near_duplicates, threshold=threshold)
    print("no leaks: {}".format(json.dumps(report, sort_keys=True)))
    return 0


def run_augment(args):
    from training import offline, splits

    split = splits.Split.from_file(args.split, root=args.root)
    preset = args.preset or _preset_from_split(split)
    report = offline.augment_split(split, args.out, per_class=args.per_class, preset=preset, seed=args.seed)
    _print_json({k: v for k, v in report.items() if k != "files"})
    print("wrote {} images to {} (manifest: {})".format(report["written"], args.out, report["manifest"]))
    return 0


def run_photograph(args):
    from training import photograph, splits

    split = splits.Split.from_file(args.split, root=args.root)
    index = photograph.photograph_samples(split[args.subset], args.out, seed=args.seed,
                                          scenes=tuple(args.scenes), limit=args.limit)
    print("wrote {} camera frames of the {} split ({}) to {} (ground truth: photographed.json)".format(
        len(index["frames"]), args.subset, ", ".join(args.scenes), args.out))
    return 0


def _preset_from_split(split):
    if split.meta.get("augmentation") not in (None, "none"):
        return split.meta["augmentation"]
    module_id = split.meta.get("module")
    if module_id:
        from training.modules import get_module

        try:
            return get_module(module_id).augmentation
        except ConfigError:
            pass  # a custom module file that moved: fall through to the explicit error below
    raise ConfigError("cannot tell the augmentation preset from {}. Fix: pass --preset "
                      "skin|chest-xray".format(split.path))


def run(args):
    """The ``data`` command's handler: dispatch to the subcommand."""
    handler = getattr(args, "data_handler", None)
    if handler is None:
        raise ConfigError("medkiosk data needs a subcommand: synth, split, leakcheck, augment or photograph "
                          "(see `medkiosk data --help`)")
    return handler(args)


def add_arguments(parser):
    """Add the ``data`` subcommands to ``parser`` (the ``medkiosk data`` parser)."""
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    synth = sub.add_parser("synth", help="write a synthetic image set (shapes, or skin-like photos)")
    synth.add_argument("--out", required=True, help="output folder (one subfolder per class)")
    synth.add_argument("--classes", type=int, default=4, help="number of classes (default %(default)s)")
    synth.add_argument("--per-class", type=int, default=40, help="images per class (default %(default)s)")
    synth.add_argument("--size", type=int, help="image size in pixels (default 96 shapes, 224 skin)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--kind", choices=("shapes", "skin"), default="shapes")
    synth.set_defaults(data_handler=run_synth)

    split = sub.add_parser("split", help="patient-level train/val/test split of a data set -> split.json")
    split.add_argument("--module", required=True, help="skin, chest, pediatric-pneumonia or a module file")
    split.add_argument("--data", required=True, help="class folders, or the images folder of --csv")
    split.add_argument("--csv", help="NIH-style labels CSV (image, finding labels, patient id)")
    split.add_argument("--out", required=True, help="split file to write (JSON)")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--val-fraction", type=float, default=0.15)
    split.add_argument("--test-fraction", type=float, default=0.15)
    split.add_argument("--patient-pattern", help="regex with a named group 'patient' applied to file names")
    split.add_argument("--no-stratify", action="store_true", help="do not stratify by label")
    split.add_argument("--no-leakcheck", dest="leakcheck", action="store_false",
                       help="skip the leak check after writing the split")
    split.set_defaults(data_handler=run_split)

    leak = sub.add_parser("leakcheck", help="check a split for patients/files/near-duplicates in two splits")
    leak.add_argument("split", help="split file")
    leak.add_argument("--root", help="image root (default: the one stored in the split file)")
    leak.add_argument("--threshold", type=int, default=None,
                      help="near-duplicate hash distance (bits of 256; default 24)")
    leak.add_argument("--no-near-duplicates", action="store_true",
                      help="only patient and identical-file checks")
    leak.set_defaults(data_handler=run_leakcheck)

    augment = sub.add_parser("augment", help="offline augmentation of the TRAIN split to N images per class")
    augment.add_argument("--split", required=True, help="split file")
    augment.add_argument("--out", required=True, help="output folder (one subfolder per class)")
    augment.add_argument("--per-class", type=int, required=True, help="target images per class")
    augment.add_argument("--preset", choices=("skin", "chest-xray"), help="default: the split's module's")
    augment.add_argument("--root", help="image root (default: the one stored in the split file)")
    augment.add_argument("--seed", type=int, default=0)
    augment.set_defaults(data_handler=run_augment)

    photo = sub.add_parser("photograph", help="render a split's images as 1280x720 camera frames (film on a "
                                              "lightbox, monitor) with their ground-truth outlines")
    photo.add_argument("--split", required=True, help="split file")
    photo.add_argument("--subset", choices=("train", "val", "test"), default="test",
                       help="which part of the split (default %(default)s)")
    photo.add_argument("--out", required=True, help="output folder: JPEG frames + photographed.json")
    photo.add_argument("--scenes", nargs="+", choices=("film", "monitor"), default=["film", "monitor"],
                       help="scenes, alternating over the images (default: both)")
    photo.add_argument("--seed", type=int, default=0)
    photo.add_argument("--limit", type=int, help="first N images only")
    photo.add_argument("--root", help="image root (default: the one stored in the split file)")
    photo.set_defaults(data_handler=run_photograph)

    parser.set_defaults(handler=run)
    return parser
