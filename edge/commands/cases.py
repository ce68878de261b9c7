"""``medkiosk cases``: list saved cases, export them (CSV + images) to a USB stick for referral.

``--config`` and ``--state-dir`` may come before or after the action; output cut short by a closed
pipe (``medkiosk cases list | head -1``) ends quietly.
"""

import json
import os
import sys

from edge.cliutil import config_and_state_options


def add_arguments(parser):
    sub = parser.add_subparsers(dest="cases_command", metavar="ACTION")
    listing = sub.add_parser("list", help="list saved cases")
    listing.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    listing.add_argument("--since", help="only cases saved at or after this UTC date/time (2026-11-30)")
    export = sub.add_parser("export", help="copy cases (cases.csv + images) to a folder, e.g. a USB stick")
    where = export.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", help="a writable destination folder (the unit's stick is read-only: --usb)")
    where.add_argument("--usb", action="store_true",
                       help="the new cases with their referral sheets onto the unit's USB stick, as the "
                            "kiosk's E key does (the root helper named by usb_export in the config)")
    export.add_argument("--since", help="only cases saved at or after this UTC date/time (2026-11-30)")
    config_and_state_options(parser, (listing, export), "where cases are saved (config state_dir)")


def _row(record):
    flags = [name for name, on in (("uncertain", record.uncertain), ("out-of-scope", record.out_of_scope),
                                   ("poor-quality", not record.quality_ok)) if on]
    probability = record.top1_probability
    percent = "" if probability is None else "{:.0f}".format(100 * probability)
    return "{:<8} {:<28} {:<20} {:<22} {:<28} {:>6}  {}\n".format(
        record.number, record.uid, record.created_utc[:19], record.module[:22], (record.top1 or "-")[:28],
        percent, ",".join(flags))


def _open(args):
    from edge.caselog import CaseLog
    from edge.config import load_config

    config = load_config(args.config, {"state_dir": args.state_dir})
    return CaseLog(config.kiosk["state_dir"], min_free_mb=config.kiosk["min_free_mb"])


def _list(log, args, out):
    records = log.cases(args.since)
    if args.json:
        json.dump({"cases": [r.to_dict() for r in records]}, out, indent=2, sort_keys=True)
        out.write("\n")
        return 0
    out.write("{:<8} {:<28} {:<20} {:<22} {:<28} {:>6}  {}\n".format(
        "number", "case", "saved (UTC)", "module", "top finding", "%", "flags"))
    for record in records:
        out.write(_row(record))
    out.write("{} case(s) in {}\n".format(len(records), log.db_path))
    return 0


def _export(log, args, out):
    if args.usb:
        return _export_usb(log, args, out)
    folder, count = log.export(args.to, since=args.since)
    out.write("exported {} case(s) to {}\n".format(count, folder))
    return 0


def _export_usb(log, args, out):
    from edge.config import load_config
    from edge.usb_export import OUTBOX_DIR, UsbExporter, kiosk_referral, open_trigger

    config = load_config(args.config, {"state_dir": args.state_dir})
    exporter = UsbExporter(os.path.join(config.kiosk["state_dir"], OUTBOX_DIR),
                           open_trigger(config.kiosk["usb_export"]), referral=kiosk_referral())
    out.write(exporter.export_new(log).message() + "\n")
    return 0


ACTIONS = {"list": _list, "export": _export}


def _quiet_closed_pipe(out):
    """The reader went away (``| head -1``): stop writing, and let Python's exit flush go nowhere."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test's StringIO): nothing is flushed to it at exit


def run(args, stdout=None):
    out = stdout or sys.stdout
    action = ACTIONS.get(getattr(args, "cases_command", None))
    if action is None:
        out.write("usage: medkiosk cases {list,export} ... (see medkiosk cases --help)\n")
        return 2
    log = _open(args)
    log.open(create=False)
    try:
        result = action(log, args, out)
        out.flush()
        return result
    except BrokenPipeError:
        _quiet_closed_pipe(out)
        return 0
    finally:
        log.close()
