"""Mutation run of the device's safety code with mutmut 2 (``make mutation``).

Each module's mutants run against ONLY that module's tests (``MODULES`` below: adding a module
is one line), in a scratch copy of the checkout, so the working tree is never left mutated and
other test runs in it are undisturbed. Writes build/mutation/report.md (score per module, every
surviving mutant as a diff) and prints one summary line per module.

Usage: python scripts/mutation.py [--only edge/bundle.py ...] [--out build/mutation]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# module -> the test files that must kill its mutants. One line per module.
MODULES = {
    "edge/bundle.py": ["tests/edge/test_bundle.py", "tests/edge/test_bundle_refusals.py"],
    "edge/classify.py": ["tests/edge/test_classify.py", "tests/edge/test_classify_boundaries.py"],
    "edge/caselog.py": ["tests/edge/test_caselog.py", "tests/edge/test_caselog_durability.py"],
    "edge/preprocess.py": ["tests/edge/test_preprocess.py", "tests/edge/test_preprocess_truncated.py"],
    "edge/quality.py": ["tests/edge/test_quality.py", "tests/edge/test_quality_calibration.py",
                        "tests/edge/test_quality_rules.py"],
}
IGNORE = shutil.ignore_patterns(".git", ".venv*", "build", "runs", "demo", "__pycache__", ".mutmut-cache",
                                ".pytest_cache", ".ruff_cache", "*.egg-info", "models")


class MutationError(Exception):
    """The mutation run cannot start or its tool failed."""


def scratch_copy(base):
    """Copy the checkout to ``base``/medkiosk with ../shared and models/ linked beside it, as in CI."""
    tree = os.path.join(base, "medkiosk")
    shutil.copytree(ROOT, tree, ignore=IGNORE)
    for name, target in (("shared", os.path.join(os.path.dirname(ROOT), "shared")),
                         (os.path.join("medkiosk", "models"), os.path.join(ROOT, "models"))):
        if os.path.exists(target):
            os.symlink(target, os.path.join(base, name))
    return tree


def test_artifacts(python):
    """The prebuilt test bundle (built once with torch), so no mutant run retrains it."""
    artifacts = os.path.join(ROOT, "build", "test-artifacts")
    if not os.path.isdir(os.path.join(artifacts, "bundle")):
        subprocess.check_call([python, os.path.join(ROOT, "tests", "make_test_bundle.py"), artifacts])
    return artifacts


def run_module(tree, module, tests, env, out):
    """Mutate ``module`` in ``tree`` against ``tests``; return (killed, total, survivors, seconds)."""
    missing = [t for t in tests if not os.path.isfile(os.path.join(tree, t))]
    if missing:
        raise MutationError("{}: test files {} are missing. Fix: the MODULES table in {}".format(
            module, ", ".join(missing), os.path.relpath(__file__, ROOT)))
    mutmut = os.path.join(os.path.dirname(sys.executable), "mutmut")
    cache = os.path.join(tree, ".mutmut-cache")
    if os.path.exists(cache):
        os.unlink(cache)
    runner = "{} -m pytest -x -q -p no:cacheprovider -p no:randomly {}".format(sys.executable, " ".join(tests))
    start = time.time()
    subprocess.call([mutmut, "run", "--paths-to-mutate", module, "--runner", runner, "--tests-dir",
                     os.path.dirname(tests[0]), "--no-progress", "--simple-output"],
                    cwd=tree, env=env, stdout=subprocess.DEVNULL)
    seconds = time.time() - start
    ids = _survivor_ids(subprocess.check_output([mutmut, "result-ids", "survived"], cwd=tree, env=env))
    ids += _survivor_ids(subprocess.check_output([mutmut, "result-ids", "suspicious"], cwd=tree, env=env))
    total = _count(tree, env, mutmut)
    survivors = [subprocess.check_output([mutmut, "show", i], cwd=tree, env=env).decode() for i in ids]
    with open(os.path.join(tree, module), "rb") as mutated, open(os.path.join(ROOT, module), "rb") as clean:
        if mutated.read() != clean.read():
            raise MutationError("{} was left mutated in the scratch copy; the run is invalid".format(module))
    return total - len(ids), total, survivors, seconds


def _survivor_ids(output):
    return [word for word in output.decode().split() if word.isdigit()]


def _count(tree, env, mutmut):
    total = 0
    for status in ("killed", "survived", "suspicious", "timeout", "untested", "skipped"):
        total += len(_survivor_ids(subprocess.check_output([mutmut, "result-ids", status], cwd=tree, env=env)))
    return total


def write_report(path, rows):
    lines = ["# Mutation run (mutmut 2, scripts/mutation.py)", "",
             "| module | mutants | killed | survived | score | seconds |", "|---|---|---|---|---|---|"]
    for module, (killed, total, survivors, seconds) in rows.items():
        lines.append("| `{}` | {} | {} | {} | {:.1f}% | {:.0f} |".format(
            module, total, killed, len(survivors), 100.0 * killed / max(total, 1), seconds))
    for module, (_killed, _total, survivors, _seconds) in rows.items():
        lines += ["", "## Survivors in `{}`".format(module), ""]
        lines += ["```diff\n{}\n```".format(diff.strip()) for diff in survivors] or ["none"]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(MODULES), help="modules to mutate (default: all)")
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "mutation"))
    args = parser.parse_args(argv)
    try:
        env = dict(os.environ, MEDKIOSK_TEST_ARTIFACTS=test_artifacts(sys.executable))
        base = tempfile.mkdtemp(prefix="medkiosk-mutation-")
        try:
            tree = scratch_copy(base)
            env["PYTHONPATH"] = tree
            rows = {}
            for module in args.only or sorted(MODULES):
                rows[module] = run_module(tree, module, MODULES[module], env, args.out)
                killed, total, survivors, seconds = rows[module]
                print("{}: {}/{} killed ({:.1f}%), {} survived, {:.0f} s".format(
                    module, killed, total, 100.0 * killed / max(total, 1), len(survivors), seconds), flush=True)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        os.makedirs(args.out, exist_ok=True)
        write_report(os.path.join(args.out, "report.md"), rows)
    except (MutationError, subprocess.CalledProcessError, OSError) as exc:
        print("mutation run failed: {}".format(exc), file=sys.stderr)
        return 1
    print("report: {}".format(os.path.relpath(os.path.join(args.out, "report.md"), os.getcwd())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
