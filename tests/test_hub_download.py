"""Download on first use, `archspec fetch`, offline mode and `validate --online`, against a real
HTTP server on 127.0.0.1 (tests/hub_server.py) — no network.

The libraries are pointed at the server the way users point them at a mirror: ``HF_ENDPOINT`` for
transformers/huggingface_hub (read when huggingface_hub is imported, so every step runs in a fresh
subprocess with its environment set), and torchvision's own weights URL for ``weights: DEFAULT``
(torchvision has no endpoint setting; the URL of the weights entry is the seam — the subprocess sets
``SqueezeNet1_1_Weights.IMAGENET1K_V1.url`` to the server, with a file name whose hash prefix is the
file's real SHA-256 prefix, as ``load_state_dict_from_url(check_hash=True)`` verifies).

Offline steps run under a socket guard: any attempt to open an INET connection is recorded and
refused, and the test asserts there were none.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from hub_server import FakeHub

REPO = "archspec-tests/tiny-bert"
MISSING = "archspec-tests/no-such-model"
HIDDEN, MAXPOS = 24, 32

DRIVER = r'''
import contextlib, io, json, os, socket, sys
attempts, guard = [], [False]
_connect = socket.socket.connect
def _guarded(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        attempts.append(str(address))
        if guard[0]:
            raise ConnectionRefusedError("socket guard: this step must not open a connection")
    return _connect(self, address)
socket.socket.connect = _guarded
if os.environ.get("TV_URL"):
    import torchvision
    torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1.value.url = os.environ["TV_URL"]
from archspec.cli import main
results = []
for step in json.loads(sys.argv[1]):
    guard[0] = step.get("guard", False)
    before = len(attempts)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if "tokenizer" in step:
            from archspec.errors import BuildError
            from archspec.data.text import PretrainedText
            try:
                print(PretrainedText.from_name(step["tokenizer"], None, 8).vocab_size)
                rc = 0
            except BuildError as exc:
                print(exc, file=sys.stderr)
                rc = 1
        else:
            rc = main(step["argv"])
    heavy = sorted(m for m in ("torch", "transformers", "torchvision") if m in sys.modules)
    results.append({"rc": rc, "out": out.getvalue(), "err": err.getvalue(), "connects": attempts[before:],
                    "heavy": heavy})
print("RESULTS " + json.dumps(results))
'''


def run_steps(steps, **env_extra):
    """Run archspec steps in one fresh process (environment read at import, as the libraries do)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("OFFLINE") and k not in ("HF_ENDPOINT",)}
    env.update(PYTHONPATH=str(ROOT / "src"), HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false",
               HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="5", OMP_NUM_THREADS="1")
    env.update({k: str(v) for k, v in env_extra.items()})
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(steps)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=ROOT)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")), None)
    assert line, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = json.loads(line[len("RESULTS "):])
    for r in results:
        assert "Traceback" not in r["err"], r["err"][-3000:]
    return results


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny BERT repo laid out as on the hub (safetensors *and* a .bin, tokenizer files) and a
    torchvision-style squeezenet1_1 state dict named ``squeezenet1_1-<sha256 prefix>.pth``."""
    import torchvision
    from transformers import BertConfig, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("hub")
    repo = root / "repo"
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=MAXPOS)
    model = BertModel(config).eval()
    model.save_pretrained(repo)
    torch.save(model.state_dict(), repo / "pytorch_model.bin")  # must never be downloaded: safetensors wins
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]))
    BertTokenizer(vocab=str(vocab)).save_pretrained(repo)  # transformers 5: `vocab=` (vocab_file is ignored)
    tv = torchvision.models.squeezenet1_1(weights=None)
    blob = root / "tv.pth"
    torch.save(tv.state_dict(), blob)
    name = f"squeezenet1_1-{hashlib.sha256(blob.read_bytes()).hexdigest()[:10]}.pth"
    return {"root": root, "repo": repo, "tv_file": blob, "tv_name": name, "tv_state": tv.state_dict(),
            "bert_state": model.state_dict()}


def spec_text(model=REPO, tokenizer=REPO, max_length=16, image=True) -> str:
    image_in = "  photo: {type: image, column: p, size: [64, 64]}\n" if image else ""
    image_enc = "  backbone: {type: torchvision, input: photo, model: squeezenet1_1, weights: DEFAULT}\n" if image else ""
    fused = "both" if image else "text_enc"
    fusion = "fusions:\n  both: {type: early, inputs: [text_enc, backbone]}\n" if image else ""
    return (f"archspec: 1\nname: hubbed\ninputs:\n"
            f"  text: {{type: text, column: t, max_length: {max_length}, tokenizer: {{type: pretrained, name: {tokenizer}}}}}\n"
            f"{image_in}encoders:\n  text_enc: {{type: transformer, input: text, pretrained: {model}, pooling: cls}}\n"
            f"{image_enc}{fusion}heads:\n  y: {{type: multiclass, from: {fused}, classes: 3}}\n")


def write(directory, name, text):
    path = directory / name
    path.write_text(text)
    return str(path)


@pytest.mark.integration
def test_build_downloads_once_caches_and_builds_again_without_the_server(served, tmp_path):
    hub = FakeHub({REPO: served["repo"]}, {served["tv_name"]: served["tv_file"]})
    url = hub.start()
    spec = write(tmp_path, "spec.yaml", spec_text())
    caches = {"HF_HOME": tmp_path / "hf", "TORCH_HOME": tmp_path / "torch",
              "TV_URL": f"{url}/{served['tv_name']}", "HF_ENDPOINT": url}
    try:
        first = run_steps([{"argv": ["build", spec]}, {"tokenizer": REPO}, {"argv": ["build", spec]}], **caches)
    finally:
        hub.stop()
    assert [r["rc"] for r in first] == [0, 0, 0], first
    assert "(B, 24) features" in first[0]["out"] and "(B, 512) features" in first[0]["out"]
    assert first[1]["out"].strip() == "40"
    # each file crossed the wire once, though the spec was built twice; safetensors, never the .bin
    for suffix in ("/config.json", "/model.safetensors", "/tokenizer.json", "/tokenizer_config.json",
                   "/" + served["tv_name"]):
        assert len(hub.downloads(suffix)) == 1, (suffix, hub.log)
    assert hub.downloads("pytorch_model.bin") == []
    checkpoint = tmp_path / "torch" / "hub" / "checkpoints" / served["tv_name"]
    assert checkpoint.is_file()
    assert list((tmp_path / "hf" / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots").iterdir())

    # the server is gone: online mode falls back to the cache; --offline never even tries to connect
    again = run_steps([{"argv": ["build", spec]}, {"argv": ["build", spec, "--offline"], "guard": True},
                       {"tokenizer": REPO, "guard": True}], **caches)
    assert [r["rc"] for r in again] == [0, 0, 0], again
    assert again[1]["connects"] == [] and again[2]["connects"] == []
    assert "(B, 24) features" in again[1]["out"]


@pytest.mark.integration
def test_fetch_gets_everything_reports_failures_then_offline_builds_never_connect(served, tmp_path):
    hub = FakeHub({REPO: served["repo"]}, {served["tv_name"]: served["tv_file"]})
    url = hub.start()
    good = write(tmp_path, "good.yaml", spec_text())
    bad = write(tmp_path, "bad.yaml", spec_text(model=MISSING, tokenizer=REPO, image=False))
    other_weights = write(tmp_path, "other.yaml", spec_text().replace("squeezenet1_1", "squeezenet1_0"))
    run_dir = tmp_path / "runs" / "trained"
    run_dir.mkdir(parents=True)
    write(run_dir, "spec.yaml", spec_text())
    cache = tmp_path / "airgap"
    try:
        steps = [{"argv": ["fetch", good, bad, "--cache-dir", str(cache)]}, {"argv": ["fetch", good, "--cache-dir", str(cache)]}]
        fetched = run_steps(steps, HF_ENDPOINT=url, TV_URL=f"{url}/{served['tv_name']}",
                            HF_HOME=tmp_path / "unused_hf", TORCH_HOME=tmp_path / "unused_torch")
    finally:
        hub.stop()
    failing, ok = fetched
    assert failing["rc"] == 7, failing
    assert f"FAILED  {MISSING} (model): no model '{MISSING}' on the hub" in failing["out"], failing["out"]
    assert f"fetched {REPO} (model+tokenizer): " in failing["out"]
    assert "fetched squeezenet1_1.DEFAULT (torchvision): 1 file, " in failing["out"]
    assert failing["err"].strip().splitlines()[-1].startswith(f"archspec: error: could not fetch 1 of 3: {MISSING} (")
    assert "bad.yaml: encoders.text_enc.pretrained" in failing["err"]
    assert ok["rc"] == 0, ok
    assert f"cached  {REPO} (model+tokenizer)" in ok["out"] and "2 of 2 ready" in ok["out"]
    assert f"HF_HOME={cache / 'huggingface'}" in ok["out"]
    # only what transformers needs crossed the wire: no .bin next to the safetensors
    assert hub.downloads("pytorch_model.bin") == [] and len(hub.downloads("/model.safetensors")) == 1
    assert (cache / "torch" / "hub" / "checkpoints" / served["tv_name"]).is_file()

    # the air-gapped side: the copied folder is all there is; HF_HUB_OFFLINE=1 and no socket may open
    offline = run_steps([{"argv": ["fetch", good], "guard": True},
                         {"argv": ["build", good], "guard": True},
                         {"argv": ["build", bad], "guard": True},
                         {"argv": ["fetch", bad], "guard": True},
                         {"argv": ["build", other_weights], "guard": True},
                         {"tokenizer": MISSING, "guard": True},
                         {"argv": ["fetch", str(run_dir)], "guard": True}],
                        HF_HOME=cache / "huggingface", TORCH_HOME=cache / "torch", HF_HUB_OFFLINE=1,
                        TV_URL=f"{url}/{served['tv_name']}")
    assert [r["rc"] for r in offline] == [0, 0, 1, 7, 1, 1, 0], offline
    assert all(r["connects"] == [] for r in offline), [r["connects"] for r in offline]
    assert f"cached  {REPO}" in offline[0]["out"] and "nothing downloaded" in offline[0]["out"]
    message = offline[2]["err"].strip().splitlines()[-1]
    assert message.startswith(f"archspec: error: encoders.text_enc: cannot build transformer '{MISSING}': not in "
                              "the Hugging Face cache"), message
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in message and "archspec fetch SPEC" in message
    assert f"FAILED  {MISSING} (model): not in the Hugging Face cache" in offline[3]["out"]
    weights_msg = offline[4]["err"].strip().splitlines()[-1]
    assert weights_msg.startswith("archspec: error: encoders.backbone: weights squeezenet1_0.DEFAULT are not in the "
                                  "torch hub cache"), weights_msg
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in weights_msg and "archspec fetch SPEC" in weights_msg
    tok_msg = offline[5]["err"].strip()
    assert tok_msg.startswith(f"inputs.tokenizer: cannot load pretrained tokenizer '{MISSING}': not in the Hugging "
                              "Face cache"), tok_msg
    assert f"hf download {MISSING}" in tok_msg
    assert "2 of 2 ready" in offline[6]["out"]  # a run directory: what evaluating it elsewhere needs


@pytest.mark.integration
def test_validate_online_reads_width_and_limits_from_a_served_config(served, tmp_path):
    hub = FakeHub({REPO: served["repo"]})
    url = hub.start()
    ok = write(tmp_path, "ok.yaml", spec_text(image=False))
    too_long = write(tmp_path, "long.yaml", spec_text(max_length=64, image=False))
    missing = write(tmp_path, "missing.yaml", spec_text(model=MISSING, image=False))
    big_vocab = write(tmp_path, "vocab.yaml", spec_text(image=False).replace(
        f"{{type: pretrained, name: {REPO}}}", "{type: wordpiece, vocab_size: 60}"))
    try:
        res = run_steps([{"argv": ["validate", ok]}, {"argv": ["validate", "--online", "--shapes", ok]},
                         {"argv": ["validate", "--online", too_long]}, {"argv": ["validate", "--online", missing]},
                         {"argv": ["validate", big_vocab]}],
                        HF_ENDPOINT=url, HF_HOME=tmp_path / "hf")
    finally:
        hub.stop()
    offline_default, online, long_, miss, vocab = res
    assert offline_default["rc"] == 0 and "N-DEFERRED" in offline_default["out"]
    assert online["rc"] == 0 and "N-DEFERRED" not in online["out"], online
    assert "text_enc                 transformer    (B, 24) features" in online["out"]
    assert long_["rc"] == 1
    assert "the input's max_length 64 exceeds the model's max_position_embeddings 32" in long_["out"]
    assert miss["rc"] == 0 and f"no model '{MISSING}' on the hub" in miss["out"]
    # the config fetched above is in the cache now: the model's vocab_size (40) is known without --online
    assert vocab["rc"] == 1 and "the tokenizer may emit ids up to 59, but 'text_enc' embeds only 40" in vocab["out"]
    # only config.json was fetched, and validate never imported torch
    assert {p.rsplit("/", 1)[-1] for p in hub.downloads()} == {"config.json"}
    assert all(r["heavy"] == [] for r in res), [r["heavy"] for r in res]

    # the hub is unreachable now: a note that says so, exit 0, never a traceback
    gone = run_steps([{"argv": ["validate", "--online", missing]}], HF_ENDPOINT=url, HF_HOME=tmp_path / "hf2")[0]
    assert gone["rc"] == 0, gone
    assert "Retrying" not in gone["err"]  # one attempt, no back-off: a note at once
    assert f"note[N-DEFERRED]: encoders.text_enc.pretrained: '{MISSING}' could not be looked up on the hub: the hub " \
           f"({url}) could not be reached" in gone["out"]


def test_fetch_picks_what_transformers_loads():
    """Small config/tokenizer files at the top level; safetensors over .bin; no TF/Flax/ONNX copies."""
    from archspec.fetch import _hf_patterns

    files = {"config.json": 1, "model.safetensors": 9, "pytorch_model.bin": 9, "tf_model.h5": 9,
             "flax_model.msgpack": 9, "onnx/model.onnx": 9, "onnx/config.json": 1, "tokenizer.json": 2,
             "vocab.txt": 1, "README.md": 1, "spiece.model": 1}
    assert _hf_patterns(files, {"model"}) == ["config.json", "model.safetensors", "spiece.model", "tokenizer.json",
                                              "vocab.txt"]
    assert _hf_patterns(files, {"tokenizer"}) == ["config.json", "spiece.model", "tokenizer.json", "vocab.txt"]
    sharded_bin = {"config.json": 1, "pytorch_model-00001-of-00002.bin": 9, "pytorch_model-00002-of-00002.bin": 9,
                   "pytorch_model.bin.index.json": 1}
    assert _hf_patterns(sharded_bin, {"model"}) == sorted(sharded_bin)


def test_references_lists_only_what_can_be_downloaded(tmp_path):
    from archspec import hub
    from archspec.pipeline import check_text

    (tmp_path / "local_bert").mkdir()
    (tmp_path / "local_bert" / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    text = spec_text(model="./local_bert", tokenizer=REPO).replace(
        "weights: DEFAULT", "weights_path: ./w.safetensors")
    refs = hub.references(check_text(text, base_dir=tmp_path).raise_for_errors().spec)
    assert refs == [hub.Reference("tokenizer", REPO, where="inputs.text.tokenizer.name")]
    refs = hub.references(check_text(spec_text()).raise_for_errors().spec)
    assert [(r.kind, r.label(), r.where) for r in refs] == [
        ("tokenizer", REPO, "inputs.text.tokenizer.name"), ("model", REPO, "encoders.text_enc.pretrained"),
        ("torchvision", "squeezenet1_1.DEFAULT", "encoders.backbone.weights")]


def test_archspec_offline_alone_turns_every_loader_offline(tmp_path, monkeypatch):
    """ARCHSPEC_OFFLINE=1 (what `--offline` sets) is enough: no connection, the how-to message."""
    import socket

    from archspec.build import compile_spec
    from archspec.data.text import PretrainedText
    from archspec.errors import BuildError

    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ARCHSPEC_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    attempts = []
    monkeypatch.setattr(socket.socket, "connect", lambda sock, address: attempts.append(address))
    with pytest.raises(BuildError) as tok:
        PretrainedText.from_name(REPO, None, 8)
    assert "offline mode is on (--offline / ARCHSPEC_OFFLINE=1)" in str(tok.value)
    with pytest.raises(BuildError) as weights:
        compile_spec(spec_text(model="./nowhere", tokenizer="./nowhere").replace(
            "  text_enc: {type: transformer, input: text, pretrained: ./nowhere, pooling: cls}\n",
            "  text_enc: {type: embedding_bag, input: text, dim: 8}\n").replace(
            "{type: pretrained, name: ./nowhere}", "{type: wordpiece, vocab_size: 40}"))
    assert str(weights.value).startswith("encoders.backbone: weights squeezenet1_1.DEFAULT are not in the torch hub "
                                         f"cache ({tmp_path / 'torch' / 'hub' / 'checkpoints'}")
    assert "offline mode is on (--offline / ARCHSPEC_OFFLINE=1)" in str(weights.value)
    assert attempts == []


def test_load_failures_say_what_went_wrong(monkeypatch):
    """The reason shown for a hub model that would not load: a hub error, or transformers refusing it."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    from archspec import hub

    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ARCHSPEC_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    try:
        try:
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        except ConnectionRefusedError as net:
            raise LocalEntryNotFoundError("cannot find the requested files in the local cache") from net
    except LocalEntryNotFoundError as hub_error:
        try:
            raise OSError("We couldn't connect to 'https://huggingface.co'") from hub_error
        except OSError as wrapped:
            msg = hub.load_failure("org/m", wrapped)
    assert msg.startswith("cannot download it: the hub (http://127.0.0.1:9) could not be reached: [Errno 111] "
                          "Connection refused — check the name and the network, or fetch it")
    remote_code = ValueError("Loading org/m requires you to execute the configuration file in that repo on your local "
                             "machine. ... set the option `trust_remote_code=True` to remove this error.")
    assert "which archspec never runs" in hub.load_failure("org/m", remote_code)
    assert hub.load_failure("org/m", KeyError("weird")).startswith("'weird' — check that 'org/m' is a transformers model")


def test_fetch_of_a_spec_without_pretrained_files_or_an_invalid_spec(tmp_path, capsys):
    from archspec.cli import main

    assert main(["fetch", str(ROOT / "specs" / "two_tower.yaml")]) == 0
    assert "nothing to fetch" in capsys.readouterr().out
    bad = write(tmp_path, "bad.yaml", spec_text().replace("from: both", "from: bothh"))
    assert main(["fetch", bad]) == 1  # an invalid spec: its diagnostics, and nothing is fetched
    assert "error[E-REF]" in capsys.readouterr().err
    assert main(["fetch", str(tmp_path)]) == 7
    assert "is a directory but not a run directory" in capsys.readouterr().err
