"""export.card: the exporter's card record comes from the bundle manifest alone, and a recipe's card
puts its own record in front of it without reading back or splitting any written text."""

from edge.bundle import make_manifest
from edge.description import InputSpec, ModelDescription
from export.card import EXPORT_RECORD_TITLE, export_record, render_card


def _manifest(**training):
    description = ModelDescription("efficientnet_lite0", "multiclass", ["Normal", "Pneumonia"],
                                   InputSpec(224, 224), temperature=1.25, abstain_threshold=0.6)
    info = {"created": "2026-12-03T08:00:00Z", "opset": 13, "dynamic_batch": False, "precision": "fp32",
            "simplified": True, "source": "best.pt",
            "parity": {"images": 16, "max_abs_diff": 2e-7, "tolerance": 1e-4, "top1_agreement": 1.0}}
    return make_manifest(description, "pediatric-pneumonia", "Paediatric pneumonia", "0" * 64,
                         training=training or None, version="1.2.0", opset=13, extra={"export": info})


def test_the_exporters_card_is_rendered_from_the_manifest():
    text = render_card(export_record(_manifest(attribution=["Kermany et al. CC BY 4.0"])))
    lines = text.splitlines()
    assert lines[0] == "# Paediatric pneumonia (pediatric-pneumonia)"
    assert "Version 1.2.0; exported 2026-12-03T08:00:00Z from `best.pt`." in lines
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == ["## Intended use", "## Classes", "## Input contract", "## Training data",
                        "## Metrics (from the checkpoint)", "## Numbers on screen", "## Attribution",
                        "## Known limitations",
                        "## Export parity"]
    assert "not a diagnosis" in text and "temperature scaling (T = 1.25)" in text
    assert "Words, not percentages: no ECE recorded" in text and '"likely" from 70%' in text
    assert "- Kermany et al. CC BY 4.0" in lines and "- (not recorded)" in lines  # no data, no metrics
    assert "on 16 images: max |dprob| = 2e-07 (tolerance 0.0001), top-1 agreement 100%." in text
    assert text.endswith(".\n") and not text.endswith("\n\n")


def test_missing_attribution_is_called_out():
    assert "add the datasets' citations" in render_card(export_record(_manifest()))


def test_a_recipe_card_carries_the_exporters_record_once_below_its_own():
    manifest = _manifest()
    record = {"title": "Paediatric pneumonia — model card", "intro": ["Decision support only."],
              "sections": [("Intended use", ["Children aged 1-5."])]}
    text = render_card(record, export_record(manifest))
    assert text.startswith("# Paediatric pneumonia — model card\n\nDecision support only.\n\n## Intended use")
    assert text.count("# " + EXPORT_RECORD_TITLE) == 1
    assert "# Paediatric pneumonia (pediatric-pneumonia)" not in text  # the record's heading replaces it
    exporter = render_card(export_record(manifest)).split("\n", 2)[2]
    assert text.endswith(exporter)
    # Rendering again from the same data gives the same card (nothing accumulates).
    assert render_card(record, export_record(manifest)) == text
