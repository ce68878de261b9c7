"""What every medkiosk CLI shares: project errors as one line and an exit code, never a traceback.

``edge.cli`` (the console entry), ``export.cli`` and ``training.cli`` import it downward.
Python 3.6 compatible; importing it does nothing.
"""

import argparse
import sys

from edge.errors import MedkioskError


def report_error(exc, stream=None):
    """Print a MedkioskError as one line for the user."""
    stream = stream or sys.stderr
    stream.write("medkiosk: error: {}\n".format(exc))
    stream.flush()


def run_guarded(func, *args):
    """Call a command; turn project errors into a one-line message and an exit code."""
    try:
        return int(func(*args) or 0)
    except MedkioskError as exc:
        report_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("medkiosk: interrupted\n")
        return 130


def print_line(text):
    """One line to stdout, flushed at once (progress of long device jobs shows in the journal)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def dispatch(parser, argv):
    """Parse ``argv`` with ``parser`` and run the chosen subcommand's handler, guarded; help when none."""
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        # a command without its subcommand shows that command's help (set as a default by its parser)
        getattr(args, "print_help", parser.print_help)()
        return 2
    return run_guarded(args.handler, args)


CONFIG_HELP = "INI config (default /etc/medkiosk/medkiosk.conf when it exists)"


def _config_and_state(parser, default, state_help):
    parser.add_argument("--config", default=default, help=CONFIG_HELP)
    parser.add_argument("--state-dir", default=default, help=state_help)


def config_and_state_options(parser, actions, state_help):
    """``--config`` and ``--state-dir`` on ``parser`` and again on each action's subparser, so they may
    come before or after the action (after it, absent, the value given before stays)."""
    _config_and_state(parser, None, state_help)
    for action in actions:
        _config_and_state(action, argparse.SUPPRESS, state_help)
