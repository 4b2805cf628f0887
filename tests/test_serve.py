"""`archspec serve`: a real server on the loopback address, a real HTTP client. Predictions equal
`archspec predict`; user mistakes get a 4xx naming the field; concurrent requests are batched and
none is lost."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import ROOT
from datagen import make_dataset

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

SPEC = """\
archspec: 1
name: served
inputs:
  txt: {type: text, column: text, max_length: 8, tokenizer: {type: wordpiece, vocab_size: 100, min_frequency: 1}}
  img: {type: image, column: image_path, size: [6, 6], normalize: unit}
  num: {type: numeric, columns: [a, b]}
  colour: {type: categorical, column: color}
encoders:
  t: {type: embedding_bag, input: txt, dim: 8}
  c: {type: embedding, input: colour, dim: 4}
  i: {type: cnn, input: img, channels: [4]}
fusions:
  f: {type: early, inputs: [t, i, num, c], layers: [8]}
heads:
  label: {type: multiclass, from: f, classes: [neg, neu, pos]}
  flag: {type: binary, from: f}
  score: {type: regression, from: f}
training:
  batch_size: 8
  epochs: 1
  seed: 0
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``(data directory, data file, run directory)``: a small run with every input kind."""
    from archspec.pipeline import check_text
    from archspec.train import fit

    tmp = tmp_path_factory.mktemp("serve")
    spec = tmp / "served.yaml"
    spec.write_text(SPEC)
    checked = check_text(SPEC, str(spec), base_dir=tmp)
    assert checked.ok(), [d.render() for d in checked.errors]
    data = make_dataset(checked, 40, tmp, seed=1, fmt="jsonl")
    fit(str(spec), data=str(data), out=str(tmp / "run"), progress=False, log=lambda *a, **k: None)
    return tmp, data, tmp / "run"


@contextlib.contextmanager
def _server(target: Path, cwd: Path):
    """A real `archspec serve` process on a free loopback port, and an HTTP client for it."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "archspec", "serve", str(target), "--port", str(port),
                             "--max-wait-ms", "20"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        for _ in range(300):  # bounded: ~60 s for the server to load the run
            if proc.poll() is not None:
                pytest.fail("server exited: " + proc.stdout.read())
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("server did not come up")
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def served(trained):
    """``(client, data directory, data file, run directory)`` with a server running on the run."""
    tmp, data, run = trained
    with _server(run, tmp) as client:
        yield client, tmp, data, run


def _rows(data: Path) -> list[dict]:
    import pandas as pd

    df = pd.read_json(data, lines=True)
    return json.loads(df.to_json(orient="records"))


def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], float):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k
        else:
            assert str(a[k]) == str(b[k]), k


def test_predictions_equal_archspec_predict(served, tmp_path):
    from archspec.inference import predict

    client, _, data, run = served
    predict(run, data, tmp_path / "p.jsonl")  # written batch by batch; read back what it wrote
    expected = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    rows = _rows(data)
    r = client.post("/predict", json={"rows": rows})
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        _same(g, e)


def test_health_and_metadata(served):
    client, *_ = served
    assert client.get("/health").json()["status"] == "ok"
    meta = client.get("/metadata").json()
    assert meta["spec"] == "served"
    assert {i["name"]: i["type"] for i in meta["inputs"]} == {"txt": "text", "img": "image", "num": "numeric",
                                                             "colour": "categorical"}
    preds = {p["name"]: p for p in meta["predictions"]}
    assert preds["label"]["labels"] == ["neg", "neu", "pos"] and preds["score"]["kind"] == "regression"
    assert meta["checkpoint"]["which"] in ("best", "last") and meta["checkpoint"]["step"] > 0


def test_images_as_base64_equal_images_as_paths(served):
    client, tmp, data, _ = served
    row = _rows(data)[0]
    raw = (tmp / row["image_path"]).read_bytes()
    by_path = client.post("/predict", json={"rows": [row]}).json()["predictions"][0]
    url = {**row, "image_path": "data:image/png;base64," + base64.b64encode(raw).decode()}
    obj = {**row, "image_path": {"base64": base64.b64encode(raw).decode()}}
    r = client.post("/predict", json={"rows": [url, obj]})
    assert r.status_code == 200, r.text
    for p in r.json()["predictions"]:
        _same(p, by_path)


