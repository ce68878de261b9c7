"""Console helpers: escaped file names (no forged log lines) and ASCII-safe printing."""

import io

from edge.console import echo, printable


def test_printable_escapes_control_and_invisible_characters():
    assert printable("chest 01.png") == "chest 01.png"
    assert printable("a.png\nmedkiosk: OK") == "a.png\\nmedkiosk: OK"
    assert printable("x\r\t\x1b[2J\x7f\x85.png") == "x\\r\\t\\x1b[2J\\x7f\\x85.png"
    assert printable("evil\u202egnp.exe\u2028") == "evil\\u202egnp.exe\\u2028"
    assert printable("\udcff.png") == "\\udcff.png"  # an undecodable byte from os.listdir
    assert printable("\U000e0001") == "\\U000e0001"
    assert printable("Röntgen \u0905.png") == "Röntgen \u0905.png"  # printable letters are kept


def test_printed_name_is_one_line_even_on_an_ascii_console():
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    echo(printable("a\nb\udcff\u2014.png"), stream)
    stream.flush()
    assert stream.buffer.getvalue() == b"a\\nb\\udcff-.png\n"
