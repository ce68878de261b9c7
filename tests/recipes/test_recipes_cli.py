"""``python -m recipes``: a real subprocess; refusals are one line naming the fix, never a traceback."""

import os
import subprocess
import sys

from tests.conftest import ROOT


def _run(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "recipes"] + list(args), capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


def test_rewriting_a_card_without_a_finished_run_is_one_line(tmp_path):
    done = _run("chest", "--rewrite-card", "--out", str(tmp_path / "no-run"), "--models", str(tmp_path))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Fix:" in lines[0]
    assert lines[0].startswith("medkiosk: error: cannot rewrite the card")


def test_unknown_module_is_refused_by_the_parser():
    done = _run("skin")
    assert done.returncode == 2 and "invalid choice: 'skin'" in done.stderr and "Traceback" not in done.stderr
