"""Model cards assembled from data.

A card is a record: ``{"title": str, "intro": [lines], "sections": [(heading, [lines]), ...]}``.
The exporter's record is rebuilt from the bundle's ``manifest.json`` alone (description, training
summary, export info), so a recipe can put its own record in front of it at any time, from data,
without reading back or splitting a written card.
"""

import json

from edge.bundle import CALIBRATED_ECE_MAX, PERCENT, display_mode
from edge.classify import LIKELIHOOD_WORDS
from edge.description import ModelDescription

INTENDED_USE = "Decision support only — not a diagnosis."
EXPORT_RECORD_TITLE = "Export record (written by the exporter)"


def _contract(description, export_info):
    spec = description.input
    lines = [
        "- ONNX input `{}`: float32 NCHW [{}, {}, {}, {}], raw pixel values {:g}..{:g}, colour {}, "
        "resize {}.".format(
            spec.name, "N" if export_info["dynamic_batch"] else 1, spec.channels, spec.height, spec.width,
            spec.value_range[0], spec.value_range[1], spec.colour, spec.resize),
        "- Normalisation (mean {}, std {}), temperature scaling (T = {:.4g}) and {} are inside the "
        "graph.".format(
            list(description.mean), list(description.std), description.temperature, description.activation),
        "- ONNX output `{}`: float32 [N, {}] calibrated probabilities.".format(
            description.output_name, description.num_classes),
    ]
    if description.input_check:
        check = description.input_check
        lines.append("- Input check output `{}` ({}): a score above {:g} shows \"{}\".".format(
            check["output"], check["method"], float(check["threshold"]), check["message"]))
    heatmap = export_info.get("heatmap_section")
    if heatmap:
        classes, height, width = heatmap["shape"]
        lines.append("- Heatmap output `{}`: float32 [N, {}, {}, {}] class-activation maps ({}); each map's "
                     "mean is its class logit.".format(heatmap["output"], classes, height, width,
                                                       heatmap["method"]))
    lines.append("- ONNX opset {}, precision {}, simplified: {}.".format(
        export_info["opset"], export_info["precision"], "yes" if export_info["simplified"] else "NO"))
    return lines


def _numbers_on_screen(manifest):
    """Why the screen shows percentages or words (edge.bundle.display_mode), and the words' table."""
    mode, reason = display_mode(manifest)
    words = ", ".join("\"{}\" from {:.0%}".format(word, low) for low, word in LIKELIHOOD_WORDS)
    if mode == PERCENT:
        return ["Percentages: {}. Uncertain results still show words ({}), never a percentage.".format(
            reason, words)]
    return ["Words, not percentages: {} (percentages need an ECE <= {}). Each finding is shown as {}.".format(
        reason, CALIBRATED_ECE_MAX, words)]


def _recorded(section):
    return ["- {}: {}".format(k, json.dumps(v)) for k, v in sorted((section or {}).items())] or \
        ["- (not recorded)"]


def _attribution(attribution):
    if isinstance(attribution, (list, tuple)):
        return ["- {}".format(a) for a in attribution]
    return [attribution or "(Not recorded in the checkpoint: add the datasets' citations and licences "
                           "here before deployment.)"]


def export_record(manifest):
    """The exporter's card record, from a bundle manifest (``edge.bundle.make_manifest`` + ``export``)."""
    description = ModelDescription.from_dict(manifest["model"])
    info = dict(manifest["export"], heatmap_section=manifest.get("heatmap"))
    training = manifest.get("training") or {}
    parity = info["parity"]
    module = manifest["module"]
    classes = ["- `{}`: {}".format(c, d) for c, d in zip(description.classes, description.display_names)]
    return {
        "title": "{} ({})".format(module["title"], module["id"]),
        "intro": ["Version {}; exported {} from `{}`.".format(
            manifest["version"], info["created"], info.get("source", "a PyTorch model"))],
        "sections": [
            ("Intended use", [
                "**{}** The model ranks findings for a trained health worker to consider; the worker "
                "decides.".format(INTENDED_USE),
                "Outputs below the abstain threshold ({:g}) are shown as *uncertain*.".format(
                    description.abstain_threshold)]),
            ("Classes", ["Task: {} ({}).".format(description.task, description.activation), ""] + classes),
            ("Input contract", _contract(description, info)),
            ("Training data", _recorded(training.get("data"))),
            ("Metrics (from the checkpoint)", _recorded(training.get("metrics"))),
            ("Numbers on screen", _numbers_on_screen(manifest)),
            ("Attribution", _attribution(training.get("attribution"))),
            ("Known limitations", [
                "- Trained and validated only on the data above; other populations, devices and image types "
                "may fail.",
                "- Not a diagnosis: always combine with clinical assessment."]),
            ("Export parity", [
                "ONNX Runtime (CPU) vs PyTorch on {} images: max |dprob| = {:.3g} (tolerance {:g}), top-1 "
                "agreement {:.0%}.".format(parity["images"], parity["max_abs_diff"], parity["tolerance"],
                                           parity["top1_agreement"])]),
        ],
    }


def record_lines(record, level=1):
    """Markdown lines of a record: its title at ``level``, its intro, its sections one level below."""
    lines = ["#" * level + " " + record["title"], ""]
    if record.get("intro"):
        lines += list(record["intro"]) + [""]
    for heading, body in record["sections"]:
        lines += ["#" * (level + 1) + " " + heading, ""] + list(body) + [""]
    return lines


def render_card(record, appendix=None):
    """The card's text: ``record``, then (optionally) the exporter's record under its own heading."""
    lines = record_lines(record)
    if appendix is not None:
        body = record_lines(appendix)[2:]  # the exporter's own title gives way to the appendix heading
        lines += ["---", "", "# " + EXPORT_RECORD_TITLE, ""] + body
    return "\n".join(lines).rstrip("\n") + "\n"
