"""The markdown section of the models benchmark (``benchmarks/models.py``) in docs/benchmarks.md."""

from benchmarks import common

SPEEDUP_GOAL = 10.0


def _speedup_cell(row, ref):
    value = row["speedup"].get(ref)
    spread = (row.get("speedup_per_round") or {}).get(ref)
    if value is None or not spread or row["name"] == ref:
        return common.fmt(value, 1, "x")
    return "{:.1f}x ({:.1f}-{:.1f})".format(value, spread["p25"], spread["p75"])


def _accuracy_cell(row):
    if not row.get("accuracy"):
        return "n/a"
    cells = []
    for a in row["accuracy"]:
        note = []
        if a.get("image_size"):
            note.append("trained at {0}x{0}".format(a["image_size"]))
        if a.get("baseline"):
            note.append("baseline")
        extra = ""
        if a.get("accuracy") is not None and a["metric"] != "accuracy":
            extra = ", accuracy {:.3f}".format(a["accuracy"])
        cells.append(
            "{} {} {:.3f}{}{}".format(
                a["module"], a["metric"], a["value"], extra, " ({})".format(", ".join(note)) if note else ""
            )
        )
    return "; ".join(cells)


def _intro_lines(result):
    env = result["environment"]
    return [
        "## {}".format(result["title"]),
        "",
        "Measured {} on {} ({} CPUs{}; load average {}), Python {}, onnxruntime {}; {} thread(s), "
        "{} interleaved rounds after {} warm-up runs{}.".format(
            env["date"], env.get("jetson") or env.get("cpu") or env["machine"], env["cpu_count"],
            "" if not env.get("jetson") else ", Jetson", env["load_average"], env["python"],
            env["onnxruntime"], result["threads"], result["runs"], result["warmup"],
            " (**--quick: not a measurement**)" if result.get("quick") else ""),
        "",
        "Command: `{}`".format(result["command"]),
        "",
    ]


def _table_lines(result):
    refs = result["references"]
    header = (
        ["model", "input", "params (M)", "GFLOPs", "ONNX (MB)", "median (ms)", "IQR (ms)", "p90 (ms)", "FPS"]
        + ["x vs {}".format(r) for r in refs]
        + ["accuracy (evaluation report)"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row in result["rows"]:
        lat = row["latency"]
        name = row["name"] if row["kind"] == "zoo" else "**{}** ({})".format(row["name"], row["arch"])
        cells = [
            name,
            row["input"],
            common.fmt(None if row["params"] is None else row["params"] / 1e6, 2),
            common.fmt(None if row["flops"] is None else row["flops"] / 1e9, 2),
            common.fmt(row["onnx_bytes"] / 1e6, 1),
            common.fmt(lat["median_ms"], 2),
            common.fmt(lat["iqr_ms"], 2),
            common.fmt(lat["p90_ms"], 2),
            common.fmt(row["fps"], 1),
        ]
        cells += [_speedup_cell(row, r) for r in refs]
        cells.append(_accuracy_cell(row))
        lines.append("| " + " | ".join(cells) + " |")
    counter = next((r["counter"] for r in result["rows"] if r.get("counter")), None)
    return lines + [
        "",
        "Speed-up = median over the rounds of (reference time / model time) in the same round; in brackets "
        "the IQR of those ratios. "
        "GFLOPs = 2 x multiply-accumulates counted on the exported ONNX graph ({}); params are the "
        "graph's initialisers (BatchNorm folded). Zoo rows are random-weight exports of each "
        "architecture through `export_bundle`; bold rows are the shipped bundles.".format(counter or "n/a"),
        "",
    ]


def _verdict(check):
    if check["speed_ok"] and check["accuracy_ok"]:
        return "met"
    return "speed {}, accuracy {} -> {}".format(
        {True: "met", False: "MISSED", None: "n/a"}[check["speed_ok"]],
        {True: "equal or better", False: "WORSE", None: "unverified"}[check["accuracy_ok"]],
        "not met" if check["speed_ok"] is False or check["accuracy_ok"] is False else "unverified",
    )


def _goal_lines(goals):
    if not goals:
        return []
    lines = ["Goal: the shipped default >= {:.0f}x faster than the seed's model at equal or better "
             "accuracy.".format(SPEEDUP_GOAL), ""]
    for check in goals:
        lines.append("- {} vs {}: {} faster -> {} ({})".format(
            check["model"], check["reference"], common.fmt(check["speedup"], 1, "x"), _verdict(check),
            check["note"]))
    return lines + [""]


def render_markdown(result):
    """The models benchmark's section of docs/benchmarks.md."""
    lines = _intro_lines(result) + _table_lines(result) + _goal_lines(result.get("goals") or [])
    return "\n".join(lines) + "\n"
