"""``medkiosk cases list/export`` on a real case log."""

import csv
import json
import os

from edge.caselog import CaseLog
from edge.cli import main
from tests.edge.kiosk_media import textured

RESULT = {"top3": [{"name": "Pleural effusion", "probability": 0.72}, {"name": "Nodule", "probability": 0.2},
                   {"name": "No finding", "probability": 0.08}], "uncertain": True, "quality": {"ok": True}}


def _state(tmp_path):
    state = str(tmp_path / "state")
    with CaseLog(state, min_free_mb=0) as log:
        first = log.save(textured(0), RESULT, "chest", bundle_id="chest@1+abc",
                         created="2026-11-01T09:00:00+00:00")
        second = log.save(textured(1), dict(RESULT, uncertain=False), "chest",
                          created="2026-11-20T09:00:00+00:00")
    return state, first, second


def test_list_table_and_json(tmp_path, capsys):
    state, first, second = _state(tmp_path)
    assert main(["cases", "--state-dir", state, "list"]) == 0
    table = capsys.readouterr().out
    assert first.uid in table and second.uid in table and "Pleural effusion" in table
    assert "uncertain" in table and "2 case(s)" in table
    assert main(["cases", "--state-dir", state, "list", "--json", "--since", "2026-11-10"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["uid"] for c in data["cases"]] == [second.uid]
    assert data["cases"][0]["result"]["top3"][0]["name"] == "Pleural effusion"
    assert os.path.isfile(data["cases"][0]["image"])


def test_export_to_a_usb_folder(tmp_path, capsys):
    state, first, second = _state(tmp_path)
    usb = tmp_path / "usb"
    usb.mkdir()
    assert main(["cases", "--state-dir", state, "export", "--to", str(usb)]) == 0
    assert "exported 2 case(s)" in capsys.readouterr().out
    (folder,) = list(usb.iterdir())
    with open(str(folder / "cases.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["case"] for r in rows] == [first.uid, second.uid]
    assert rows[0]["uncertain"] == "1" and rows[1]["uncertain"] == "0" and rows[0]["percent_1"] == "72.0"
    assert all(os.path.isfile(str(folder / r["image"])) for r in rows)


def test_clear_errors(tmp_path, capsys):
    assert main(["cases", "--state-dir", str(tmp_path / "none"), "list"]) == 2
    assert "no case log" in capsys.readouterr().err
    state, _first, _second = _state(tmp_path)
    assert main(["cases", "--state-dir", state, "export", "--to", str(tmp_path / "nousb")]) == 2
    assert "insert and mount the USB stick" in capsys.readouterr().err


def test_options_before_or_after_the_action(tmp_path, capsys):
    state, first, _second = _state(tmp_path)
    assert main(["cases", "list", "--state-dir", state]) == 0
    after = capsys.readouterr().out
    assert main(["cases", "--state-dir", state, "list"]) == 0
    assert capsys.readouterr().out == after and first.uid in after
    assert "K-0001" in after and "K-0002" in after
    usb = tmp_path / "usb"
    usb.mkdir()
    assert main(["cases", "export", "--to", str(usb), "--state-dir", state]) == 0
    assert "exported 2 case(s)" in capsys.readouterr().out


def test_a_closed_pipe_ends_quietly(tmp_path):
    import subprocess
    import sys

    state, _first, _second = _state(tmp_path)
    with CaseLog(state, min_free_mb=0) as log:  # enough rows that the output outlives the pipe buffer
        for index in range(400):
            log.save(textured(index % 4), RESULT, "chest")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    command = "{} -m edge cases list --state-dir {} | head -1".format(sys.executable, state)
    process = subprocess.Popen(["bash", "-o", "pipefail", "-c", command], cwd=root,
                               env=dict(os.environ, PYTHONPATH=root), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True)
    out, err = process.communicate(timeout=120)
    assert out.split() == ["number", "case", "saved", "(UTC)", "module", "top", "finding", "%", "flags"]
    assert err == "" and process.returncode == 0
