"""Pieces of `python -m experiments.benchmark`: one file per kind of measurement.

Each measurement is one JSON-able dict with a `section` (ceiling, train_step, matmul_floor,
attention, pipeline, vilt, time_to_accuracy) and the fields `report.SECTIONS` names for its
table.
"""
