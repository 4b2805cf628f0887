"""Every prediction kind has one home (archspec.prediction_kinds), and plugins can add one."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from archspec import prediction_kinds as pk
from archspec.errors import BuildError
from archspec.registry import REGISTRIES, RegistryError


def _head_kinds() -> dict[str, str]:
    """``{kind: head type}`` for every head type in the spec language that states a fixed kind."""
    kinds = {}
    for type_name, cls in REGISTRIES["head"].configs.items():
        kind = getattr(cls, "kind", None)
        for k in (kind,) if isinstance(kind, str) else (kind if isinstance(kind, (tuple, list, frozenset)) else ()):
            if k:
                kinds.setdefault(k, type_name)
    return kinds


def test_every_head_kind_in_the_spec_language_has_a_home():
    kinds = _head_kinds()
    assert {"multiclass", "multilabel", "binary", "regression", "similarity"} <= set(kinds)
    for kind, head_type in kinds.items():
        home = pk.kind_home(kind)
        assert isinstance(home, pk.PredictionKind) and home.name == kind, head_type
        assert home.meaning, f"prediction kind '{kind}' does not say what its export output means"


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(BuildError, match=r"'multiclas' has no home.*did you mean 'multiclass'"):
        pk.kind_home("multiclas")


def test_a_duplicate_kind_is_refused(monkeypatch):
    monkeypatch.setattr(pk, "KINDS", dict(pk.KINDS))
    with pytest.raises(RegistryError, match="duplicate prediction kind 'binary'"):
        pk.register_prediction_kind(type("Again", (pk.Binary,), {}))


def test_a_kind_registered_by_a_plugin_is_picked_up_on_first_use(monkeypatch):
    import archspec.registry as registry

    monkeypatch.setattr(pk, "KINDS", dict(pk.KINDS))

    def load_plugins():  # what the plugin's module does when its entry point is imported
        @pk.register_prediction_kind
        class Ordinal(pk.Multiclass):
            name = "ordinal"
            meaning = "one score per ordered class"

        return ["ordinalplugin"]

    monkeypatch.setattr(registry, "load_plugins", load_plugins)
    home = pk.kind_home("ordinal")
    assert home.name == "ordinal"
    probs = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    cols = home.columns("grade", probs, probs, home.decide(probs), ["low", "high"])
    assert cols["grade"] == ["high", "low"] and list(cols) == ["grade", "grade.prob.low", "grade.prob.high"]


ORDINAL_PLUGIN = """
from archspec.prediction_kinds import Multiclass, register_prediction_kind


@register_prediction_kind
class Ordinal(Multiclass):
    name = "ordinal"
    meaning = "one score per ordered grade"
"""

ORDINAL_DRIVER = """
import sys
import numpy as np
from archspec.prediction_kinds import KINDS, kind_home

assert "ordinal" not in KINDS  # nothing imported the plugin yet
home = kind_home("ordinal")  # loads the archspec.components entry points on a miss
p = np.array([[0.1, 0.9], [0.8, 0.2]])
print(home.meaning, home.columns("grade", p, p, home.decide(p), ["low", "high"])["grade"], "torch" in sys.modules)
"""


def test_a_kind_from_an_installed_plugin_entry_point_is_found(tmp_path):
    (tmp_path / "ordinalplugin.py").write_text(ORDINAL_PLUGIN)
    info = tmp_path / "ordinalplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ordinalplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[archspec.components]\nordinalplugin = ordinalplugin\n")
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(src)])}
    proc = subprocess.run([sys.executable, "-c", ORDINAL_DRIVER], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "one score per ordered grade ['high', 'low'] False"


def test_each_kind_lays_out_the_columns_predict_writes():
    p = torch.tensor([[0.2, 0.7, 0.9], [0.6, 0.1, 0.3]])
    ml = pk.kind_home("multilabel")
    cols = ml.columns("tags", p, p, ml.decide(p, 0.5), ["a", "b", "c"])
    assert cols["tags"] == ["b|c", "a"] and list(cols)[1:] == ["tags.prob.a", "tags.prob.b", "tags.prob.c"]
    mc = pk.kind_home("multiclass")
    assert mc.columns("y", p, p, mc.decide(p), None)["y"] == ["2", "0"]
    b = pk.kind_home("binary")
    q = torch.tensor([0.2, 0.8])
    assert b.columns("ok", q, q, b.decide(q, 0.0), None)["ok"].tolist() == [1, 1]  # threshold 0 is kept
    r = pk.kind_home("regression")
    v = torch.tensor([[1.0, 2.0]])
    assert r.decide(v) is None and list(r.columns("price", v, v, None, None)) == ["price.0", "price.1"]
    s = pk.kind_home("similarity")
    assert list(s.columns("match", q, q, s.decide(q), None)) == ["match.score", "match.prob"]


def test_baselines_fitted_batch_by_batch_equal_one_pass():
    model = SimpleNamespace(shapes={"y": SimpleNamespace(dims=(3,))}, similarity={})
    y = {"y": torch.tensor([0, 2, 2, 1, 2])}
    for kind, target in (("multiclass", y["y"]), ("multilabel", torch.tensor([[1.0, 0.0]] * 2 + [[1.0, 1.0]] * 3)),
                         ("regression", torch.tensor([[1.0], [2.0], [3.0], [4.0], [10.0]]))):
        home = pk.kind_home(kind)
        whole = home.baseline_stats(model, "y", home.baseline_update(model, "y", None, {}, {"y": target}), 5)
        acc = home.baseline_update(model, "y", None, {}, {"y": target[:2]})
        acc = home.baseline_update(model, "y", acc, {}, {"y": target[2:]})
        assert home.baseline_stats(model, "y", acc, 5) == whole
    mc = pk.kind_home("multiclass")
    assert mc.baseline_stats(model, "y", mc.baseline_update(model, "y", None, {}, y), 5) == {"prior": [0.2, 0.2, 0.6]}
    assert pk.kind_home("regression").baseline_update(model, "y", None, {}, {}) is None  # unlabelled: no baseline


def test_numpy_and_torch_give_the_same_columns():
    """The torch-free serving runtime lays out its columns with the same homes as `predict`."""
    p = torch.tensor([[0.2, 0.7, 0.9], [0.6, 0.1, 0.3]])
    for kind, thr in (("multiclass", None), ("multilabel", 0.0), ("multilabel", None)):
        home = pk.kind_home(kind)
        a = home.columns("h", p, p, home.decide(p, thr), ["x", "y", "z"])
        b = home.columns("h", p.numpy(), p.numpy(), home.decide(p.numpy(), thr), ["x", "y", "z"])
        assert list(a) == list(b) and a["h"] == b["h"]
        assert all((a[k] == b[k]).all() for k in a if k != "h")
    q = torch.tensor([0.3, 0.6])
    binary = pk.kind_home("binary")
    assert binary.decide(q.numpy(), 0.5).tolist() == binary.decide(q, 0.5).tolist() == [0, 1]
