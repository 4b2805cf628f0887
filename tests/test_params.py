"""Static parameter counts (torch-free) equal the counts of the built model."""

from __future__ import annotations

import pytest
import torch

from archspec.build import compile_spec
from archspec.params import count_params, tokenizer_json_size, transformer_params
from archspec.pipeline import check_file, check_text

from conftest import ROOT, SPECS

PARITY = sorted((ROOT / "tests" / "parity_specs").glob("*.yaml"))


def built_counts(path):
    """Per-node parameter counts of the built model (on the meta device: no memory, no init cost)."""
    with torch.device("meta"):
        model = compile_spec(path, dry_run=False)
    per_node = {name: sum(model.parameter_counts(name)) for name in model.sections
                if model.sections[name] != "inputs"}
    return per_node, sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("path", SPECS + PARITY, ids=[f"{p.parent.name}/{p.stem}" for p in SPECS + PARITY])
def test_static_counts_equal_built_counts(path):
    checked = check_file(path)
    report = count_params(checked)
    per_node, total = built_counts(path)
    static = {n: c.value for n, c in report.nodes.items()}
    assert static == per_node
    assert report.total.value == total
    assert all(c.value is not None for c in report.nodes.values())
    # a bound only where a vocabulary is fitted on the data (WordPiece, whitespace words)
    for name, c in report.nodes.items():
        cfg = checked.graph.nodes[name]
        fitted_vocab = cfg.type == "embedding_bag" and cfg.vocab_size is None and \
            checked.graph.nodes[cfg.input].tokenizer.type in ("wordpiece", "whitespace")
        assert c.bound == fitted_vocab, name


TINY = dict(vocab_size=97, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=40)


@pytest.mark.parametrize("conf,pooling", [
    ({"model_type": "bert", **TINY}, "pooler"),
    ({"model_type": "bert", **TINY, "type_vocab_size": 1}, "cls"),
    ({"model_type": "roberta", **TINY}, "mean"),
    ({"model_type": "roberta", **TINY}, "pooler"),
    ({"model_type": "xlm-roberta", **TINY}, "cls"),
    ({"model_type": "camembert", **TINY}, "pooler"),
    ({"model_type": "electra", **TINY, "embedding_size": 8}, "cls"),
    ({"model_type": "electra", **TINY, "embedding_size": 16}, "mean"),
    ({"model_type": "distilbert", "vocab_size": 97, "dim": 16, "n_layers": 2, "n_heads": 2, "hidden_dim": 24,
      "max_position_embeddings": 40}, "mean"),
], ids=lambda v: v if isinstance(v, str) else v["model_type"])
def test_transformer_formulas_match_transformers(conf, pooling):
    text = ("archspec: 1\nname: m\ninputs: {t: {type: text, column: t, max_length: 8, tokenizer: "
            "{type: wordpiece, vocab_size: 90}}}\n"
            f"encoders: {{e: {{type: transformer, input: t, pooling: {pooling}, config: {conf!r}}}}}\n"
            "heads: {y: {type: binary, from: e}}\n").replace("'", '"')
    checked = check_text(text)
    assert checked.ok(), [d.render() for d in checked.diagnostics]
    with torch.device("meta"):
        model = compile_spec(checked, dry_run=False)
    assert transformer_params(conf, pooling) == sum(model.parameter_counts("e"))
    assert count_params(checked).nodes["e"].exact


def test_unknown_model_type_and_hub_model_are_deferred_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-home"))
    text = ("archspec: 1\nname: m\ninputs: {t: {type: text, column: t, tokenizer: {type: pretrained, name: x/y}}}\n"
            "encoders:\n  a: {type: transformer, input: t, config: {model_type: gpt2, n_embd: 16}}\n"
            "  b: {type: transformer, input: t, pretrained: some-org/not-cached-model}\n"
            "  c: {type: embedding_bag, input: t, dim: 4}\n"
            "fusions: {f: {type: early, inputs: [a, c]}}\n"
            "heads: {y: {type: binary, from: f}, z: {type: binary, from: b}}\n")
    rep = count_params(check_text(text))
    assert str(rep.nodes["a"]) == "deferred (model type 'gpt2' has no static formula in archspec (counted at build))"
    assert str(rep.nodes["b"]) == "deferred (the pretrained model 'some-org/not-cached-model', not available offline)"
    assert str(rep.nodes["c"]) == "deferred (the vocabulary of tokenizer 'x/y' (no tokenizer.json on this machine))"
    assert str(rep.nodes["z"]) == "deferred (the width of 'b', deferred to build)"
    assert rep.total.value is None and rep.known == rep.nodes["f"].value + rep.nodes["y"].value
    assert rep.total_line() == (f"parameters: deferred to build (≥ {rep.known:,} known) — a: model type 'gpt2' "
                                "has no static formula in archspec (counted at build); b: the pretrained model "
                                "'some-org/not-cached-model', not available offline; c: the vocabulary of tokenizer "
                                "'x/y' (no tokenizer.json on this machine); z: the width of 'b', deferred to build")


