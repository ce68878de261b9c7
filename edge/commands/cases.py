"""``medkiosk cases``: list saved cases, export them (CSV + images) to a USB stick for referral."""

import json
import sys


def add_arguments(parser):
    parser.add_argument("--config", help="INI config (default /etc/medkiosk/medkiosk.conf when it exists)")
    parser.add_argument("--state-dir", help="where cases are saved (config state_dir)")
    sub = parser.add_subparsers(dest="cases_command", metavar="ACTION")
    listing = sub.add_parser("list", help="list saved cases")
    listing.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    listing.add_argument("--since", help="only cases saved at or after this UTC date/time (2026-11-30)")
    export = sub.add_parser("export", help="copy cases (cases.csv + images) to a folder, e.g. a USB stick")
    export.add_argument("--to", required=True, help="destination folder (e.g. /media/usb)")
    export.add_argument("--since", help="only cases saved at or after this UTC date/time (2026-11-30)")


def _row(record):
    flags = [name for name, on in (("uncertain", record.uncertain), ("out-of-scope", record.out_of_scope),
                                   ("poor-quality", not record.quality_ok)) if on]
    probability = record.top1_probability
    percent = "" if probability is None else "{:.0f}".format(100 * probability)
    return "{:<28} {:<20} {:<22} {:<28} {:>6}  {}\n".format(
        record.uid, record.created_utc[:19], record.module[:22], (record.top1 or "-")[:28], percent,
        ",".join(flags))


def _open(args):
    from edge.caselog import CaseLog
    from edge.config import load_config

    config = load_config(args.config, {"state_dir": args.state_dir})
    return CaseLog(config.kiosk["state_dir"], min_free_mb=config.kiosk["min_free_mb"])


def run(args, stdout=None):
    out = stdout or sys.stdout
    if not getattr(args, "cases_command", None):
        out.write("usage: medkiosk cases {list,export} ... (see medkiosk cases --help)\n")
        return 2
    log = _open(args)
    log.open(create=False)
    try:
        if args.cases_command == "list":
            records = log.cases(args.since)
            if args.json:
                json.dump({"cases": [r.to_dict() for r in records]}, out, indent=2, sort_keys=True)
                out.write("\n")
                return 0
            out.write("{:<28} {:<20} {:<22} {:<28} {:>6}  {}\n".format(
                "case", "saved (UTC)", "module", "top finding", "%", "flags"))
            for record in records:
                out.write(_row(record))
            out.write("{} case(s) in {}\n".format(len(records), log.db_path))
            return 0
        folder, count = log.export(args.to, since=args.since)
        out.write("exported {} case(s) to {}\n".format(count, folder))
        return 0
    finally:
        log.close()
