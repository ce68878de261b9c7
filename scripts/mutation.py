"""Mutation run of the device's safety code with mutmut 3 (``make mutation``).

Each module's mutants run against ONLY that module's tests (``MODULES`` below: adding a module
is one line), in a scratch copy of the checkout, so the working tree is never left mutated and
other test runs in it are undisturbed. Writes build/mutation/report.md (score per module, every
surviving mutant as a diff) and prints one summary line per module.

Usage: python scripts/mutation.py [--only edge/bundle.py ...] [--out build/mutation] [--jobs 1]
       python scripts/mutation.py --only edge/signing.py --rerun-survivors build/mutation/signing/report.md

``--rerun-survivors REPORT`` runs only the mutants that survived in an earlier REPORT (after tests were
added: a mutant the earlier tests killed stays killed, as tests are only added), and scores the
module over the earlier run's mutant count. ``--also GLOB`` (with it) runs every mutant whose name
matches GLOB as well, e.g. ``'edge.imageio.x__tiff_header__*'`` for a function changed since that run
(its mutants are renumbered); the score is then over the module's current mutant count.

A mutant whose tests time out (e.g. an ``open`` of a named pipe that now blocks) is counted as
killed, as mutmut and Stryker count it (the tests did notice), and listed in the report's
``timeout`` column.
"""

import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DETECTED = ("killed", "timeout")

# module -> the test files that must kill its mutants. One line per module.
MODULES = {
    "edge/bundle.py": ["tests/edge/test_bundle.py", "tests/edge/test_bundle_refusals.py",
                       "tests/edge/test_bundle_steps.py", "tests/edge/test_display.py"],
    "edge/classify.py": ["tests/edge/test_classify.py", "tests/edge/test_classify_boundaries.py",
                         "tests/edge/test_classify_steps.py"],
    "edge/caselog.py": ["tests/edge/test_caselog.py", "tests/edge/test_caselog_durability.py",
                        "tests/edge/test_caselog_reference.py", "tests/edge/test_caselog_steps.py"],
    "edge/private_files.py": ["tests/edge/test_private_files.py", "tests/edge/test_caselog_durability.py",
                              "tests/edge/test_private_files_steps.py"],
    "edge/preprocess.py": ["tests/edge/test_preprocess.py", "tests/edge/test_preprocess_truncated.py",
                           "tests/edge/test_preprocess_steps.py"],
    "edge/quality.py": ["tests/edge/test_quality.py", "tests/edge/test_quality_calibration.py",
                        "tests/edge/test_quality_rules.py"],
    "edge/signing.py": ["tests/edge/test_signing.py", "tests/edge/test_signing_contract.py",
                        "tests/edge/test_signing_refusals.py",
                        "tests/edge/test_config.py"],
    "edge/bundle_files.py": ["tests/edge/test_bundle_files.py", "tests/edge/test_bundle_refusals.py",
                             "tests/edge/test_signing.py",
                             "tests/edge/test_signing_refusals.py"],
    "edge/imageio.py": ["tests/edge/test_imageio.py", "tests/edge/test_imageio_steps.py",
                        "tests/edge/test_dicom.py",
                        "tests/edge/test_preprocess_truncated.py"],
    "edge/pixels.py": ["tests/edge/test_pixels.py", "tests/edge/test_imageio.py", "tests/edge/test_dicom.py"],
    "edge/dicom.py": ["tests/edge/test_dicom.py", "tests/edge/test_dicom_steps.py",
                      "tests/edge/test_imageio.py"],
    "edge/locate.py": ["tests/edge/test_locate.py", "tests/edge/test_locate_contract.py",
                       "tests/edge/test_locate_steps.py", "tests/edge/test_locate_boundaries.py"],
}
IGNORE = shutil.ignore_patterns(".git", ".venv*", "build", "runs", "demo", "__pycache__", "mutants",
                                ".pytest_cache", ".ruff_cache", "*.egg-info")
MUTMUT_CONFIG = """
[tool.mutmut]
source_paths = ["edge"]
only_mutate = [{module!r}]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]
pytest_add_cli_args_test_selection = [{tests}]
use_git_change_detection = false
also_copy = ["samples", "models", "config"]
"""


class MutationError(Exception):
    """The mutation run cannot start or its tool failed."""


def scratch_copy(base, module, tests):
    """Copy the checkout to ``base``/medkiosk, ../shared (and mutants/../shared) linked, mutmut configured."""
    missing = [t for t in tests if not os.path.isfile(os.path.join(ROOT, t))]
    if missing:
        raise MutationError("{}: test files {} are missing. Fix: the MODULES table in {}".format(
            module, ", ".join(missing), os.path.relpath(__file__, ROOT)))
    tree = os.path.join(base, "medkiosk")
    shutil.copytree(ROOT, tree, ignore=IGNORE)
    shared = os.path.join(os.path.dirname(ROOT), "shared")
    if os.path.exists(shared):
        # conftest finds ../shared beside the checkout; mutmut runs the tests from tree/mutants.
        os.symlink(shared, os.path.join(base, "shared"))
        os.symlink(shared, os.path.join(tree, "shared"))
    with open(os.path.join(tree, "pyproject.toml"), "a") as handle:
        handle.write(MUTMUT_CONFIG.format(module=module, tests=", ".join(repr(t) for t in tests)))
    return tree


def test_artifacts(python):
    """The prebuilt test bundle (built once with torch), so no mutant run retrains it."""
    artifacts = os.path.join(ROOT, "build", "test-artifacts")
    if not os.path.isdir(os.path.join(artifacts, "bundle")):
        subprocess.check_call([python, os.path.join(ROOT, "tests", "make_test_bundle.py"), artifacts])
    return artifacts