def test_fitted_wordpiece_vocabulary_makes_the_bound_exact(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["a small corpus of words", "words and more words"],
                            trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]"]))
    tok.add_tokens(["extra_token"])
    run = tmp_path / "run"
    (run / "preprocess" / "tokenizers" / "t").mkdir(parents=True)
    tok.save(str(run / "preprocess" / "tokenizers" / "t" / "tokenizer.json"))
    (run / "spec.yaml").write_text("x")
    size = tok.get_vocab_size(with_added_tokens=True)
    assert tokenizer_json_size(run / "preprocess" / "tokenizers" / "t" / "tokenizer.json") == size

    from archspec.params import fitted_sizes

    text = ("archspec: 1\nname: m\ninputs: {t: {type: text, column: t, tokenizer: {type: wordpiece, vocab_size: 500}}}\n"
            "encoders: {e: {type: embedding_bag, input: t, dim: 4}}\nheads: {y: {type: binary, from: e}}\n")
    checked = check_text(text)
    bound = count_params(checked)
    assert str(bound.total) == "≤ 2,005"
    assert bound.total_line() == ("parameters: ≤ 2,005 — a bound: the WordPiece vocabulary of 't' is fitted on "
                                  "the training data, at most 500 tokens")
    exact = count_params(checked, fitted_sizes(run), str(run))
    assert exact.total.exact and exact.total.value == size * 4 + 5
    assert exact.total_line() == f"parameters: {size * 4 + 5:,} with the fitted vocabulary of {run}"


@pytest.mark.parametrize("name", ["alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "googlenet",
                                  "inception_v3", "maxvit_t", "mnasnet0_5", "mobilenet_v2", "regnet_x_400mf",
                                  "shufflenet_v2_x0_5", "squeezenet1_1", "swin_t", "vgg11_bn", "vit_b_32"])
def test_backbone_table_matches_torchvision(name):
    import torchvision

    from archspec.nn.encoders import _strip_classifier
    from archspec.spec.backbones import BACKBONE_PARAMS

    kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    if name.startswith("regnet"):  # computes its widths with tensors: not on the meta device
        m = torchvision.models.get_model(name, **kwargs)
    else:
        with torch.device("meta"):
            m = torchvision.models.get_model(name, **kwargs)
    assert sum(p.numel() for p in _strip_classifier(name, m).parameters()) == BACKBONE_PARAMS[name]


def test_hf_field_table_matches_installed_transformers():
    from archspec.spec.hf_fields import FIELDS, _generate

    assert FIELDS == _generate(), "regenerate with: python -m archspec.spec.hf_fields"


def test_pretrained_tokenizer_in_the_local_cache_gives_an_exact_count(tmp_path, monkeypatch):
    from tokenizers import Tokenizer, models

    snap = tmp_path / "hub" / "models--org--tok" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "a": 2, "b": 3}, unk_token="[UNK]")).save(
        str(snap / "tokenizer.json"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    text = ("archspec: 1\nname: m\ninputs: {t: {type: text, column: t, tokenizer: {type: pretrained, name: org/tok}}}\n"
            "encoders: {e: {type: embedding_bag, input: t, dim: 5}}\nheads: {y: {type: binary, from: e}}\n")
    rep = count_params(check_text(text))
    assert rep.nodes["e"].exact and rep.nodes["e"].value == 4 * 5


@pytest.mark.parametrize("name", ["two_tower", "movie_tagger"])
def test_archspec_build_json_reports_the_static_counts(name, capsys):
    """The command itself (not only the compiled module) agrees, bound flags included."""
    import json

    from archspec.cli import main

    path = ROOT / "specs" / f"{name}.yaml"
    assert main(["build", str(path), "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    report = count_params(check_file(path))
    assert summary["totals"]["params"] == report.total.value
    assert summary["totals"]["bound"] is report.total.bound
    for node in summary["nodes"]:
        if node["section"] != "inputs":
            c = report.nodes[node["name"]]
            assert node["trainable"] + node["frozen"] == c.value and node["bound"] is c.bound


@pytest.mark.parametrize("head", [
    "{type: similarity, query: q, candidate: c, learn_scale: true}",
    "{type: similarity, query: q, candidate: c, loss: {type: contrastive, learn_temperature: true}}",
    "{type: similarity, query: q, candidate: c, metric: cosine, temperature: 0.1, loss: {type: contrastive}}",
])
def test_similarity_head_counts(head):
    text = ("archspec: 1\nname: m\ninputs: {a: {type: numeric, columns: [x, y]}, b: {type: numeric, columns: [z]}}\n"
            "encoders: {q: {type: mlp, input: a, layers: [4]}, c: {type: mlp, input: b, layers: [4]}}\n"
            f"heads: {{s: {head}}}\n")
    checked = check_text(text)
    assert checked.ok(), [d.render() for d in checked.diagnostics]
    with torch.device("meta"):
        model = compile_spec(checked, dry_run=False)
    assert count_params(checked).nodes["s"].value == sum(model.parameter_counts("s"))
