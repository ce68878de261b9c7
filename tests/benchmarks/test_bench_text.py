"""benchmarks/text.py runs on the shipped chest bundle and a real X-ray and prints its table.

Not a timing test: every engine and mode is measured, Hershey is the 1.00 reference, and every
FreeType engine really is FreeType with its language's script.
"""

import os

import pytest

from benchmarks import text as bench

pytest.importorskip("onnxruntime")
pytest.importorskip("PIL", reason="pip install Pillow")
pytestmark = pytest.mark.skipif(not os.path.isfile(bench.IMAGE),
                                reason="../shared/data is not beside the checkout")


def test_the_table_has_every_engine_with_hershey_as_reference(capsys):
    from edge import text

    if not text.find_font(text.SCRIPTS["devanagari"]) or not text.find_font(text.SCRIPTS["bengali"]):
        pytest.skip("apt-get install fonts-noto-core")
    assert bench.main(["--frames", "6", "--rounds", "2", "--size", "640x360"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| engine | language | cold ms")
    rows = [line.strip("|").split("|") for line in lines[2:]]
    assert [(row[0].strip(), row[1].strip()) for row in rows] == list(bench.ENGINES)
    assert [float(rows[0][i]) for i in (3, 5, 7)] == [1.0, 1.0, 1.0]
    assert all(float(row[i]) > 0 for row in rows for i in (2, 3, 4, 5, 6, 7))
    screen = bench.Screen("freetype", "hi", *bench.classify(bench.IMAGE), size=(320, 240), frames=2)
    assert screen.engine.name == "freetype" and screen.engine.script == "devanagari"
    text.start("en")
