"""Reference rankings for `movielens_likes` on the full-catalogue protocol, without training.

How far can a user's history take a retrieval model on this data set? For each test row (a user's
most recent liked movie), every catalogue movie is ranked by:

- ``popularity``: its number of training likes (what ``archspec evaluate --baseline`` uses);
- ``neighbours``: item-to-item co-occurrence — the sum, over the movies of the row's
  ``liked_before`` history, of how many training users liked both — divided by
  ``popularity ** alpha`` (``alpha`` 0, 0.25, 0.5), popularity breaking ties;
- ``recent_popularity``: training likes in the ``days`` before the test like (30, 90, 365).

recall@10 as in docs/retrieval.md (the rank is the number of movies scored strictly higher; ties
broken by a seeded random jitter), unfiltered and with each user's training movies left out
(``--exclude-seen``). The numbers explain the two-tower model's ceiling; they are not a model.

Usage:
    archspec data prepare movielens_likes
    python bench/movielens_neighbours.py            # all 630 test users: about a minute
    python bench/movielens_neighbours.py --quick    # 100 test users
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def recall_at_10(score_rows, targets, seen_rows, exclude: bool) -> float:
    jitter = np.random.default_rng(0).random(len(score_rows[0])) * 1e-6
    hits = []
    for s, t, seen in zip(score_rows, targets, seen_rows):
        s = s.astype(float) + jitter
        if exclude:
            s[seen[seen != t]] = -np.inf
        hits.append(int((s > s[t]).sum()) < 10)
    return float(np.mean(hits))


def main(argv=None) -> int:
    import scipy.sparse as sp

    from archspec.datasets.movielens import LIKED, load_ratings

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT / "data" / "movielens_likes")
    p.add_argument("--quick", action="store_true", help="the first 100 test users only")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "movielens_neighbours.json")
    args = p.parse_args(argv)

    train = pd.read_csv(args.data / "train.csv")
    test = pd.read_csv(args.data / "test.csv")
    if args.quick:
        test = test.iloc[:100]
    cat = pd.read_csv(args.data / "catalogue.csv")
    col = {m: i for i, m in enumerate(cat["movie_id"])}
    users = {u: i for i, u in enumerate(sorted(set(train["user_id"]) | set(test["user_id"])))}
    x = sp.csr_matrix((np.ones(len(train)), ([users[u] for u in train["user_id"]],
                                             [col[m] for m in train["movie_id"]])), shape=(len(users), len(cat)))
    pop = np.asarray(x.sum(0)).ravel()
    co = (x.T @ x).tocsr()
    co.setdiag(0)
    targets = [col[m] for m in test["movie_id"]]
    seen = [x[users[u]].indices for u in test["user_id"]]
    history = [[col[int(i)] for i in str(h).split() if int(i) in col] for h in test["liked_before"].fillna("")]

    rankings = {"popularity": [pop] * len(test)}
    for alpha in (0.0, 0.25, 0.5):
        rankings[f"neighbours_alpha{alpha:g}"] = [
            (np.asarray(co[h].sum(0)).ravel() / np.maximum(pop, 1) ** alpha if h else 0 * pop) + pop * 1e-6
            for h in history]
    # when each test like happened, and the training likes in time order
    ratings = load_ratings()
    when = ratings.set_index(["user_id", "movie_id"])["timestamp"]
    liked = ratings[ratings["rating"] >= LIKED].merge(train[["user_id", "movie_id"]], on=["user_id", "movie_id"])
    order = np.argsort(liked["timestamp"].to_numpy(), kind="stable")
    times = liked["timestamp"].to_numpy()[order]
    movies = np.array([col[m] for m in liked["movie_id"].to_numpy()[order]])
    for days in (30, 90, 365):
        rows = []
        for u, m in zip(test["user_id"], test["movie_id"]):
            t = when.loc[(u, m)]
            a, b = np.searchsorted(times, [t - days * 86400, t])
            rows.append(np.bincount(movies[a:b], minlength=len(cat)).astype(float))
        rankings[f"recent_popularity_{days}d"] = rows

    results = {name: {"recall@10": round(recall_at_10(rows, targets, seen, False), 4),
                      "unseen_recall@10": round(recall_at_10(rows, targets, seen, True), 4)}
               for name, rows in rankings.items()}
    report = {"test_rows": len(test), "catalogue": len(cat), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'ranking':28} recall@10  unseen_recall@10   ({len(test)} test rows, {len(cat)} movies)")
    for name, r in results.items():
        print(f"{name:28} {r['recall@10']:9.3f}  {r['unseen_recall@10']:16.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
