"""Store and compare the tail fine-tuning trial's variants (``recipes.tail_cli``): one JSON per variant,
then ``summary.json`` / ``summary.md``: per-class and macro AUROC (mean over folds [95% t-interval]),
ECE after temperature, CPU seconds, and the paired patient-level bootstrap difference of the pooled
out-of-fold AUROCs against the shipped head (``head.json``) on the same images."""

import glob
import json
import os
from dataclasses import asdict

import numpy as np

from edge.errors import ConfigError
from recipes.aux_cv import as_numpy_summary
from recipes.tail_cv import paired_difference

SKIP = ("summary.json",)
RECIPE_FIELDS = ("cv_folds", "seed", "head_epochs", "head_lr", "tune_epochs", "tune_lr", "patience",
                 "batch_size", "weight_decay")


def recipe_fields(recipe):
    """What a stored record keeps of its recipe: ``RECIPE_FIELDS`` and, when the input is normalised, its
    ``contrast`` (absent for "none": the records made before the field still match)."""
    fields = {k: getattr(recipe, k) for k in RECIPE_FIELDS}
    if recipe.contrast != "none":
        fields["contrast"] = recipe.contrast
    return fields


def store(path, name, variant, result, data):
    """Write one variant's result (out-of-fold probabilities in the files' order, with their paths)."""
    recipe = data.recipe
    record = {
        "variant": name, "settings": asdict(variant),
        "recipe": recipe_fields(recipe),
        "summary": as_numpy_summary(result["summary"]), "fold_macro_auroc": result["fold_macro_auroc"],
        "seconds": result["seconds"], "pretrain_s": result.get("pretrain_s"),
        "paths": [s.path for s in data.sets["chest"][0]],
        "oof": np.round(result["oof"], 6).tolist(),
    }
    if "dicom_stretch" in result:  # recipes.tail_cv with the "dicom" set
        record["dicom_stretch"] = result["dicom_stretch"]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    os.replace(tmp, path)


def load_dir(folder):
    """{variant: record} of every stored variant in ``folder``."""
    records = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        if os.path.basename(path) in SKIP:
            continue
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        records[record["variant"]] = record
    return records


def summarise_dir(folder, classes, files, draws=1000):
    """Compare every stored variant with ``head``; writes summary.json and summary.md, returns the summary."""
    records = load_dir(folder)
    if "head" not in records:
        raise ConfigError("{} has no head.json (the shipped recipe). Fix: run --variants head".format(folder))
    paths = [s.path for s in files]
    for name, record in records.items():
        if record["paths"] != paths:
            raise ConfigError("{} was scored on other images than {}. Fix: run it again".format(
                name, paths[0]))
    base = np.asarray(records["head"]["oof"])
    summary = {"classes": list(classes), "images": len(files), "patients": len({s.patient_id for s in files}),
               "draws": draws, "variants": {}, "differences": {}, "seconds": {}, "settings": {}}
    for name, record in records.items():
        summary["variants"][name] = record["summary"]
        summary["seconds"][name] = {"cv": record["seconds"], "pretrain": record.get("pretrain_s")}
        summary["settings"][name] = record["settings"]
        if name != "head":
            summary["differences"][name] = paired_difference(files, classes, base, np.asarray(record["oof"]),
                                                             draws)
    with open(os.path.join(folder, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1)
    with open(os.path.join(folder, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown(summary))
    return summary


def _cell(entry):
    return "{:.3f} [{:.3f}, {:.3f}]".format(entry["mean"], entry["ci95"][0], entry["ci95"][1])


def _diff(values):
    return "{:+.3f} [{:+.3f}, {:+.3f}]".format(*values)


def markdown(summary):
    """The comparison as two markdown tables (levels, then paired differences vs the shipped head)."""
    classes = summary["classes"]
    lines = ["| variant | macro AUROC | " + " | ".join(classes) + " | ECE after T | CPU s (CV; pretrain) |",
             "|---" * (len(classes) + 4) + "|"]
    for name, s in summary["variants"].items():
        secs = summary["seconds"][name]
        lines.append("| {} | {} | {} | {} | {:.0f}{} |".format(
            name, _cell(s["macro_auroc"]), " | ".join(_cell(s["per_class"][c]["auroc"]) for c in classes),
            _cell(s["ece"]), secs["cv"], "; {:.0f}".format(secs["pretrain"]) if secs["pretrain"] else ""))
    lines += ["", "Paired difference vs `head` (pooled out-of-fold AUROC, bootstrap over patients, {} "
              "draws):".format(summary["draws"]), "",
        "| variant | macro | " + " | ".join(classes) + " |", "|---" * (len(classes) + 2) + "|"]
    for name, d in summary["differences"].items():
        lines.append("| {} | {} | {} |".format(name, _diff(d["macro"]),
                                               " | ".join(_diff(d[c]) for c in classes)))
    return "\n".join(lines) + "\n"
