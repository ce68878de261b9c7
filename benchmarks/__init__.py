"""Benchmark scripts: pipeline overhead, model cost, memory.

Each writes a JSON result and regenerates its section of docs/benchmarks.md.

Python 3.6 compatible (they run on a Jetson Nano as they are); only ``models.py`` exports with torch, and only
when its bundles are not built yet.
"""
