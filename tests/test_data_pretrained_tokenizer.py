"""`tokenizer: {type: pretrained}` loads a Hugging Face tokenizer from a local directory, offline."""

import json

import pandas as pd
import pytest
import torch

from archspec.data import Preprocessor
from archspec.data.text import SPECIAL_TOKENS, WordPieceText
from archspec.errors import BuildError

from data_kit import write_spec

TEXTS = ["the cat sat on the mat", "a dog ate the bone", "cats and dogs", "the mat is red"] * 3


def spec(name, max_length=10):
    return ("archspec: 1\nname: m\ninputs:\n  x: {type: numeric, columns: [a]}\n"
            f"  t: {{type: text, column: s, max_length: {max_length}, tokenizer: {{type: pretrained, name: {name}}}}}\n"
            "heads: {y: {type: regression, from: x}}\n")


@pytest.fixture(scope="module")
def saved_tokenizer(tmp_path_factory):
    """A tiny WordPiece tokenizer saved as a BERT tokenizer with `save_pretrained` (no download)."""
    from tokenizers import Tokenizer
    from transformers import BertTokenizerFast

    trained = WordPieceText.train(TEXTS, 60, True, 1, 10)
    tok = Tokenizer.from_str(trained.tokenizer.to_str())
    tok.no_padding()
    tok.no_truncation()
    hf = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                           sep_token="[SEP]", mask_token="[MASK]")
    root = tmp_path_factory.mktemp("specdir")
    hf.save_pretrained(str(root / "tok"))
    return root, trained


def test_local_pretrained_tokenizer_matches_the_trained_one(saved_tokenizer, tmp_path):
    root, trained = saved_tokenizer
    checked = write_spec(root, spec("./tok"), "pre.yaml")  # relative to the spec file's directory
    df = pd.DataFrame({"a": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 2.0],
                       "s": ["The cat sat", "dogs ate the red bone on the mat today", None]})
    pre = Preprocessor.fit(checked, df, tmp_path)
    inputs, _ = pre.transform(df, tmp_path)
    ids, mask = trained.encode(["The cat sat", "dogs ate the red bone on the mat today", ""])
    assert inputs["t"].tolist() == ids.tolist() and inputs["t.mask"].tolist() == mask.tolist()
    assert inputs["t"].dtype == torch.int64 and inputs["t"].shape == (3, 10)
    assert pre.vocab_size("t") == trained.vocab_size and pre.pad_token_id("t") == 0

    run = tmp_path / "run"
    pre.save(run)
    saved = sorted(p.name for p in (run / "tokenizers" / "t").iterdir())
    assert "tokenizer.json" in saved and not any(n.endswith((".pkl", ".bin", ".pt")) for n in saved)
    for name in saved:
        json.loads((run / "tokenizers" / "t" / name).read_text())
    again = Preprocessor.load(run, checked)
    assert again.transform(df, tmp_path)[0]["t"].tolist() == inputs["t"].tolist()
    assert SPECIAL_TOKENS[0] == "[PAD]"


def test_hub_name_not_in_cache_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hf_home" / "hub"))
    checked = write_spec(tmp_path, spec("no-such-org/no-such-model"))
    df = pd.DataFrame({"a": [0.0, 1.0], "y": [0.0, 1.0], "s": ["a", "b"]})
    with pytest.raises(BuildError) as exc:
        Preprocessor.fit(checked, df, tmp_path)
    msg = str(exc.value)
    assert msg.startswith("inputs.t.tokenizer: cannot load pretrained tokenizer 'no-such-org/no-such-model': not "
                          "in the Hugging Face cache")
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in msg
    assert "archspec fetch SPEC" in msg and "hf download no-such-org/no-such-model" in msg
