"""``medkiosk capture``: the labelled photos of capture mode (key C): how many, and the export to a
USB stick in the layout ``medkiosk train`` reads. Thin: the work is in ``edge.capture``."""

import argparse
import sys


def _common_options(parser, default):
    parser.add_argument("--config", default=default,
                        help="INI config (default /etc/medkiosk/medkiosk.conf when it exists)")
    parser.add_argument("--state-dir", default=default, help="where the photos are stored (config state_dir)")


def add_arguments(parser):
    _common_options(parser, None)
    sub = parser.add_subparsers(dest="capture_command", metavar="ACTION")
    listing = sub.add_parser("list", help="photos stored per label and how many people")
    export = sub.add_parser("export", help="copy the photos (one folder per label + capture.csv) to a folder")
    export.add_argument("--to", help="destination folder, e.g. a USB stick mounted writable (default: "
                                     "config [capture] export_dir)")
    for action in (listing, export):
        _common_options(action, argparse.SUPPRESS)


def _settings(args):
    from edge.capture import CaptureSettings
    from edge.config import load_config

    return CaptureSettings.from_config(load_config(args.config, {"state_dir": args.state_dir}))


def _list(store, settings, args, out):
    records = store.records()
    counts = store.counts()
    for label in settings.labels + sorted(set(counts) - set(settings.labels)):
        out.write("{:<30} {:>6}\n".format(label, counts.get(label, 0)))
    out.write("{} photo(s) of {} person(s) in {}\n".format(len(records), len({r["subject"] for r in records}),
                                                         store.root))
    return 0


def _export(store, settings, args, out):
    folder, count = store.export(args.to or settings.export_dir, settings.labels)
    out.write("exported {} photo(s) to {}\n".format(count, folder))
    return 0


ACTIONS = {"list": _list, "export": _export}


def run(args, stdout=None):
    from edge.capture import CaptureStore

    out = stdout or sys.stdout
    action = ACTIONS.get(getattr(args, "capture_command", None))
    if action is None:
        out.write("usage: medkiosk capture {list,export} ... (see medkiosk capture --help)\n")
        return 2
    settings = _settings(args)
    store = CaptureStore(settings.state_dir, settings.module, settings.min_free_mb).open()
    result = action(store, settings, args, out)
    out.flush()
    return result
