"""The module's model card, assembled from records: the recipe's sections (intended use, model,
data, test metrics, input check, failure modes) followed by the exporter's record, rebuilt from the
bundle's manifest (``export.card``)."""

import json
import math
import os

from edge.errors import ConfigError
from edge.signing import SIGNATURE_FILE, SIGNING_KEY_ENV, SigningError, sign_bundle, signing_key_from_env
from export.card import export_record, render_card
from recipes import card_cv, operating_point
from recipes.config import DEFAULT_DATA_ROOT, ROOT
from recipes.photo_data import photo_renders
from recipes.report import input_check_markdown, metrics_markdown, num, pct, split_table
from training.modules import get_module
from training.splits import Split

MODEL_CARD_NOTES = {
    "pediatric-pneumonia": [
        "Published anchor (Kermany et al., Cell 2018): 92.8% accuracy, 93.2% sensitivity, 90.1% "
        "specificity on their official 624-image test split. That split is not available here: our "
        "test split is a patient-level split of their training set, so the numbers are not "
        "directly comparable.",
        "Trained on children aged 1-5 from one hospital in Guangzhou: adult X-rays are out of its domain "
        "(use the adult chest module); other hospitals' equipment may shift its outputs.",
    ],
    "chest": [
        "NIH labels were mined from radiology reports by NLP and are noisy (estimated >90% accurate); "
        "the test split is small (see counts), so the confidence intervals are wide.",
        "Images with findings outside the four classes (e.g. Infiltration only, Cardiomegaly) were dropped "
        "from training, and images with two or more of the module's findings were dropped (multiclass): "
        "the model has never been told that findings co-occur, and a film showing another disease may be "
        "called 'No Finding' or one of the three.",
        "Adult frontal (PA/AP) X-rays only: paediatric films are out of its domain (the input check "
        "refuses them and the kiosk suggests the child module).",
        "The heatmap (H key) is not a localisation: its peak falls inside the radiologists' boxes rarely, "
        "near the rate of a random point (pointing game, `docs/models/chest/pointing.json`).",
    ],
}
COMMON_FAILURES = [
    "Photographs of a film on a light box or a monitor were trained on only as rendered by the project "
    "(training/photograph.py: glare, perspective, moiré, blur, noise, JPEG), not as real cameras take them: "
    "prefer the digital file from a USB stick when there is one.",
    "Lateral views, CT slices and other body parts are out of scope; the input check catches many but not "
    "all of them (see its rates above).",
    "The input check was measured on generated images and a few dozen real photos, not on every kind of "
    "image a user may show it.",
]


ANCHORS = {
    "pediatric-pneumonia": {
        "source": "Kermany et al., Cell 2018 (their official 624-image test split)",
        "accuracy": 0.928,
        "sensitivity": 0.932,
        "specificity": 0.901,
        "positive": "Pneumonia",
        "negative": "Normal",
    }
}


def comparison_markdown(module_id, metrics, recipe, docs_root=None):
    """The published anchor (if any) and the baselines evaluated on the same split, as markdown lines."""
    rows = []
    anchor = ANCHORS.get(module_id)
    if anchor and "accuracy" in metrics:
        pos, neg = metrics["per_class"][anchor["positive"]], metrics["per_class"][anchor["negative"]]
        rows.append(
            "| {} | {} | {} | {} | — |".format(
                anchor["source"],
                pct(anchor["accuracy"]),
                pct(anchor["sensitivity"]),
                pct(anchor["specificity"]),
            )
        )
        rows.append(
            "| this model, {} @ {} (our patient-level test split of their training set) "
            "| {} | {} | {} | {} |".format(
                recipe.arch,
                recipe.image_size,
                pct(metrics["accuracy"], metrics["accuracy_ci95"]),
                pct(pos["sensitivity"], pos["sensitivity_ci95"]),
                pct(neg["sensitivity"], neg["sensitivity_ci95"]),
                num(metrics["macro_auroc"]),
            )
        )
    docs_root = docs_root or os.path.join(ROOT, "docs", "models")
    folder = os.path.join(docs_root, module_id)
    baselines = (
        sorted(d for d in os.listdir(folder) if d.startswith("baseline-")) if os.path.isdir(folder) else []
    )
    for name in baselines:
        path = os.path.join(folder, name, "metrics.json")
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as handle:
            base = json.load(handle)
        base_recipe = base.get("recipe") or {}
        budget = "{}, at most {} epochs".format(base_recipe.get("budget", ""), base_recipe.get("tune_epochs"))
        if anchor:
            bpos, bneg = base["per_class"][anchor["positive"]], base["per_class"][anchor["negative"]]
            extra = [
                pct(bpos["sensitivity"], bpos["sensitivity_ci95"]),
                pct(bneg["sensitivity"], bneg["sensitivity_ci95"]),
            ]
        else:
            extra = []
        rows.append(
            "| baseline: the seed's {} ({}; `docs/models/{}/{}/`) | {} | {}{} |".format(
                name[len("baseline-") :],
                budget,
                module_id,
                name,
                pct(base.get("accuracy"), base.get("accuracy_ci95")),
                "".join(e + " | " for e in extra),
                num(base.get("macro_auroc")),
            )
        )
    if not rows:
        return []
    if anchor:
        header = [
            "| model | accuracy | sensitivity ({}) | specificity | AUROC |".format(anchor["positive"]),
            "|---|---|---|---|---|",
        ]
    else:
        header = ["| model | accuracy | macro AUROC |", "|---|---|---|"]
        rows.insert(
            0,
            "| this model, {} @ {} | {} | {} |".format(
                recipe.arch,
                recipe.image_size,
                pct(metrics.get("accuracy"), metrics.get("accuracy_ci95")),
                num(metrics["macro_auroc"]),
            ),
        )
    return ["", "### Compared with", ""] + header + rows