def earlier_survivors(report, module):
    """(mutant count, [surviving mutant names]) of ``module`` in an earlier report.md."""
    with open(report) as handle:
        text = handle.read()
    row = re.search(r"^\| `{}` \| (\d+) \|".format(re.escape(module)), text, re.M)
    section = text.split("## Survivors in `{}`".format(module), 1)
    if row is None or len(section) < 2:
        raise MutationError("{} has no result for {}. Fix: pass the report of a run of {}".format(
            report, module, module))
    names = re.findall(r"^# (\S+): (?!killed|timeout)", section[1].split("\n## ", 1)[0], re.M)
    return int(row.group(1)), names


# ``mutmut show`` for many mutants in one process (one ``mutmut show`` each took 2-4 s on a loaded machine).
SHOW = """
import sys
from mutmut.__main__ import find_mutant, get_diff_for_mutant, status_by_exit_code
for name in sys.argv[1:]:
    mutant = find_mutant(name)
    print("# {}: {}".format(name, status_by_exit_code[mutant.exit_code_by_key[name]]))
    print(get_diff_for_mutant(name, path=mutant.path))
    print("@@end-of-mutant@@")
"""


def show_mutants(tree, env, names):
    """Each named mutant's status line and diff (what ``mutmut show NAME`` prints)."""
    if not names:
        return []
    text = subprocess.check_output([sys.executable, "-c", SHOW] + names, cwd=tree, env=env).decode()
    return [part.strip("\n") for part in text.split("@@end-of-mutant@@") if part.strip()]


def run_module(module, tests, env, jobs, rerun=None, also=()):
    """Mutate ``module`` against ``tests`` in a scratch copy.

    Returns (killed, total, survivors, seconds, timeouts); ``timeouts`` are counted in ``killed``.

    ``rerun``: (earlier mutant count, names) to run only those mutants, scored over the earlier count;
    ``also``: name patterns run in full as well, scored over the current count.
    """
    mutmut = os.path.join(os.path.dirname(sys.executable), "mutmut")
    base = tempfile.mkdtemp(prefix="medkiosk-mutation-")
    try:
        tree = scratch_copy(base, module, tests)
        start = time.time()
        names = list(rerun[1]) + list(also) if rerun else []
        run = subprocess.run([mutmut, "run", "--max-children", str(jobs)] + names, cwd=tree, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seconds = time.time() - start
        if run.returncode != 0:
            raise MutationError("mutmut run on {} failed: {}".format(module, run.stderr.decode()[-2000:]))
        results = subprocess.check_output([mutmut, "results", "--all", "true"], cwd=tree, env=env).decode()
        verdicts = [line.strip().rsplit(": ", 1) for line in results.splitlines() if ": " in line]
        current = len(verdicts)
        if rerun:
            verdicts = [(name, verdict) for name, verdict in verdicts
                        if name in set(names) or any(fnmatch.fnmatch(name, glob) for glob in also)]
        survivors = show_mutants(tree, env, [name for name, verdict in verdicts if verdict not in DETECTED])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    total = rerun[0] if rerun and not also else current
    timeouts = sum(verdict == "timeout" for _name, verdict in verdicts)
    return total - len(survivors), total, survivors, seconds, timeouts


def write_report(path, rows):
    lines = ["# Mutation run (mutmut 3, scripts/mutation.py)", "",
             "| module | mutants | killed | survived | score | seconds | timeout (in killed) |",
             "|---|---|---|---|---|---|---|"]
    for module, (killed, total, survivors, seconds, timeouts) in rows.items():
        lines.append("| `{}` | {} | {} | {} | {:.1f}% | {:.0f} | {} |".format(
            module, total, killed, len(survivors), 100.0 * killed / max(total, 1), seconds, timeouts))
    for module, (_killed, _total, survivors, _seconds, _timeouts) in rows.items():
        lines += ["", "## Survivors in `{}`".format(module), ""]
        lines += ["```diff\n{}\n```".format(diff.strip()) for diff in survivors] or ["none"]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(MODULES), help="modules to mutate (default: all)")
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "mutation"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants run in parallel")
    parser.add_argument("--rerun-survivors", metavar="REPORT",
                        help="run only the mutants that survived in this earlier report.md")
    parser.add_argument("--also", nargs="+", default=[], metavar="GLOB",
                        help="with --rerun-survivors: also run every mutant matching GLOB (changed code)")
    args = parser.parse_args(argv)
    rows = {}
    try:
        env = dict(os.environ, MEDKIOSK_TEST_ARTIFACTS=test_artifacts(sys.executable))
        env.pop("PYTHONPATH", None)
        os.makedirs(args.out, exist_ok=True)
        for module in args.only or sorted(MODULES):
            rerun = earlier_survivors(args.rerun_survivors, module) if args.rerun_survivors else None
            rows[module] = run_module(module, MODULES[module], env, args.jobs, rerun, args.also)
            killed, total, survivors, seconds, _timeouts = rows[module]
            print("{}: {}/{} killed ({:.1f}%), {} survived, {:.0f} s".format(
                module, killed, total, 100.0 * killed / max(total, 1), len(survivors), seconds), flush=True)
            write_report(os.path.join(args.out, "report.md"), rows)
    except (MutationError, subprocess.CalledProcessError, OSError) as exc:
        print("mutation run failed: {}".format(exc), file=sys.stderr)
        return 1
    print("report: {}".format(os.path.relpath(os.path.join(args.out, "report.md"), os.getcwd())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
