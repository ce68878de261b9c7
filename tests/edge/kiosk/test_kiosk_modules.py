"""The module set: discovery of installed bundles, damaged and duplicate bundles, golden check on load."""

import json
import shutil

from edge.kiosk import discover_modules


def test_discover_modules(tmp_path, tiny_bundle):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(tiny_bundle, str(models / "synth"))
    damaged = models / "damaged"
    shutil.copytree(tiny_bundle, str(damaged))
    manifest = json.loads((damaged / "manifest.json").read_text())
    manifest["module"]["id"] = "chest"
    manifest["model_sha256"] = "0" * 64
    (damaged / "manifest.json").write_text(json.dumps(manifest))
    slots, start = discover_modules(str(models), ["chest", "skin", "synth-test"])
    assert [s.module_id for s in slots] == ["chest", "skin", "synth-test"]
    assert "damaged" in slots[0].problem and "sha256" in slots[0].problem
    assert slots[1].bundle is None and "No model bundle" in slots[1].problem
    assert slots[2].usable and start == 2  # starts on the first usable module
    slots, start = discover_modules(str(models / "synth"), ["chest"], first="synth-test")
    assert [s.module_id for s in slots] == ["synth-test", "chest"] and start == 0
