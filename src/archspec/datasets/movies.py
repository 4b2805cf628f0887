"""``movies``: films from Wikidata, as shipped in bokeh-sampledata's ``movies.db`` (CC0)."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

from ._common import holdout_mask, write_csv, write_readme

#: the ten most frequent genres of the data set (in order of frequency); the ``genres`` labels
TOP_GENRES = ["Drama", "Comedy", "Romance", "Action", "Crime", "Thriller", "Horror", "Documentary",
              "Sci-Fi", "Fantasy"]
#: Tomatometer bands: Rotten Tomatoes calls a film fresh from 60 %; 85 % and up we call acclaimed
RECEPTION = [("rotten", 0, 59), ("fresh", 60, 84), ("acclaimed", 85, 100)]
CAST_IN_TEXT = 10  # cast names in the `text` column (the database lists cast alphabetically)
TEST_FRACTION = 0.2

QUERY = """
SELECT o.ID, o.Title, o.Year, o.Runtime, o.Genre, o.Director, o.Cast, o.Language, o.Country, o.Oscars,
       t.Meter, t.Reviews, t.BoxOffice
FROM omdb o JOIN tomatoes t ON o.ID = t.ID
WHERE t.Meter IS NOT NULL AND t.Reviews IS NOT NULL
ORDER BY o.ID
"""

_SUFFIXES = {"Jr.", "Sr.", "Jr", "Sr", "II", "III", "IV"}


def names(field) -> list[str]:
    """People from a comma-separated field; ``"Robert Downey, Jr."`` stays one name.

    Example:
        >>> names("Robert Downey, Jr., Gwyneth Paltrow")
        ['Robert Downey, Jr.', 'Gwyneth Paltrow']
    """
    out: list[str] = []
    for part in _str(field).split(","):
        part = part.strip()
        if not part:
            continue
        if part in _SUFFIXES and out:
            out[-1] += ", " + part
        else:
            out.append(part)
    return out


def _str(value) -> str:
    """A text field of the database: NULL (None/NaN) is the empty string."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _first(field) -> str:
    parts = [p.strip() for p in _str(field).split(",") if p.strip()]
    return parts[0] if parts else "unknown"


def _band(meter: int) -> str:
    return next(name for name, lo, hi in RECEPTION if lo <= meter <= hi)


def _text(title: str, directors: list[str], cast: list[str]) -> str:
    text = title.strip()
    if directors:
        text += ". Directed by " + ", ".join(directors)
    if cast:
        text += ". With " + ", ".join(cast[:CAST_IN_TEXT])
    return text + "."


def load_frame() -> pd.DataFrame:
    """Every film with a Tomatometer score and a review count, one row each, in ID order."""
    from bokeh_sampledata.movies_data import movie_path

    con = sqlite3.connect(f"file:{Path(movie_path).as_posix()}?mode=ro", uri=True)
    try:
        raw = pd.read_sql_query(QUERY, con)
    finally:
        con.close()
    rows = []
    for r in raw.itertuples(index=False):
        genres = [g.strip() for g in _str(r.Genre).split(",") if g.strip()]
        directors, cast = names(r.Director), names(r.Cast)
        box = r.BoxOffice if r.BoxOffice is not None and not pd.isna(r.BoxOffice) and r.BoxOffice > 0 else None
        rows.append({
            "id": int(r.ID),
            "title": r.Title,
            "year": int(r.Year),
            "decade": f"{int(r.Year) // 10 * 10}s",
            "runtime": None if r.Runtime is None or pd.isna(r.Runtime) else float(r.Runtime),
            "reviews": int(r.Reviews),
            "log_reviews": round(math.log1p(int(r.Reviews)), 4),
            "log_box_office": round(math.log10(1 + box), 4) if box else 0.0,
            "box_office_known": int(box is not None),
            "oscars": int(0 if pd.isna(r.Oscars) else r.Oscars),
            "language": _first(r.Language),
            "country": _first(r.Country),
            "director": "|".join(directors),
            "cast": "|".join(cast),
            "text": _text(r.Title, directors, cast),
            "genres": "|".join(g for g in genres if g in TOP_GENRES),
            "genres_all": "|".join(genres),
            "meter": int(r.Meter),
            "reception": _band(int(r.Meter)),
        })
    return pd.DataFrame(rows)


COLUMNS = {
    "id": "the film's ID in movies.db",
    "title": "title (English label on Wikidata)",
    "year": "publication year (1940-2014)",
    "decade": "`1940s` ... `2010s` (label of `multitask_classifier`'s `decade` head)",
    "runtime": "minutes; missing values filled with the training median (see `runtime_known`)",
    "runtime_known": "1 when Wikidata gives a runtime, else 0",
    "reviews": "number of Rotten Tomatoes critic reviews",
    "log_reviews": "ln(1 + reviews)",
    "log_box_office": "log10(1 + largest reported box office in USD); 0 when unknown",
    "box_office_known": "1 when a box office figure is known, else 0",
    "oscars": "Academy Award categories won (may be incomplete)",
    "language": "first listed original language (`unknown` when none)",
    "country": "first listed country of origin",
    "director": "directors, pipe-separated",
    "cast": "cast members, pipe-separated (the database lists them alphabetically)",
    "text": f"`Title. Directed by D. With C1, ..., C{CAST_IN_TEXT}.`: the title, the directors and the "
            f"first {CAST_IN_TEXT} cast members (alphabetical)",
    "genres": "genres among the 10 most frequent (" + ", ".join(TOP_GENRES) + "), pipe-separated; "
              "may be empty",
    "genres_all": "every genre of the film, pipe-separated",
    "meter": "Tomatometer (0-100): the source of `reception`; never use it as an input",
    "reception": "`rotten` (meter 0-59), `fresh` (60-84) or `acclaimed` (85-100)",
}


def build_movies(out: Path) -> list[Path]:
    from . import BOKEH

    df = load_frame()
    test = holdout_mask(len(df), TEST_FRACTION, 1)
    median = float(np.median(df.loc[~test, "runtime"].dropna()))
    df.insert(df.columns.get_loc("runtime") + 1, "runtime_known", df["runtime"].notna().astype(int))
    df["runtime"] = df["runtime"].fillna(median).round(1)
    train_df, test_df = df[~test], df[test]
    paths = [write_csv(train_df, out / "train.csv"), write_csv(test_df, out / "test.csv")]
    how = f"""
One row per film of `movies.db` that has a Tomatometer score and a review count ({len(df):,} of
17,472), joining its tables `omdb` and `tomatoes` on `ID`. Labels come straight from the data:
`reception` is the Tomatometer band, `decade` the publication year's decade, `genres` the film's
genres restricted to the ten most frequent. Inputs are the title, directors and cast (as text),
the language, and numbers known before reviews are read in full (year, runtime, number of reviews,
box office, Oscars). Missing runtimes are filled with the median of the training split
({median:g} min) and flagged in `runtime_known`; unknown box office is 0 and flagged in
`box_office_known`.
"""
    split = (f"{TEST_FRACTION:.0%} of the films are held out for test by a seeded hash permutation "
             "of the rows in ID order (archspec.data.tables.permutation, seed 20250106).")
    paths.append(write_readme(out, "movies", "films with reviews, genres and box office", [BOKEH], how,
                              COLUMNS, split, {"train.csv": len(train_df), "test.csv": len(test_df)}))
    return paths
