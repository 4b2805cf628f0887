"""`archspec build` shows a count that depends on a fitted vocabulary as a bound, and a trained run's
fitted sizes make it exact (`build SPEC --run RUN`, `build RUN`); static counts agree with both."""

from __future__ import annotations

import re

from archspec.cli import main
from archspec.params import count_params, fitted_sizes
from archspec.pipeline import check_file
from archspec.train import train

from datagen import make_dataset

SPEC = """archspec: 1
name: bag
inputs:
  text: {type: text, column: text, max_length: 8, tokenizer: {type: wordpiece, vocab_size: 5000, min_frequency: 1}}
encoders:
  bag: {type: embedding_bag, input: text, dim: 16}
heads:
  label: {type: multiclass, from: bag, classes: [a, b]}
training:
  batch_size: 4
"""


def total_line(out: str) -> str:
    return next(ln.strip() for ln in out.splitlines() if "Total params:" in ln)


def test_bound_then_exact_with_the_run(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    checked = check_file(spec)
    data = make_dataset(checked, 12, tmp_path)
    run = tmp_path / "run"
    train(str(spec), data=str(data), out=str(run), max_steps=1, epochs=1, progress=False, log=lambda *a: None)

    assert main(["build", str(spec)]) == 0
    out = capsys.readouterr().out
    assert total_line(out) == ("Total params:     ≤ 80,034 (0.31 MB) — a bound: the WordPiece vocabulary of 'text' "
                               "is fitted on the training data, at most 5,000 tokens; `--run RUN` counts with a "
                               "trained run's fitted vocabulary")
    assert re.search(r"bag\s+encoder/embedding_bag.*≤ 80,000", out)

    vocab = fitted_sizes(run)["text"]
    assert 0 < vocab < 5000
    exact = vocab * 16 + 34
    assert main(["build", str(spec), "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert total_line(out) == (f"Total params:     {exact:,} ({exact * 4 / 2**20:.2f} MB) with the fitted vocabulary "
                               f"of {run} (≤ 80,034 before fitting)")
    assert main(["build", str(run)]) == 0
    assert total_line(capsys.readouterr().out) == total_line(out)

    # the torch-free count agrees: a bound alone, exact with the run
    assert count_params(checked, fitted_sizes(run), str(run)).total.value == exact
    assert main(["validate", "--shapes", "--run", str(run), str(spec)]) == 0
    assert f"parameters: {exact:,} with the fitted vocabulary of {run}" in capsys.readouterr().out