@pytest.mark.parametrize("body, field, words", [
    ({"rows": [{"text": "a b", "image_path": "x.png", "b": 1, "color": "red"}]}, "rows[0].a", "missing column 'a'"),
    ({"rows": [{"text": "a b", "image_path": "x.png", "a": "one", "b": 1, "color": "red"}]}, "rows[0].a",
     "expected a finite number"),
    ({"rows": [{"text": 5, "image_path": "x.png", "a": 1, "b": 1, "color": "red"}]}, "rows[0].text",
     "expected a string"),
    ({"rows": [{"text": "t", "image_path": {"base64": "%%%"}, "a": 1, "b": 1, "color": "red"}]},
     "rows[0].image_path", "not valid base64"),
    ({"rows": [{"text": "t", "image_path": "does/not/exist.png", "a": 1, "b": 1, "color": "red"}]},
     "rows[0].image_path", "image not found"),
    ({"rows": []}, "rows", "non-empty list"),
    ({"rows": [3]}, "rows[0]", "expected an object"),
    ({"rowz": []}, "rows", "missing field 'rows'"),
    ([1, 2], "body", "JSON object"),
])
def test_user_mistakes_get_4xx_naming_the_field(served, body, field, words):
    client, *_ = served
    r = client.post("/predict", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and words in r.json()["error"], r.json()


def test_malformed_json_is_a_4xx(served):
    client, *_ = served
    r = client.post("/predict", content=b'{"rows": [', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body" and "not valid JSON" in r.json()["error"]


def test_concurrent_requests_are_all_answered(served):
    client, _, data, _ = served
    rows = _rows(data)
    alone = client.post("/predict", json={"rows": rows}).json()["predictions"]

    def one(i):
        r = client.post("/predict", json={"rows": [rows[i % len(rows)]]})
        return i, r.status_code, r.json()["predictions"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(64)))
    for i, status, preds in results:
        assert status == 200 and len(preds) == 1
        _same(preds[0], alone[i % len(rows)])


def test_batcher_merges_waiting_requests():
    from archspec.server import Batcher

    calls = []

    def fn(rows):
        calls.append(len(rows))
        return [r * 10 for r in rows]

    async def main():
        b = Batcher(fn, max_batch=8, max_wait_s=0.5)
        b.start()
        out = await asyncio.gather(*[b.submit([i, i]) for i in range(6)])
        await b.stop()
        return out

    out = asyncio.run(main())
    assert out == [[i * 10, i * 10] for i in range(6)]
    assert sum(calls) == 12 and max(calls) <= 8 and len(calls) == 2  # 4 requests (8 rows), then 2


def test_an_export_directory_is_served_without_torch_and_agrees(trained, tmp_path):
    """`archspec serve EXPORT_DIR` goes through the torch-free runtime (archspec.serving)."""
    pytest.importorskip("onnxruntime")
    from archspec.cli import main
    from archspec.inference import predict

    tmp, data, run = trained
    assert main(["build", str(run), "--export", "onnx", "--out", str(tmp_path / "export"), "--format", "json"]) == 0
    predict(run, data, tmp_path / "p.jsonl")  # written batch by batch; read back what it wrote
    expected = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    with _server(tmp_path / "export", tmp) as client:
        meta = client.get("/metadata").json()
        assert meta["source"] == "export" and meta["spec"] == "served" and meta["torch_loaded"] is False
        assert {i["name"]: i["type"] for i in meta["inputs"]} == {"txt": "text", "img": "image", "num": "numeric",
                                                                 "colour": "categorical"}
        r = client.post("/predict", json={"rows": _rows(data)})
        assert r.status_code == 200, r.text
        for g, e in zip(r.json()["predictions"], expected):
            _same(g, e)
        bad = {**_rows(data)[0], "image_path": "nowhere.png"}
        r = client.post("/predict", json={"rows": [bad]})
        assert r.status_code == 422 and r.json()["field"] == "rows[0].image_path", r.text
        r = client.post("/predict", json={"rows": [{k: v for k, v in bad.items() if k != "a"}]})
        assert r.status_code == 422 and r.json()["field"] == "rows[0].a", r.text
