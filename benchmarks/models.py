"""Model cost: parameters, FLOPs, ONNX size and inference latency of every architecture in the zoo.

Each architecture is exported (random weights: speed does not depend on them) through the real
export path (``export.onnx_export.export_bundle``) into ``--export-dir``; FLOPs are counted on the
ONNX graph with onnx-tool; latency is timed through the same runner the kiosk uses
(``edge.backends.open_runner``) at batch 1 with fixed threads, all models interleaved round by
round so that machine drift hits them equally. Speed-ups are ratios of medians against the
reference models (the seed's vgg16_seed and resattn56), shown beside each model's accuracy from
the evaluation reports (``docs/models/MODULE/metrics.json`` and the baselines' in
``docs/models/MODULE/baseline-ARCH/``). Shipped bundles (``models/*/``) are
measured in the same rounds.

Exporting needs torch (a workstation); on a device pass ``--bundles-dir`` with bundles built there.
The markdown section is ``benchmarks/models_report.py``'s.
"""

import argparse
import glob
import json
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from benchmarks.models_report import SPEEDUP_GOAL  # noqa: E402

NAME = "models"
DEFAULT_ARCHS = (
    "efficientnet_lite0",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "resnet18",
    "densenet121",
    "vgg16_seed",
    "resattn56",
)
REFERENCES = ("vgg16_seed", "resattn56")
GOAL_REFERENCE = "vgg16_seed"
DEFAULT_EXPORT_DIR = os.path.join(common.ROOT, "build", "bench-models")
MODELS_DIR = os.path.join(common.ROOT, "models")
REPORTS_DIR = os.path.join(common.ROOT, "docs", "models")
# Headline metrics looked up in an evaluation report, best first (multilabel AUROC, then accuracy).
ACCURACY_KEYS = (
    "auroc_macro",
    "macro_auroc",
    "mean_auroc",
    "auc_macro",
    "roc_auc_macro",
    "auroc",
    "balanced_accuracy",
    "accuracy",
)


# ---- bundles --------------------------------------------------------------------------------------


def bundle_path(export_dir, arch, size):
    return os.path.join(export_dir, "{}-{}".format(arch, size))


def build_bundle(arch, size, num_classes, out_dir):
    """Export a randomly initialised ``arch`` at ``size`` x ``size`` RGB into a bundle (needs torch)."""
    from edge.lazy import require

    torch = require(
        "torch",
        "exporting needs torch: pip install 'medkiosk[train,export]' (or build the "
        "bundles on a workstation and pass --bundles-dir)",
    )
    from edge.description import InputSpec, ModelDescription
    from export.onnx_export import ExportSource, export_bundle
    from training.checkpoint import build_net
    from training.nets import DeployModel

    torch.manual_seed(0)
    description = ModelDescription(
        arch=arch,
        task="multiclass",
        classes=["class{}".format(i) for i in range(num_classes)],
        input_spec=InputSpec(size, size, "RGB"),
    )
    net = build_net(description, pretrained=False).eval()
    source = ExportSource(
        DeployModel(net, description).eval(),
        description,
        data={"module": {"id": "bench-" + arch, "title": "benchmark " + arch}},
    )
    title = "Benchmark: {} (random weights)".format(arch)
    return export_bundle(source, out_dir, module_id="bench-" + arch, title=title, golden=False)


def parse_specs(text, default_size):
    """'a,b@64' -> [(row name, arch, size)]: ``@SIZE`` measures an architecture at another input size
    (e.g. a baseline at the size it was trained at); such rows are named ``arch@size``."""
    specs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        arch, _sep, size = item.partition("@")
        size = int(size) if size else default_size
        specs.append((arch if size == default_size else "{}@{}".format(arch, size), arch, size))
    return specs


def ensure_bundles(specs, export_dir, num_classes, rebuild=False, log=print):
    """{row name: bundle path}, exporting the ones missing (or of another size) into ``export_dir``."""
    from edge.bundle import load_lab_bundle
    from edge.errors import BundleError

    paths = {}
    for name, arch, size in specs:
        path = bundle_path(export_dir, arch, size)
        usable = False
        if os.path.isdir(path) and not rebuild:
            try:
                description = load_lab_bundle(path, check_hash=False).description
                usable = description.arch == arch and description.input.height == size
            except BundleError:
                usable = False
        if not usable:
            log("exporting {} at {}x{} -> {}".format(arch, size, size, path))
            build_bundle(arch, size, num_classes, path)
        paths[name] = path
    return paths


def shipped_bundles(models_dir=MODELS_DIR):
    """{module id: bundle path} of the bundles shipped in ``models/`` (folders with a manifest.json)."""
    found = {}
    for manifest in sorted(glob.glob(os.path.join(models_dir, "*", "manifest.json"))):
        path = os.path.dirname(manifest)
        found[os.path.basename(path)] = path
    return found


