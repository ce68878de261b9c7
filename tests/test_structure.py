"""scripts/check_structure.py: the project's structure rules hold (file and function lengths, no
circles between files or packages, edge at the bottom, no private names across modules, no
project module loaded by a string), and the checker itself catches each kind of violation."""

import os
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

SCRIPT = os.path.join(ROOT, "scripts", "check_structure.py")

# Violations of work not merged yet when the checker was written; each belongs to another branch of
# issue 16. The lead empties this list at merge: a violation that is gone must leave the list too
# (test_allow_list_has_no_stale_entries), one that is new fails test_the_project_has_no_violations.
# Every structural rule holds on main: nothing is allowed. Add an entry only with its reason.
ALLOWED = []


def _check(root, allowed=()):
    allow = os.path.join(str(root), ".allowed") if allowed else None
    if allow:
        with open(allow, "w") as handle:
            handle.write("\n".join(allowed) + "\n")
    command = [sys.executable, SCRIPT, "--root", str(root)] + (["--allow", allow] if allow else [])
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_the_project_has_no_violations_beyond_the_allow_list(tmp_path):
    allow = tmp_path / "allowed"
    allow.write_text("\n".join(ALLOWED) + "\n")
    done = subprocess.run([sys.executable, SCRIPT, "--allow", str(allow)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_allow_list_has_no_stale_entries():
    done = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, timeout=120, cwd=ROOT)
    found = {line.split(": ", 2)[0] + " " + line.split(": ", 2)[1] for line in done.stdout.splitlines()
             if ": " in line and not line.startswith("allowed ")}
    stale = [key for key in ALLOWED if key not in found]
    assert not stale, "fixed: remove these from ALLOWED: {}".format(stale)


def _write(root, path, text):
    full = os.path.join(str(root), path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as handle:
        handle.write(textwrap.dedent(text))


def test_the_checker_catches_every_kind_of_violation(tmp_path):
    long_body = "".join("    x = {}\n".format(i) for i in range(80))
    _write(tmp_path, "edge/__init__.py", "")
    _write(tmp_path, "edge/a.py", "import edge.b\n\n\ndef _hidden():\n    pass\n")
    _write(tmp_path, "edge/b.py", "from edge import a\n")
    _write(tmp_path, "edge/c.py", "import os\nfrom export import other\n")
    _write(tmp_path, "export/__init__.py", "")
    _write(tmp_path, "export/other.py", "")
    _write(tmp_path, "export/tool.py", "from edge.a import _hidden\n\n\ndef long():\n" + long_body)
    _write(tmp_path, "training/__init__.py", "")
    _write(tmp_path, "training/big.py", "import importlib\nimportlib.import_module('export.tool')\n"
           + "\n" * 600)
    done = _check(tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    expected = [
        "file-length: training/big.py: 602 lines > 600",
        "function-length: export/tool.py:long: 81 lines > 80",
        "file-cycle: edge.a <-> edge.b: these files import each other",
        "package-cycle: edge <-> export: these packages import each other",
        "layer: edge/c.py->export.other: line 2: edge must not import export",
        "private-import: export/tool.py:edge.a._hidden: line 1: private name used across modules",
        "string-import: training/big.py:export.tool: line 2: import_module('export.tool'); use a plain "
        "import",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)
    assert lines[-1] == "{} violation(s), 0 allowed".format(len(lines) - 1)
    # Allowing every one of them makes it pass; allowing all but one does not.
    keys = [line.split(": ", 2)[0] + " " + line.split(": ", 2)[1] for line in lines[:-1]]
    assert _check(tmp_path, keys).returncode == 0
    assert _check(tmp_path, keys[1:]).returncode == 1


def test_a_clean_tree_passes(tmp_path):
    _write(tmp_path, "edge/__init__.py", "")
    _write(tmp_path, "edge/low.py", "def f():\n    return 1\n")
    _write(tmp_path, "export/__init__.py", "")
    _write(tmp_path, "export/high.py", "from edge.low import f\nfrom . import other\n")
    _write(tmp_path, "export/other.py", "import os\n")
    done = _check(tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "0 violation(s), 0 allowed", done.stdout
