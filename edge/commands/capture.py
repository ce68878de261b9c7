"""``medkiosk capture``: the labelled photos of capture mode (key C): how many; the export in the layout
``medkiosk train`` reads, onto the unit's USB stick (``--usb``, as E in capture mode does) or into a
technician's folder (``--to``); and the purge of photos already on a stick. Thin: the work is in
``edge.capture`` and ``edge.capture_usb``. Every action prints one line.
"""

import os
import sys

from edge.cliutil import config_and_state_options


def add_arguments(parser):
    sub = parser.add_subparsers(dest="capture_command", metavar="ACTION")
    listing = sub.add_parser("list", help="photos stored per label and how many people")
    export = sub.add_parser("export", help="copy the photos (one folder per label + capture.csv)")
    where = export.add_mutually_exclusive_group(required=True)
    where.add_argument("--usb", action="store_true",
                       help="onto the unit's USB stick through the root helper (usb_export in the config), "
                            "as E in capture mode does; the photos are then recorded as exported")
    where.add_argument("--to", help="a writable folder of the technician's (not recorded as exported)")
    purge = sub.add_parser("purge", help="delete photos already exported to a USB stick (a dry run unless "
                                         "--yes)")
    purge.add_argument("--exported", action="store_true", required=True,
                       help="only photos recorded as exported to a USB stick (required: nothing else is "
                            "ever purged)")
    purge.add_argument("--older-than", metavar="DAYS",
                       help="only photos first exported at least DAYS days ago")
    purge.add_argument("--yes", action="store_true", help="delete them (without it: say what would go)")
    config_and_state_options(parser, (listing, export, purge),
                             "where the photos are stored (config state_dir)")


def _settings(args):
    from edge.capture import CaptureSettings
    from edge.config import load_config

    config = load_config(args.config, {"state_dir": args.state_dir})
    return config, CaptureSettings.from_config(config)


def _list(store, config, settings, args, out):
    records = store.records()
    counts = store.counts()
    for label in settings.labels + sorted(set(counts) - set(settings.labels)):
        out.write("{:<30} {:>6}\n".format(label, counts.get(label, 0)))
    out.write("{} photo(s) of {} person(s) in {}\n".format(len(records), len({r["subject"] for r in records}),
                                                         store.root))
    return 0


def _export(store, config, settings, args, out):
    if args.usb:
        from edge.capture_usb import export_usb
        from edge.usb_export import OUTBOX_DIR, UsbExporter, open_trigger

        exporter = UsbExporter(os.path.join(config.kiosk["state_dir"], OUTBOX_DIR),
                               open_trigger(config.kiosk["usb_export"]))
        out.write(export_usb(store, exporter, settings.labels).message() + "\n")
        return 0
    folder, count = store.export(args.to, settings.labels)
    out.write("exported {} photo(s) to {}\n".format(count, folder))
    return 0


def _purge(store, config, settings, args, out):
    from edge.capture import parse_days

    days = parse_days(args.older_than) if args.older_than is not None else None
    records = store.purgeable(days)
    when = " first exported {:g}+ days ago".format(days) if days is not None else ""
    people = len({r["subject"] for r in records})
    kept = len(store.records()) - len(records)
    if not args.yes:
        out.write("would delete {} photo(s) of {} person(s) already on a USB stick{}; {} kept; nothing "
                  "deleted: add --yes to delete them\n".format(len(records), people, when, kept))
        return 0
    deleted = store.purge(records)
    out.write("deleted {} photo(s) of {} person(s) already on a USB stick{}; {} kept\n".format(
        deleted, people, when, kept))
    return 0


ACTIONS = {"list": _list, "export": _export, "purge": _purge}


def run(args, stdout=None):
    from edge.capture import CaptureStore

    out = stdout or sys.stdout
    action = ACTIONS.get(getattr(args, "capture_command", None))
    if action is None:
        out.write("usage: medkiosk capture {list,export,purge} ... (see medkiosk capture --help)\n")
        return 2
    config, settings = _settings(args)
    store = CaptureStore(settings.state_dir, settings.module, settings.min_free_mb).open()
    result = action(store, config, settings, args, out)
    out.flush()
    return result
