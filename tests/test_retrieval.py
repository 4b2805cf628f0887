"""Retrieval with a trained two-tower run: embed, index (exact / HNSW / IVF / numpy fallback),
retrieve (with exclusions) and full-catalogue metrics, each checked against brute force."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from archspec import retrieval as rt  # noqa: E402
from archspec.cli import main  # noqa: E402

SPEC = """\
archspec: 1
name: tiny_tt
inputs:
  user: {{type: numeric, columns: [u1, u2, u3]}}
  item_id: {{type: categorical, column: item, max_categories: 60}}
  item_feat: {{type: numeric, columns: [f1, f2]}}
encoders:
  user_tower: {{type: mlp, input: user, layers: [8]}}
  item_emb: {{type: embedding, input: item_id, dim: 8}}
fusions:
  item_side: {{type: early, inputs: [item_emb, item_feat], layers: [8], activation: linear}}
heads:
  match:
    type: similarity
    query: user_tower
    candidate: item_side
    metric: {metric}
    temperature: 0.1
    loss: {{type: contrastive}}
training:
  batch_size: 16
  epochs: 1
  validation_split: 0.2
"""
N_ITEMS = 40


def _items(rng) -> pd.DataFrame:
    return pd.DataFrame({"item": np.arange(N_ITEMS) + 100, "f1": rng.normal(size=N_ITEMS).round(3),
                         "f2": rng.normal(size=N_ITEMS).round(3)})


def _pairs(rng, items: pd.DataFrame, n: int) -> pd.DataFrame:
    pick = items.iloc[rng.integers(0, N_ITEMS, n)].reset_index(drop=True)
    users = pd.DataFrame(rng.normal(size=(n, 3)).round(3), columns=["u1", "u2", "u3"])
    return pd.concat([users, pick], axis=1)


def _train(tmp, metric: str = "cosine"):
    from archspec.train import fit

    rng = np.random.default_rng(0)
    items = _items(rng)
    (tmp / "spec.yaml").write_text(SPEC.format(metric=metric))
    _pairs(rng, items, 120).assign(user=np.arange(120) % 5).to_csv(tmp / "train.csv", index=False)
    queries = _pairs(rng, items, 25).assign(user=np.arange(25) % 5)
    queries["seen"] = [f"{a}|{b}" for a, b in zip(items["item"].iloc[rng.integers(0, N_ITEMS, 25)],
                                                   items["item"].iloc[rng.integers(0, N_ITEMS, 25)])]
    queries.to_csv(tmp / "queries.csv", index=False)
    # the catalogue repeats some items: an index holds each id once
    pd.concat([items, items.iloc[:7]]).to_csv(tmp / "catalogue.csv", index=False)
    fit(tmp / "spec.yaml", data=str(tmp / "train.csv"), out=str(tmp / "run"), max_steps=4, log=lambda *a: None)
    return tmp / "run", items, queries


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("tt"))


def _brute(run, items, queries, k, metric="cosine"):
    """Top-k item ids and raw similarities computed directly with the torch model."""
    from archspec.inference import load_run

    model, pre, _ = load_run(run)
    x_items, _ = pre.transform(_with_users(items), targets=False)
    x_q, _ = pre.transform(queries, targets=False)
    with torch.no_grad():
        c = model.encode(x_items, "item_side")
        q = model.encode(x_q, "user_tower")
    if metric == "cosine":
        s = torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(c, dim=-1).T
    elif metric == "dot":
        s = q @ c.T
    else:
        s = -torch.cdist(q.double(), c.double()).float()
    top = s.topk(k, dim=1)
    ids = items["item"].to_numpy()
    return ids[top.indices.numpy()], top.values.numpy(), s.numpy()


def _with_users(items):
    return items.assign(u1=0.0, u2=0.0, u3=0.0)


def test_exact_index_and_retrieve_equal_brute_force(trained, tmp_path):
    run, items, queries = trained
    rc = main(["index", str(run), "--data", str(run.parent / "catalogue.csv"), "--out", str(tmp_path / "ix")])
    assert rc == 0
    manifest = json.loads((tmp_path / "ix" / "index.json").read_text())
    assert manifest["count"] == N_ITEMS and manifest["duplicates_dropped"] == 7 and manifest["catalogue_rows"] == 47
    assert (manifest["similarity"], manifest["normalize"], manifest["metric"]) == ("cosine", "l2", "inner_product")
    assert manifest["tower"] == "candidate" and manifest["id_column"] == "item" and len(manifest["spec_sha256"]) == 64
    vectors = np.load(tmp_path / "ix" / "vectors.npy")
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # cosine: L2-normalised

    assert main(["retrieve", str(run), "--index", str(tmp_path / "ix"), "--data", str(run.parent / "queries.csv"),
                 "-k", "5", "--out", str(tmp_path / "hits.csv")]) == 0
    hits = pd.read_csv(tmp_path / "hits.csv")
    want_ids, want_scores, _ = _brute(run, items, queries, 5)
    assert list(hits.columns) == ["query", "rank", "id", "score"] and len(hits) == 25 * 5
    got = hits.sort_values(["query", "rank"])
    np.testing.assert_array_equal(got["id"].to_numpy().reshape(25, 5), want_ids)
    np.testing.assert_allclose(got["score"].to_numpy().reshape(25, 5), want_scores, atol=1e-5)


def test_exclude_drops_items_the_query_has_seen(trained, tmp_path):
    run, items, queries = trained
    rt.build_index(run, run.parent / "catalogue.csv", tmp_path / "ix")
    hits = rt.retrieve(run, tmp_path / "ix", run.parent / "queries.csv", tmp_path / "hits.parquet", k=N_ITEMS,
                       exclude="seen")
    for qi, group in hits.groupby("query"):
        seen = {int(s) for s in queries["seen"][qi].split("|")}
        assert not seen & set(group["id"]), qi
        assert len(group) == N_ITEMS - len(seen) and list(group["rank"]) == list(range(1, len(group) + 1))
    assert pd.read_parquet(tmp_path / "hits.parquet").shape == hits.shape


def test_hnsw_and_ivf_reach_high_recall(trained, tmp_path):
    pytest.importorskip("faiss")
    run, items, queries = trained
    want, _, _ = _brute(run, items, queries, 10)
    for kind in ("hnsw", "ivf"):
        info = rt.build_index(run, run.parent / "catalogue.csv", tmp_path / kind, kind=kind)
        assert (info.kind, info.backend, info.note) == (kind, "faiss", None)
        hits = rt.retrieve(run, tmp_path / kind, run.parent / "queries.csv", tmp_path / f"{kind}.csv", k=10)
        got = hits.sort_values(["query", "rank"])["id"].to_numpy().reshape(25, 10)
        recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want)])
        assert recall >= 0.95, (kind, recall)


def test_without_faiss_the_index_is_an_exact_numpy_search(trained, tmp_path, monkeypatch, capsys):
    run, items, queries = trained
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ImportError
    rc = main(["index", str(run), "--data", str(run.parent / "catalogue.csv"), "--out", str(tmp_path / "ix"),
               "--kind", "hnsw"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert err.strip().splitlines() == ["archspec: faiss is not installed: exact numpy search instead of 'hnsw' "
                                        "(install archspec[retrieval] for faiss)"]
    m = json.loads((tmp_path / "ix" / "index.json").read_text())
    assert (m["backend"], m["kind"], m["requested_kind"]) == ("numpy", "exact", "hnsw")
    assert not (tmp_path / "ix" / "index.faiss").exists()
    hits = rt.retrieve(run, tmp_path / "ix", run.parent / "queries.csv", tmp_path / "h.csv", k=3)
    want_ids, want_scores, _ = _brute(run, items, queries, 3)
    np.testing.assert_array_equal(hits["id"].to_numpy().reshape(25, 3), want_ids)
    np.testing.assert_allclose(hits["score"].to_numpy().reshape(25, 3), want_scores, atol=1e-5)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_numpy_and_faiss_exact_search_agree(metric):
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    x, q = rng.normal(size=(200, 6)).astype(np.float32), rng.normal(size=(9, 6)).astype(np.float32)
    d1, i1 = rt.make_index(x, metric, "exact", {}, None).search(q, 7)
    d2, i2 = rt.make_index(x, metric, "exact", {}, faiss).search(q, 7)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(d1, d2, rtol=1e-4, atol=1e-4)
    if metric == "l2":  # faiss returns squared distances; the score is the model's -‖q - c‖
        want = -np.linalg.norm(q[:, None, :] - x[i1], axis=-1)
        np.testing.assert_allclose(rt.to_similarity(d1, {"metric": "l2"}), want, atol=1e-4)


def test_euclidean_run_indexes_with_l2(tmp_path):
    run, items, queries = _train(tmp_path, "euclidean")
    info = rt.build_index(run, tmp_path / "catalogue.csv", tmp_path / "ix")
    m = json.loads((info.directory / "index.json").read_text())
    assert (m["normalize"], m["metric"]) == (None, "l2")
    hits = rt.retrieve(run, tmp_path / "ix", tmp_path / "queries.csv", tmp_path / "h.csv", k=4)
    want_ids, want_scores, _ = _brute(run, items, queries, 4, "euclidean")
    np.testing.assert_array_equal(hits["id"].to_numpy().reshape(25, 4), want_ids)
    np.testing.assert_allclose(hits["score"].to_numpy().reshape(25, 4), want_scores, atol=1e-4)


def test_embed_writes_ids_and_vectors(trained, tmp_path):
    run, items, queries = trained
    for out in (tmp_path / "c.parquet", tmp_path / "c.npy"):
        assert main(["embed", str(run), "--data", str(run.parent / "catalogue.csv"), "--tower", "candidate",
                     "--out", str(out), "--id-column", "item", "--batch-size", "8"]) == 0
        ids, emb = rt.read_embeddings(out)
        assert ids == list(items["item"]) + list(items["item"][:7]) and emb.shape == (47, 8)
        assert emb.dtype == np.float32
    np.testing.assert_array_equal(rt.read_embeddings(tmp_path / "c.parquet")[1], np.load(tmp_path / "c.npy"))
    assert (tmp_path / "c.ids.jsonl").read_text().splitlines()[0] == "100"
    n, dim = rt.embed(run, run.parent / "queries.csv", tmp_path / "q.npy", side="query")
    ids, emb = rt.read_embeddings(tmp_path / "q.npy")
    assert (n, dim) == (25, 8) and ids == list(range(25))  # no id column: row numbers
    from archspec.inference import load_run

    model, pre, _ = load_run(run)
    with torch.no_grad():
        want = model.encode(pre.transform(queries, targets=False)[0], "user_tower")
    np.testing.assert_allclose(emb, want.numpy(), atol=1e-6)


def test_errors_are_clear(trained, tmp_path, capsys):
    run, items, queries = trained
    bad = tmp_path / "bad.csv"
    items.drop(columns=["f2"]).to_csv(bad, index=False)
    assert main(["index", str(run), "--data", str(bad), "--out", str(tmp_path / "ix")]) == 3
    assert "f2" in capsys.readouterr().err
    assert main(["retrieve", str(run), "--index", str(tmp_path / "nowhere"), "--data", str(bad),
                 "--out", str(tmp_path / "x.csv")]) == 4
    assert "is not an index directory" in capsys.readouterr().err
    # an unknown output format is a usage error, found before any work (output_paths.check_output_path)
    assert main(["embed", str(run), "--data", str(bad), "--tower", "query", "--out", str(tmp_path / "x.txt")]) == 2
    assert "extension '.txt' — the format follows the extension: use .parquet, .npy" in capsys.readouterr().err


def test_index_of_another_run_is_refused(trained, tmp_path, capsys):
    run, items, queries = trained
    other, _, _ = _train(tmp_path, "dot")
    rt.build_index(other, tmp_path / "catalogue.csv", tmp_path / "ix")
    assert main(["retrieve", str(run), "--index", str(tmp_path / "ix"), "--data", str(run.parent / "queries.csv"),
                 "--out", str(tmp_path / "x.csv")]) == 4
    assert "was built from another model" in capsys.readouterr().err


# ---------------------------------------------------------------------------- full-catalogue metrics


def test_rank_metrics_on_a_hand_made_case():
    # 3 queries over 4 catalogue items; the positive of query 0 is best, of query 1 third, query 2's
    # item is not in the catalogue
    scores = np.array([[0.9, 0.1, 0.2, 0.3], [0.5, 0.9, 0.1, 0.7], [0.1, 0.2, 0.3, 0.4]])
    ranks = rt.positive_ranks(scores, np.array([0, 0, -1]))
    assert ranks.tolist() == [0, 2, -1]
    m = rt.rank_metrics(ranks, [1, 3])
    assert m["recall@1"] == pytest.approx(1 / 3) and m["recall@3"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / np.log2(4)) / 3)
    assert m["mrr"] == pytest.approx((1 + 1 / 3) / 3)
    assert rt.positive_ranks(np.array([[0.5, 0.5, 0.4]]), np.array([1])).tolist() == [0]  # ties favour the positive


def test_catalogue_metrics_rank_among_every_item(trained, capsys):
    run, items, queries = trained
    assert main(["evaluate", str(run), "--data", str(run.parent / "queries.csv"), "--catalogue",
                 str(run.parent / "catalogue.csv"), "--baseline", "--format", "json"]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert "catalogue: 40 items, 25 test rows" in captured.err
    _, _, s = _brute(run, items, queries, 1)
    pos = queries["item"].to_numpy() - 100  # item i is catalogue row i
    rank = (s > s[np.arange(25), pos][:, None]).sum(1)
    want = rt.rank_metrics(rank, [10])
    for key in ("recall@10", "ndcg@10", "mrr"):
        assert payload["model"][f"match/catalogue_{key}"] == pytest.approx(want[key], abs=1e-9)
        assert 0 <= payload["baseline"][f"match/catalogue_{key}"] <= 1
    # popularity: training counts of each item, ranked the same way
    train = pd.read_csv(run.parent / "train.csv")
    from archspec.data import split

    tr, _ = split(train, 0.2, 0)
    counts = tr["item"].value_counts().reindex(items["item"], fill_value=0).to_numpy().astype(float)
    score = counts + np.random.default_rng(0).random(N_ITEMS) * 1e-3
    base_rank = (score[None, :] > score[pos][:, None]).sum(1)
    assert payload["baseline"]["match/catalogue_recall@10"] == pytest.approx(rt.rank_metrics(base_rank, [10])["recall@10"])


@pytest.mark.parametrize("order", ["faiss,torch", "torch,faiss"])
def test_faiss_and_torch_load_together_in_either_order(order):
    """faiss and torch each bring an OpenMP runtime; both orders must import and compute."""
    import subprocess

    pytest.importorskip("faiss")
    first, second = order.split(",")
    code = (f"import {first}, {second}, numpy as np\n"
            "faiss.omp_set_num_threads(1); torch.set_num_threads(1)\n"
            "x = np.random.default_rng(0).random((50, 8), dtype=np.float32)\n"
            "ix = faiss.IndexFlatIP(8); ix.add(x); d, i = ix.search(x[:3], 2)\n"
            "print(float(torch.ones(4, 4).matmul(torch.ones(4, 4)).sum()), i.shape)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "64.0"


def test_importing_retrieval_does_not_import_faiss():
    import subprocess

    code = "import sys, archspec.retrieval, archspec.cli; assert 'faiss' not in sys.modules; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_catalogue_metrics_can_exclude_what_each_user_saw_in_training(trained):
    run, items, queries = trained
    metrics, base, info = rt.catalogue_metrics(run, run.parent / "queries.csv", run.parent / "catalogue.csv",
                                               ks=[5], baseline=True, exclude_seen=True, query_id_column="user")
    train = pd.read_csv(run.parent / "train.csv")
    _, _, s = _brute(run, items, queries, 1)
    pos = queries["item"].to_numpy() - 100
    ranks, n_seen = [], 0
    for r in range(25):
        seen = set(train.loc[train["user"] == queries["user"][r], "item"] - 100) - {pos[r]}
        n_seen += len(seen)
        keep = np.array([j not in seen for j in range(N_ITEMS)])
        ranks.append(int(((s[r] > s[r, pos[r]]) & keep).sum()))
    want = rt.rank_metrics(np.array(ranks), [5])
    assert info["exclude_seen"] and info["seen_excluded"] == n_seen > 0
    for key in ("recall@5", "ndcg@5", "mrr"):
        assert metrics[f"match/catalogue_unseen_{key}"] == pytest.approx(want[key], abs=1e-9)
    assert set(base) == set(metrics)
    plain, _, _ = rt.catalogue_metrics(run, run.parent / "queries.csv", run.parent / "catalogue.csv", ks=[5])
    assert metrics["match/catalogue_unseen_mrr"] >= plain["match/catalogue_mrr"]  # fewer items can outrank the positive
    with pytest.raises(rt.RetrievalError, match="--query-id-column"):
        rt.catalogue_metrics(run, run.parent / "queries.csv", run.parent / "catalogue.csv", exclude_seen=True)


# ------------------------------------------------------------------ serving: torch-free and HTTP

BLOCK_TORCH = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _NoTorch())
"""


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """``(export dir, index dir)`` of the trained run: ONNX with its preprocessing, an exact index."""
    pytest.importorskip("onnxruntime")
    run, _, _ = trained
    tmp = tmp_path_factory.mktemp("tt_export")
    assert main(["build", str(run), "--export", "onnx", "--out", str(tmp / "export"), "--format", "json"]) == 0
    rt.build_index(run, run.parent / "catalogue.csv", tmp / "ix")
    return tmp / "export", tmp / "ix"


