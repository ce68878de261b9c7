"""``edge.cliutil``: one line and an exit code for project errors, 130 for Ctrl-C, never a traceback."""

import io

from edge import cliutil
from edge.errors import BundleError, ConfigError


def test_project_errors_are_one_line_with_their_exit_code(capsys):
    def broken(_args):
        raise ConfigError("config x: bad. Fix: y")

    assert cliutil.run_guarded(broken, None) == 2
    err = capsys.readouterr().err
    assert err == "medkiosk: error: config x: bad. Fix: y\n"


def test_exit_code_comes_from_the_error_class(capsys):
    class Special(ConfigError):
        exit_code = 5

    def broken():
        raise Special("nope")

    assert cliutil.run_guarded(broken) == 5
    assert capsys.readouterr().err.count("\n") == 1


def test_success_none_and_interrupt(capsys):
    assert cliutil.run_guarded(lambda a, b: a + b, 1, 2) == 3
    assert cliutil.run_guarded(lambda: None) == 0

    def interrupted():
        raise KeyboardInterrupt

    assert cliutil.run_guarded(interrupted) == 130
    assert capsys.readouterr().err == "medkiosk: interrupted\n"


def test_other_exceptions_are_not_swallowed():
    def bug():
        raise ZeroDivisionError("a bug must show its traceback")

    try:
        cliutil.run_guarded(bug)
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("run_guarded swallowed a bug")


def test_report_error_to_a_stream():
    stream = io.StringIO()
    cliutil.report_error(BundleError("b", "manifest.json", "missing", "re-export it"), stream)
    assert stream.getvalue() == "medkiosk: error: bundle b: manifest.json: missing. Fix: re-export it\n"


def test_config_and_state_options_before_or_after_the_action():
    import argparse

    parser = argparse.ArgumentParser(prog="medkiosk cases")
    sub = parser.add_subparsers(dest="action")
    actions = (sub.add_parser("list"), sub.add_parser("export"))
    cliutil.config_and_state_options(parser, actions, "where cases are saved")
    before = parser.parse_args(["--state-dir", "/a", "--config", "c.ini", "list"])
    assert (before.state_dir, before.config, before.action) == ("/a", "c.ini", "list")
    after = parser.parse_args(["export", "--state-dir", "/b"])
    assert (after.state_dir, after.config) == ("/b", None)
    both = parser.parse_args(["--state-dir", "/a", "export", "--state-dir", "/b"])
    assert both.state_dir == "/b"  # after the action wins
    kept = parser.parse_args(["--state-dir", "/a", "export"])
    assert kept.state_dir == "/a"  # absent after it, the one before stays
    assert "where cases are saved" in actions[0].format_help()