CROSS_DOMAIN = os.path.join(ROOT, "docs", "models", "input-check-cross-domain.json")


def cross_domain_notes(module_id, path=CROSS_DOMAIN):
    """How often the input check stops X-rays of the other chest data set (measured by the shipped-bundle
    check in docs/models/README.md), as card lines."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        table = json.load(handle)
    notes = []
    for key, row in sorted(table.items()):
        model, _sep, data = key.partition(" model on ")
        if model == module_id and not data.startswith(module_id + " "):
            notes.append(
                "X-rays from the other chest module's data ({}) are stopped by the input check {} of the "
                "time ({} of {}); the rest get this module's findings. The check is built to separate X-rays "
                "from other images, not children from adults: choose the module that fits the "
                "patient.".format(data, pct(row["rate"]), row["flagged"], row["n"])
            )
    return notes


def tune_summary(history):
    """Words for what stage 2 did: which epoch was kept (0 = the stage-1 model)."""
    tune = [row for row in (history or {}).get("tune", []) if "val_loss" in row]
    if not tune:
        return "stage 2 did not run"
    best = min(tune, key=lambda row: row["val_loss"])
    if best["epoch"] == 0:
        return (
            "stage 2 ran {} epoch(s) without beating the stage-1 validation loss, so the shipped weights are "
            "the stage-1 model (frozen backbone, trained head)".format(len(tune) - 1)
        )
    return "stage 2 kept epoch {} of {} (validation loss {:.4f} vs {:.4f} after stage 1)".format(
        best["epoch"], len(tune) - 1, best["val_loss"], tune[0]["val_loss"]
    )


def failure_notes(metrics, classes):
    """Measured weaknesses for the card: low-sensitivity classes, calibration that did not help."""
    notes = []
    for c in classes:
        m = metrics["per_class"][c]
        sens = m.get("sensitivity")
        if sens is not None and not (isinstance(sens, float) and math.isnan(sens)) and sens < 0.5:
            notes.append(
                "**{} is usually missed**: test sensitivity {} ({} cases). Do not rely on this module to "
                "rule it out.".format(c, pct(sens, m.get("sensitivity_ci95")), m["support"])
            )
    before, after = metrics.get("ece_before_temperature"), metrics.get("ece")
    if before is not None and after is not None and after > before and after > 0.05:
        notes.append(
            "Temperature scaling, fitted on the small validation split, did not improve calibration on the "
            "test split (ECE {:.3f} -> {:.3f}): treat the percentages as rough.".format(before, after)
        )
    return notes


PRETRAINING_WORDS = {  # recipe.tail_pretrain: what the tuned blocks learnt first (recipes/tail_recipe.py)
    "pediatric": " Before that, the same blocks (and a 2-class head) were trained on the paediatric module's "
                 "TRAIN-split X-rays, Normal vs Pneumonia (Kermany et al.; its test split never read), a "
                 "chest-pretrained start.",
}
MODEL_CARD_TASK_NOTE = {
    "chest": [
        "- Multiclass rather than multilabel: on the same frozen embeddings and the same 92 test images the "
        "two designs had the same macro AUROC (0.824 vs 0.826); multiclass gives probabilities that rank "
        "the findings directly. Details: `docs/models/chest/task-choice.md`.",
        "",
    ]
}
def _model_lines(recipe, module, metrics, timings, history):
    cal = metrics["calibration_val"]
    if recipe.tune_blocks == 0:
        training = ("- Training (CPU recipe `python -m recipes {}`): a linear head on the frozen network's "
                    "pooled embeddings of the train split's files and {} photographed crop(s) per rendered "
                    "train image (`training/photo_crops.py`: rendered camera frames cut out by the device's "
                    "own `edge.locate` + `normalise_crop`), early stopping on validation files + crops. "
                    "Time on 2 shared CPU cores: {:.0f} s (embeddings from the shared cache).".format(
                        module.id, recipe.photo_renders, timings.get("total_train_s", 0)))
    elif recipe.tune_keep_last:
        training = ("- Training (CPU recipe `python -m recipes {}`): stage 1 trains the head on the frozen "
                    "network's embeddings of the train split's files and {} photographed crop(s) per train "
                    "image; stage 2 fine-tunes the last {} blocks + the 1x1 head convolution + head "
                    "(BatchNorm frozen) on cached feature maps (`recipes/tail_recipe.py`) for a fixed {} "
                    "epochs at learning rate {:g}, keeping the last state (validation loss logged, not used "
                    "to stop).{} Time on 2 shared CPU cores: {:.0f} s.".format(
                        module.id, recipe.photo_renders, recipe.tune_blocks, recipe.tune_epochs,
                        recipe.tune_lr, PRETRAINING_WORDS.get(recipe.tail_pretrain, ""),
                        timings.get("total_train_s", 0)))
    else:
        training = ("- Training (CPU recipe `python -m recipes {}`): stage 1 trains the head on frozen "
                    "embeddings; stage 2 fine-tunes the last {} blocks + head (BatchNorm frozen) with early "
                    "stopping on the validation loss; {}. Time on 2 CPU cores: {:.0f} s.".format(
                        module.id, recipe.tune_blocks, tune_summary(history),
                        timings.get("total_train_s", 0)))
    lines = [
        "- {} (ImageNet-pretrained, offline weights), input {}x{} RGB (grey X-rays are replicated), "
        "task {} ({}). Classes: {}.".format(
            recipe.arch, recipe.image_size, recipe.image_size, module.task,
            "softmax" if module.task == "multiclass" else "sigmoid", ", ".join(module.classes)),
        training,
        "- Temperature scaling on validation: T = {:.3f}; abstain threshold {:.3f} (top probability) chosen "
        "on validation for {:.0%} coverage.".format(
            cal["temperature"], cal["abstain_threshold"], cal["abstain_coverage"]),
        "",
    ]
    return lines + MODEL_CARD_TASK_NOTE.get(module.id, [])


def _data_lines(recipe, counts, split_info):
    lines = ["- {}".format(a) for a in recipe.attribution]
    lines += [
        "- Split: by patient (`{}`; seed {}; 70/15/15 stratified by each patient's majority label); leak "
        "check (patients, identical files, perceptual near-duplicates) clean.".format(
            split_info["split_file"], recipe.seed),
        "",
    ]
    return lines + split_table(counts)


# How ``recipes.evaluation.THRESHOLD_RULES`` sets the input check's thresholds, in words.
RULE_WORDS = {
    "pooled": "{accept:.0%} acceptance of validation X-rays (files + photographed crops pooled)",
    "each": "{accept:.0%} acceptance of validation files AND {accept:.0%} of validation photographed crops "
            "({renders} per val image), the larger of the two thresholds",
}


def rule_words(recipe):
    return RULE_WORDS[recipe.ood_rule].format(accept=recipe.ood_accept, renders=photo_renders(recipe, "val"))


def _input_check_lines(recipe, check, measured):
    lines = [
        "Computed inside the ONNX graph as output `ood_score` (above 1.0 = out of scope): the largest of "
        "(a) the Mahalanobis distance of the model's pooled embedding to the nearest training-class mean "
        "(shared covariance shrunk by {}, {} leading directions), divided by its threshold, chosen for "
        "{}; (b) the image's mean colour saturation divided by {:.2f} "
        "(X-rays are grey); (c) 2 - grey-level contrast / {:.1f} (blank or uniform frames; {:.0%} of the "
        "lowest contrast among validation X-rays).".format(
            recipe.ood_shrinkage, recipe.ood_components, rule_words(recipe), check["colour_threshold"],
            check["contrast_threshold"], recipe.contrast_fraction),
        "",
    ]
    if check.get("scope_threshold") is not None or "+scope" in check.get("method", ""):
        lines[-1:] = ["(d) a linear out-of-scope score on the embedding (logistic regression: this module's "
                      "train X-rays, files and photographed crops, against the other patient group's train "
                      "X-rays and their crops and generated non-X-rays of seed 1), threshold for {}. When it "
                      "refuses, the kiosk tries the other installed modules' checks and suggests one that "
                      "accepts.".format(rule_words(recipe)),
                      ""]
    scope = card_cv.scope_lines({"input_check": measured}, recipe.other_group)
    return lines + input_check_markdown(measured) + scope


def _metrics_lines(module, metrics, recipe):
    lines = metrics_markdown(metrics, list(module.classes)) + comparison_markdown(module.id, metrics, recipe)
    return lines + ["", "Full evaluation report, confusion matrix, ROC curves and reliability diagrams: "
                        "`docs/models/{}/`.".format(module.id)]


def card_record(manifest, recipe, module, run):
    """The recipe's card record for an installed bundle's ``manifest`` and a run's saved results
    (``run``: metrics, timings, history, counts, split_info)."""
    metrics = run["metrics"]
    classes = list(module.classes)
    notes = failure_notes(metrics, classes)
    if not metrics.get("input_check", {}).get("scope"):
        notes += cross_domain_notes(module.id)
    notes += MODEL_CARD_NOTES.get(module.id, []) + COMMON_FAILURES
    return {
        "title": "{} — model card".format(module.title),
        "intro": ["**Decision support only — not a diagnosis.** For trained health workers, who decide. "
                  "The kiosk shows {}, an *uncertain* state below the abstain threshold and \"Not a chest "
                  'X-ray" when the input check fails.'.format(_shown(metrics))],
        "sections": [section for section in [
            ("Intended use", [module.description]),
            ("Model", _model_lines(recipe, module, metrics, run["timings"], run.get("history"))),
            ("Data and provenance", _data_lines(recipe, run["counts"], run["split_info"])),
            ("Test metrics (95% confidence intervals)", _metrics_lines(module, metrics, recipe)),
            ("Cross-validation (patient-level k-fold)", card_cv.cv_lines(metrics, classes)),
            ("Operating point (when the kiosk names the finding)", operating_point.card_lines(metrics)),
            ("Percentages or words on screen", card_cv.calibration_lines(metrics)),
            ("Photographed X-rays (the camera path)", card_cv.photo_lines(module.id)),
            ('Input check: "Not a chest X-ray"', _input_check_lines(
                recipe, manifest["model"]["input_check"], metrics["input_check"])),
            ("Known failure modes and limitations", ["- " + note for note in notes]),
        ] if section[1]],  # a recipe without an operating point has no such section
    }


def _shown(metrics):
    display = (metrics.get("calibration_display") or {}).get("display")
    if display == "words":
        return ("each finding as a word (likely / possible / unlikely) rather than a percentage (its "
                "cross-validated calibration is not good enough: see below)")
    return "the findings' calibrated probabilities"


def write_model_card(bundle, recipe, module, run):
    """Write the bundle's model_card.md: the recipe's record, then the exporter's (both from data)."""
    with open(os.path.join(bundle, "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    path = os.path.join(bundle, "model_card.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render_card(card_record(manifest, recipe, module, run), export_record(manifest)))
    _resign(bundle)
    return path


def _resign(bundle):
    """The card is part of the signed bundle: sign it again with the lab's key, or refuse loudly."""
    if not os.path.isfile(os.path.join(bundle, SIGNATURE_FILE)):
        return
    key = signing_key_from_env()
    if not key:
        raise SigningError("{}: the model card changed after the bundle was signed. Fix: set {} to the "
                           "maintainer's key and run the recipe again (or `medkiosk bundle sign {} --key "
                           "KEY`)".format(bundle, SIGNING_KEY_ENV, bundle))
    sign_bundle(bundle, key)


def rewrite_card(recipe, run_dir, models_dir, split_dir):
    """Rewrite an installed bundle's model card from a finished run's metrics.json (no training)."""
    module = get_module(recipe.module)
    saved_path = os.path.join(run_dir, "metrics.json")
    bundle = os.path.join(models_dir, module.id)
    if not os.path.isfile(saved_path) or not os.path.isfile(os.path.join(bundle, "manifest.json")):
        raise ConfigError("cannot rewrite the card: {} or the bundle {} is missing. Fix: pass --out the "
                          "run folder of a finished recipe run and --models where it installed the "
                          "bundle".format(saved_path, bundle))
    with open(saved_path, encoding="utf-8") as handle:
        saved = json.load(handle)
    split_file = os.path.join(split_dir, "{}.json".format(recipe.module))
    counts = Split.from_file(split_file, root=os.path.join(DEFAULT_DATA_ROOT, recipe.data)).counts()
    run = {"metrics": saved, "timings": saved["timings"], "history": saved["history"], "counts": counts,
           "split_info": {"split_file": os.path.relpath(split_file, ROOT)}}
    return write_model_card(bundle, recipe, module, run)