# ---- static cost ----------------------------------------------------------------------------------


def onnx_cost(model_path, input_shape):
    """Parameters and MACs counted on the ONNX graph by onnx-tool, and the file size."""
    cost = {
        "onnx_bytes": os.path.getsize(model_path),
        "params": None,
        "macs": None,
        "flops": None,
        "counter": None,
    }
    try:
        import onnx_tool
    except ImportError:
        cost["counter"] = "onnx-tool not installed (pip install onnx-tool)"
        return cost
    import numpy as np

    model = onnx_tool.Model(model_path, {"verbose": False})
    graph = model.graph
    graph.graph_reorder_nodes()
    name = graph.input[0]
    graph.shape_infer({name: np.zeros(input_shape, dtype=np.float32)})
    graph.profile()
    cost["params"] = int(graph.params)
    cost["macs"] = int(round(graph.macs[0]))
    cost["flops"] = 2 * cost["macs"]  # one multiply-accumulate = two floating-point operations
    version = getattr(onnx_tool, "VERSION", getattr(onnx_tool, "__version__", ""))
    cost["counter"] = "onnx-tool {}".format(version)
    return cost


# ---- accuracy from the evaluation reports ---------------------------------------------------------


def _find_metric(data):
    """(key, value) of the first headline metric found in a (nested) report, test split preferred."""
    if not isinstance(data, dict):
        return None
    for section in ("test", "metrics", "overall", "summary"):
        found = _find_metric(data.get(section)) if isinstance(data.get(section), dict) else None
        if found:
            return found
    for key in ACCURACY_KEYS:
        value = data.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return key, float(value)
    return None


def _find(data, keys, sections=("recipe", "description", "model", "config")):
    """The first value under one of ``keys``, at the top or in one of ``sections``."""
    if not isinstance(data, dict):
        return None
    for key in keys:
        if data.get(key) is not None and not isinstance(data.get(key), dict):
            return data[key]
    for section in sections:
        found = _find(data.get(section), keys, ())
        if found is not None:
            return found
    return None


def _report_entries(path, data, reports_dir):
    """The evaluation entry of one metrics.json (module = its first folder under ``reports_dir``)."""
    parts = os.path.relpath(path, reports_dir).split(os.sep)
    arch = _find(data, ("arch", "architecture"))
    metric = _find_metric(data)
    if not isinstance(arch, str) or not metric:
        return []
    size = _find(data, ("image_size",))
    accuracy = data.get("accuracy")
    return [
        {
            "module": parts[0],
            "arch": arch,
            "metric": metric[0],
            "value": metric[1],
            "accuracy": float(accuracy) if isinstance(accuracy, (int, float)) else None,
            "image_size": size if isinstance(size, int) else None,
            "baseline": any(part.startswith("baseline") for part in parts[1:-1]),
            "source": common.display_path(path),
        }
    ]


def accuracy_reports(reports_dir=REPORTS_DIR):
    """Every (module, arch, metric, value) in ``docs/models/MODULE/metrics.json`` and one level below
    (``docs/models/MODULE/baseline-ARCH/metrics.json``)."""
    found = []
    paths = glob.glob(os.path.join(reports_dir, "*", "metrics.json")) + glob.glob(
        os.path.join(reports_dir, "*", "*", "metrics.json")
    )
    for path in sorted(paths):
        try:
            with open(path) as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        found.extend(_report_entries(path, data, reports_dir))
    return found


def accuracy_for(arch, reports, module=None):
    """The reports for an architecture (optionally one module)."""
    return [r for r in reports if r["arch"] == arch and (module is None or r["module"] == module)]


# ---- latency ---------------------------------------------------------------------------------------


def sample_tensor(input_spec, seed=0):
    """A preprocessed batch of one from a synthetic 640x480 frame (speed does not depend on pixels)."""
    import numpy as np

    from edge.preprocess import preprocess

    frame = np.random.RandomState(seed).randint(0, 256, size=(480, 640, 3)).astype(np.uint8)
    return preprocess(frame, input_spec)


def open_runners(bundles, backend, precision, threads, engine_cache, providers=None):
    """{name: loaded runner} for {name: bundle path}."""
    from edge.backends import open_runner
    from edge.bundle import load_lab_bundle

    runners = {}
    try:
        for name, path in bundles.items():
            options = {"threads": threads or None, "providers": providers} if backend == "onnxruntime" else {}
            runner = open_runner(
                load_lab_bundle(path),
                backend=backend,
                precision=precision,
                engine_cache=engine_cache,
                allow_build=True,
                **options,
            )
            runners[name] = runner.load()
    except BaseException:
        for runner in runners.values():
            runner.close()
        raise
    return runners


