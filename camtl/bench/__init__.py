"""Benchmark programs: ``python -m camtl.bench speed`` and ``python -m camtl.bench glue-mini``."""