def test_torch_free_retriever_equals_archspec_retrieve(trained, exported, tmp_path):
    import subprocess
    import textwrap

    from conftest import ROOT

    run, _, queries = trained
    export_dir, ix = exported
    manifest = json.loads(next(export_dir.glob("*.export.json")).read_text())
    assert manifest["run"] == rt.run_fingerprint(run)  # what lets serving match an index with the export
    want = rt.retrieve(run, ix, run.parent / "queries.csv", tmp_path / "hits.csv", k=5, exclude="seen")
    code = BLOCK_TORCH + textwrap.dedent(f"""
        import json, sys
        import pandas as pd
        from archspec.serving import Retriever
        r = Retriever({str(export_dir)!r}, {str(ix)!r})
        rows = pd.read_csv({str(run.parent / "queries.csv")!r}).to_dict(orient="records")
        hits = r.retrieve(rows, k=5, exclude="seen")
        assert "torch" not in sys.modules
        json.dump(hits, open({str(tmp_path / "served.json")!r}, "w"))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "served.json").read_text())
    assert len(got) == len(queries)
    for qi, hits in enumerate(got):
        w = want[want["query"] == qi].sort_values("rank")
        assert [h["id"] for h in hits] == w["id"].tolist(), qi
        np.testing.assert_allclose([h["score"] for h in hits], w["score"].to_numpy(), atol=1e-5)
        seen = {int(s) for s in queries["seen"][qi].split("|")}
        assert not seen & {h["id"] for h in hits}


def test_serving_refuses_an_index_of_another_run(exported, tmp_path):
    import shutil

    from archspec.serving import Retriever, ServingError

    export_dir, ix = exported
    shutil.copytree(ix, tmp_path / "ix")
    m = json.loads((tmp_path / "ix" / "index.json").read_text())
    (tmp_path / "ix" / "index.json").write_text(json.dumps({**m, "weights": "other.safetensors"}))
    with pytest.raises(ServingError, match="built from another model than the export"):
        Retriever(export_dir, tmp_path / "ix")
    with pytest.raises(ServingError, match="is not an index directory"):
        Retriever(export_dir, tmp_path / "nowhere")
    r = Retriever(export_dir, ix)
    with pytest.raises(ServingError, match="k must be at least 1"):
        r.retrieve([{"u1": 0.0, "u2": 0.0, "u3": 0.0}], k=0)
    with pytest.raises(ServingError, match="missing column 'seen'"):
        r.retrieve([{"u1": 0.0, "u2": 0.0, "u3": 0.0}], exclude="seen")


@pytest.mark.parametrize("source", ["run", "export"])
def test_http_retrieve_equals_archspec_retrieve(trained, exported, source, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from archspec.server import load_predictor, load_retriever, make_app

    run, _, queries = trained
    export_dir, ix = exported
    predictor = load_predictor(run if source == "run" else export_dir)
    want = rt.retrieve(run, ix, run.parent / "queries.csv", tmp_path / "hits.csv", k=3, exclude="seen")
    rows = [{**r, "seen": r["seen"]} for r in queries.to_dict(orient="records")]
    with TestClient(make_app(predictor, retriever=load_retriever(predictor, ix))) as client:
        res = client.post("/retrieve", json={"rows": rows, "k": 3, "exclude": "seen"})
        assert res.status_code == 200, res.text
        got = res.json()["results"]
        for qi, hits in enumerate(got):
            w = want[want["query"] == qi].sort_values("rank")
            assert [h["id"] for h in hits] == w["id"].tolist(), qi
            np.testing.assert_allclose([h["score"] for h in hits], w["score"].to_numpy(), atol=1e-5)
        # only the query tower's columns are needed; a missing one is a 422 naming the field
        res = client.post("/retrieve", json={"rows": [{"u1": 0.1, "u2": 0.2}]})
        assert res.status_code == 422 and res.json()["field"] == "rows[0].u3", res.text
        res = client.post("/retrieve", json={"rows": [{"u1": 0.1, "u2": 0.2, "u3": 0.3}], "k": 0})
        assert res.status_code == 422 and res.json()["field"] == "k", res.text
        res = client.post("/retrieve", json={"rows": [{"u1": 0.1, "u2": 0.2, "u3": 0.3}], "exclude": "seen"})
        assert res.status_code == 422 and res.json()["field"] == "rows[0].seen", res.text
        assert client.get("/metadata").json()["index"]["count"] == N_ITEMS
    with TestClient(make_app(predictor)) as client:  # no index: a 404 that says how to start the server
        res = client.post("/retrieve", json={"rows": rows[:1]})
        assert res.status_code == 404 and "--index DIR" in res.json()["error"]
