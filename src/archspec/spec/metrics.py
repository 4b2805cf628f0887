"""Metric names and the head kinds they apply to."""

from __future__ import annotations

import re

CLASSIFICATION = {"multiclass", "multilabel", "binary", "late"}
METRICS: dict[str, set[str]] = {
    "accuracy": {"multiclass", "multilabel", "binary", "similarity"},
    "binary_accuracy": {"multilabel", "binary", "similarity"},
    "precision_micro": CLASSIFICATION,
    "precision_macro": CLASSIFICATION,
    "recall_micro": CLASSIFICATION,
    "recall_macro": CLASSIFICATION,
    "f1_micro": CLASSIFICATION,
    "f1_macro": CLASSIFICATION,
    "auc": {"multiclass", "multilabel", "binary", "similarity"},
    "mae": {"regression"},
    "rmse": {"regression"},
    "mse": {"regression"},
    "r2": {"regression"},
}
RECALL_AT = re.compile(r"^recall@([1-9][0-9]{0,3})$")
"""`recall@K` for two towers: share of queries whose positive is in the top K of the batch/catalogue."""


def metric_kinds(name: str) -> set[str] | None:
    """Head kinds a metric applies to, or ``None`` for an unknown metric."""
    if RECALL_AT.match(name):
        return {"similarity"}
    return METRICS.get(name)


def known_metrics() -> list[str]:
    return sorted(METRICS) + ["recall@K"]
