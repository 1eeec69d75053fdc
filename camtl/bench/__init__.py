"""Benchmark programs: ``python -m camtl.bench speed``, ``python -m camtl.bench glue-mini`` and the others
``python -m camtl.bench --help`` lists.

Imports: anything below it (camtl.errors, camtl.tasks, camtl.data, camtl.model, camtl.training); never
camtl.api, and nothing below imports camtl.bench (tests/test_layout.py).
"""
