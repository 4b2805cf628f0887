"""Shared pieces of the data-layer tests: a spec that uses every input kind and every target kind."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from archspec.data import read_table
from archspec.pipeline import check_file

from datagen import make_frame

KITCHEN = """\
archspec: 1
name: all_kinds
inputs:
  txt: {type: text, column: text, max_length: 8, tokenizer: {type: wordpiece, vocab_size: 200, min_frequency: 1}}
  img: {type: image, column: image_path, size: [4, 6], normalize: imagenet}
  gray: {type: image, column: gray_path, size: [5, 5], channels: 1, normalize: unit}
  num: {type: numeric, columns: [a, b]}
  mm: {type: numeric, columns: [c], normalize: minmax}
  cat: {type: categorical, column: color, max_categories: 2}
  vec: {type: vector, column: emb, width: 3}
heads:
  sentiment: {type: multiclass, from: num, classes: [neg, neu, pos], target: label}
  sentiment2: {type: multiclass, from: mm, classes: [neg, neu, pos], target: label}
  level: {type: multiclass, from: num, classes: 3}
  tags: {type: multilabel, from: num, labels: [x, y, z]}
  codes: {type: multilabel, from: vec, labels: 4}
  flag: {type: binary, from: num}
  score: {type: regression, from: num, outputs: 2}
  y1: {type: regression, from: vec}
  match: {type: similarity, query: num, candidate: num, learn_scale: true}
fusions:
  fused: {type: late, inputs: [sentiment, sentiment2]}
training:
  validation_split: 0.25
"""


def write_spec(dir: Path, text: str = KITCHEN, name: str = "spec.yaml"):
    """Write a spec into ``dir`` and check it (it must have no errors)."""
    path = Path(dir) / name
    path.write_text(text)
    checked = check_file(path)
    assert checked.ok(), [d.render() for d in checked.errors]
    return checked


def kitchen(tmp_path: Path, n_rows: int = 8, seed: int = 0):
    """``(checked, frame)``: the all-kinds spec and good synthetic rows (images under ``tmp_path``)."""
    checked = write_spec(tmp_path)
    return checked, make_frame(checked, n_rows, tmp_path, seed)


def save_csv(df: pd.DataFrame, tmp_path: Path, name: str = "train.csv"):
    """Write ``df`` as CSV next to the images and read it back: ``(path, frame as read)``."""
    path = Path(tmp_path) / name
    df.to_csv(path, index=False)
    return path, read_table(path)
