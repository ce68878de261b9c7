"""The module set: discovery of installed bundles, damaged and duplicate bundles, golden check on load."""

import io
import json
import shutil

import pytest

from edge.kiosk import discover_modules
from tests.edge.kiosk.kiosk_helpers import run_kiosk
from tests.make_test_bundle import resign


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


def _copy(tiny_bundle, folder, edit=None):
    """A copy of the real test bundle in ``folder``, its manifest changed by ``edit(manifest)``."""
    shutil.copytree(tiny_bundle, str(folder))
    if edit is not None:
        path = folder / "manifest.json"
        manifest = json.loads(path.read_text())
        edit(manifest)
        path.write_text(json.dumps(manifest))
    return str(folder)


def _swap_classes(manifest):
    for key in ("classes", "display_names"):
        names = manifest["model"][key]
        names[0], names[1] = names[1], names[0]


def test_a_deeply_nested_manifest_disables_only_its_module(tmp_path, tiny_bundle):
    """A manifest nested deeper than the JSON parser's recursion limit (a RecursionError, which once
    crashed the whole kiosk) or that is not JSON at all disables that module only."""
    models = tmp_path / "models"
    models.mkdir()
    _copy(tiny_bundle, models / "synth")
    nested = models / "nested"
    nested.mkdir()
    (nested / "manifest.json").write_text("[" * 200000 + "]" * 200000)
    broken = models / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"module": {"id": "broken"')
    slots, start = discover_modules(str(models), [])
    by_id = {slot.module_id: slot for slot in slots}
    assert sorted(by_id) == ["broken", "nested", "synth-test"]
    assert by_id["synth-test"].usable and slots[start].module_id == "synth-test"
    for module_id in ("nested", "broken"):
        assert not by_id[module_id].usable and by_id[module_id].bundle is None
        assert by_id[module_id].problem.startswith("Model bundle damaged: ")
        assert "Fix:" in by_id[module_id].problem and "\n" not in by_id[module_id].problem


def test_a_duplicate_module_id_is_reported_and_not_run(tmp_path, tiny_bundle):
    models = tmp_path / "models"
    models.mkdir()
    first = _copy(tiny_bundle, models / "a-synth")
    second = _copy(tiny_bundle, models / "b-synth")
    slots, _start = discover_modules(str(models), ["synth-test"])
    assert len(slots) == 1 and not slots[0].usable
    assert "Duplicate module id 'synth-test'" in slots[0].problem
    assert first in slots[0].problem and second in slots[0].problem and "Fix:" in slots[0].problem
    # A third, damaged copy claiming the same id does not hide the duplicate either.
    _copy(tiny_bundle, models / "c-synth", edit=lambda m: m.update(model_sha256="0" * 64))
    slots, _start = discover_modules(str(models), ["synth-test"])
    assert "Duplicate module id" in slots[0].problem


@pytest.mark.onnxruntime
def test_the_golden_check_refuses_a_bundle_with_swapped_class_names(tmp_path, tiny_bundle):
    from edge.bundle import load_bundle
    from edge.errors import BundleError
    from edge.kiosk import ModuleSlot, default_classifier_opener

    swapped = load_bundle(resign(_copy(tiny_bundle, tmp_path / "swapped", edit=_swap_classes)))
    opener = default_classifier_opener("onnxruntime", "fp32")
    with pytest.raises(BundleError, match="golden images: .* give other results than the lab's"):
        opener(ModuleSlot("synth-test", bundle=swapped))
    classifier = opener(ModuleSlot("synth-test", bundle=load_bundle(tiny_bundle)))  # the original passes
    classifier.__exit__(None, None, None)


def test_the_kiosk_does_not_run_a_module_whose_golden_check_fails(tmp_path, tiny_bundle, two_class_folder):
    """The swapped-classes bundle in the kiosk: no result is ever shown, one line says why."""
    from edge.bundle import load_bundle
    from edge.kiosk import ModuleSlot
    from edge.sources import open_source

    swapped = load_bundle(resign(_copy(tiny_bundle, tmp_path / "swapped", edit=_swap_classes)))
    stderr = io.StringIO()
    kiosk, lines, _frames = run_kiosk(tmp_path, open_source(str(two_class_folder) + "/"),
                                      [ModuleSlot("synth-test", bundle=swapped)], max_frames=4, stderr=stderr)
    assert not [line for line in lines if line.startswith("[")]  # no result line: nothing was shown
    assert not kiosk.slot.usable and "golden images" in kiosk.slot.problem
    journal = [line for line in stderr.getvalue().splitlines() if "golden images" in line]
    assert len(journal) == 1 and journal[0].startswith("medkiosk: Module cannot run here: synth-test: ")


def test_module_set_steps_through_the_slots_and_lists_their_problems(tiny_bundle):
    from edge.bundle import load_bundle
    from edge.kiosk import ModuleSet, ModuleSlot

    usable = ModuleSlot("synth-test", bundle=load_bundle(tiny_bundle))
    missing = ModuleSlot("skin", problem="No model bundle for 'skin'")
    modules = ModuleSet([usable, missing], start=1)
    assert modules.current is missing
    assert modules.next() is usable and modules.next() is missing  # M wraps around
    assert modules.problems() == [("skin", "No model bundle for 'skin'")]