def interleaved_latency(runners, tensors, runs, warmup):
    """{name: [seconds]}: each round times one inference of every model, the order rotating per round."""
    import time

    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name].infer(tensors[name])
    samples = {name: [] for name in names}
    for round_index in range(runs):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            runners[name].infer(tensors[name])
            samples[name].append(time.perf_counter() - start)
    return samples


# ---- main ------------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="benchmarks/models.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--archs",
        default=None,
        help="comma-separated ARCH or ARCH@SIZE (another input size) (default: the zoo: {})".format(
            ",".join(DEFAULT_ARCHS)
        ),
    )
    parser.add_argument(
        "--references",
        default=",".join(REFERENCES),
        help="models every speed-up is computed against (default: %(default)s)",
    )
    parser.add_argument(
        "--goal-reference",
        default=GOAL_REFERENCE,
        help="the model(s) the speed-up goal is checked against, comma-separated; e.g. "
        "vgg16_seed,vgg16_seed@64 (default: %(default)s)",
    )
    parser.add_argument("--size", type=int, default=224, help="input height and width (default: %(default)s)")
    parser.add_argument(
        "--classes", type=int, default=2, help="classes of the exported heads (default: %(default)s)"
    )
    parser.add_argument(
        "--export-dir",
        default=DEFAULT_EXPORT_DIR,
        help="where the benchmark bundles are built and reused (default: %(default)s)",
    )
    parser.add_argument(
        "--bundles-dir",
        default=None,
        help="use the bundles in this folder (ARCH-SIZE/), never export (on a device)",
    )
    parser.add_argument("--rebuild", action="store_true", help="export again even if a bundle exists")
    parser.add_argument("--export-only", action="store_true", help="build the bundles and stop")
    parser.add_argument(
        "--shipped",
        default=MODELS_DIR,
        help="shipped bundles measured alongside ('' for none; default: %(default)s)",
    )
    parser.add_argument(
        "--backend", default="onnxruntime", help="onnxruntime or tensorrt (default: %(default)s)"
    )
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"))
    parser.add_argument(
        "--providers",
        default="cpu",
        help="ONNX Runtime execution providers, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="ONNX Runtime intra-op threads, the same for every model; 0: its default (default: %(default)s)",
    )
    parser.add_argument("--engine-cache", default=None, help="TensorRT engine cache folder")
    parser.add_argument("--runs", type=int, default=100, help="timed rounds (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed inferences per model first")
    parser.add_argument(
        "--reports",
        default=REPORTS_DIR,
        help="evaluation reports: MODULE/[baseline-ARCH/]metrics.json (default: %(default)s)",
    )
    common.add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = min(args.runs, 5)
        args.warmup = min(args.warmup, 1)
    if args.archs is None:
        args.archs = "mobilenet_v3_small" if args.quick else ",".join(DEFAULT_ARCHS)
    args.specs = parse_specs(args.archs, args.size)
    args.archs = [arch for _name, arch, _size in args.specs]
    args.references = [a.strip() for a in args.references.split(",") if a.strip()]
    return args


def _bundles_to_measure(args, log):
    """name -> bundle folder: built here (``ensure_bundles``) or found in ``--bundles-dir``."""
    if not args.bundles_dir:
        return ensure_bundles(args.specs, args.export_dir, args.classes, args.rebuild, log=log)
    bundles = {}
    for name, arch, size in args.specs:
        path = bundle_path(args.bundles_dir, arch, size)
        if os.path.isdir(path):
            bundles[name] = path
        else:
            log("skipping {}: no bundle {} (build it with --export-only on a workstation)".format(name, path))
    return bundles


def _rows(args, bundles):
    """One row per zoo bundle and shipped bundle, with its input and ONNX cost; and its input tensor."""
    from edge.bundle import load_lab_bundle

    rows = [{"name": name, "arch": None, "kind": "zoo", "bundle": common.display_path(path)}
            for name, path in bundles.items()]
    for module, path in (shipped_bundles(args.shipped) if args.shipped else {}).items():
        rows.append({"name": "shipped:" + module, "arch": None, "kind": "shipped", "module": module,
                     "bundle": common.display_path(path)})
    if not rows:
        raise SystemExit(
            "benchmarks/models.py: nothing to measure: no bundles for {} at {}x{} (and no "
            "shipped bundles)".format(",".join(args.archs), args.size, args.size)
        )
    tensors = {}
    for row in rows:
        bundle = load_lab_bundle(os.path.join(common.ROOT, row["bundle"]))
        spec = bundle.description.input
        row["arch"] = bundle.description.arch
        row["input"] = "{}x{} {}".format(spec.height, spec.width, spec.colour)
        row.update(onnx_cost(bundle.model_path, spec.shape(1)))
        tensors[row["name"]] = sample_tensor(spec)
    return rows, tensors


