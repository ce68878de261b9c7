"""Real image files for the reading tests: a PNG decompression bomb, 16-bit PNGs, a peak-memory runner.

Python 3.6 compatible (the edge tests also run under the Jetson Nano's Python).
"""

import json
import os
import struct
import subprocess
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHEST_BUNDLE = os.path.join(ROOT, "models", "chest")

# Runs a command, then reports its exit code, output and peak resident memory (getrusage of children).
PEAK_RUNNER = ("import json, resource, subprocess, sys\n"
               "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
               "print(json.dumps({'rc': p.returncode, 'out': p.stdout.decode('utf-8', 'replace'),\n"
               "                  'err': p.stderr.decode('utf-8', 'replace'),\n"
               "                  'peak_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")


def _chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def write_png_bomb(path, side=20000):
    """A small PNG (about 400 KB) of black 8-bit grey pixels that decodes to side x side."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + one row of zeros
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n")
        handle.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)))
        handle.write(_chunk(b"IDAT", b"".join(parts)))
        handle.write(_chunk(b"IEND", b""))
    return path


def add_sbit(png_bytes, bits):
    """A PNG with an sBIT chunk (significant bits of a grey image) inserted after IHDR."""
    ihdr_end = 8 + 4 + 4 + 13 + 4
    return png_bytes[:ihdr_end] + _chunk(b"sBIT", bytes([bits])) + png_bytes[ihdr_end:]


def run_measured(args, timeout=300):
    """Run ``python -m edge ARGS`` in a subprocess; return (rc, stdout, stderr, peak RSS in MB)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)
    output = subprocess.check_output([sys.executable, "-c", PEAK_RUNNER, sys.executable, "-m", "edge"] +
                                     list(args), cwd=ROOT, env=env, timeout=timeout)
    result = json.loads(output.decode("utf-8"))
    return result["rc"], result["out"], result["err"], result["peak_kb"] / 1024.0


def classify_json(paths, bundle=CHEST_BUNDLE):
    """``medkiosk classify --json`` on real files through a real bundle: {path: probabilities or error}."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    process = subprocess.Popen([sys.executable, "-m", "edge", "classify", "--bundle", bundle, "--json",
                                "--backend", "onnxruntime", "--precision", "fp32"] + list(paths),
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=300)
    document = json.loads(out.decode("utf-8"))
    return {entry["path"]: entry.get("probabilities", entry.get("error")) for entry in document["images"]}, \
        err.decode("utf-8")