def _time_rows(args, rows, tensors):
    """Latency samples of every row, all models interleaved round by round."""
    runners = open_runners({row["name"]: os.path.join(common.ROOT, row["bundle"]) for row in rows},
                           args.backend, args.precision, args.threads, args.engine_cache, args.providers)
    try:
        for row in rows:
            row["provider"] = runners[row["name"]].provider
            row["precision_in_use"] = runners[row["name"]].precision
        return interleaved_latency(runners, tensors, args.runs, args.warmup)
    finally:
        for runner in runners.values():
            runner.close()


def _speedups(rows, samples, references):
    by_name = {row["name"]: row for row in rows}
    for row in rows:
        row["speedup"] = {}
        row["speedup_per_round"] = {}
        for ref in references:
            if ref in by_name:
                # Paired ratios: rounds are interleaved, so round i of both models ran side by side;
                # the speed-up is their median (robust to a slow round hitting one model only).
                ratios = sorted(a / b for a, b in zip(samples[ref], samples[row["name"]]))
                row["speedup"][ref] = common.percentile(ratios, 50)
                row.setdefault("speedup_of_medians", {})[ref] = (
                    by_name[ref]["latency"]["median_ms"] / row["latency"]["median_ms"]
                )
                row["speedup_per_round"][ref] = {
                    "p25": common.percentile(ratios, 25),
                    "median": common.percentile(ratios, 50),
                    "p75": common.percentile(ratios, 75),
                }


def measure(args, log=print):
    bundles = _bundles_to_measure(args, log)
    if args.export_only:
        return None
    rows, tensors = _rows(args, bundles)
    log("timing {} models x {} interleaved rounds ({} {}, {} thread(s))".format(
        len(rows), args.runs, args.backend, args.precision, args.threads))
    samples = _time_rows(args, rows, tensors)
    reports = accuracy_reports(args.reports)
    for row in rows:
        row["latency"] = common.summarize(samples[row["name"]])
        row["fps"] = 1000.0 / row["latency"]["median_ms"]
        row["accuracy"] = accuracy_for(row["arch"], reports, row.get("module"))
        if row["kind"] == "shipped":
            row["accuracy"] = [a for a in row["accuracy"] if not a["baseline"]]
    _speedups(rows, samples, args.references)
    return rows, reports


def goal_checks(rows, reference=GOAL_REFERENCE):
    """The goal: each shipped model >= 10x faster than the reference at equal or better accuracy."""
    checks = []
    ref_rows = [r for r in rows if r["name"] == reference]
    for row in rows:
        if row["kind"] != "shipped":
            continue
        speedup = row["speedup"].get(reference)
        check = {
            "model": row["name"],
            "reference": reference,
            "speedup": speedup,
            "speed_ok": None,
            "accuracy_ok": None,
            "note": "",
        }
        if speedup is not None:
            check["speed_ok"] = speedup >= SPEEDUP_GOAL
        mine = row["accuracy"]
        theirs = []
        if mine and ref_rows:
            theirs = [
                a
                for a in ref_rows[0]["accuracy"]
                if a["module"] == mine[0]["module"] and a["metric"] == mine[0]["metric"]
            ]
        if theirs:
            check["accuracy_ok"] = mine[0]["value"] >= theirs[0]["value"]
            check["note"] = "{} {} {:.3f} vs {} {:.3f}{}".format(
                mine[0]["module"],
                mine[0]["metric"],
                mine[0]["value"],
                reference,
                theirs[0]["value"],
                " (trained at {0}x{0})".format(theirs[0]["image_size"])
                if theirs[0].get("image_size")
                else "",
            )
        else:
            check["note"] = "accuracy comparison n/a (no evaluation report for {} on {})".format(
                reference, row.get("module")
            )
        checks.append(check)
    return checks


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.backend not in ("onnxruntime", "tensorrt"):
        print("benchmarks/models.py: --backend must be onnxruntime or tensorrt", file=sys.stderr)
        return 2
    env = common.environment()
    measured = measure(args)
    if measured is None:
        print("bundles ready in {}".format(args.export_dir))
        return 0
    rows, reports = measured
    result = {
        "title": "Model cost ({} {}, {}x{}, batch 1)".format(
            args.backend, args.precision, args.size, args.size
        ),
        "command": common.command_line(NAME, argv),
        "environment": env,
        "backend": args.backend,
        "precision": args.precision,
        "threads": args.threads,
        "size": args.size,
        "runs": args.runs,
        "warmup": args.warmup,
        "quick": args.quick,
        "references": args.references,
        "rows": rows,
        "accuracy_reports": reports,
        "goals": [
            check
            for reference in args.goal_reference.split(",")
            if reference.strip()
            for check in goal_checks(rows, reference.strip())
        ],
    }
    common.finish(result, args, NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
