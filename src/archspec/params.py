"""Static parameter counts: how many weights each node will have, from the spec alone (torch-free).

A count is *exact* when the spec fixes every size (dense layers, embeddings over a categorical
input, convolutions, heads, fusions, torchvision backbones in archspec's table, an inline
transformer config of a model type with a known formula). It is a *bound* when it depends on a
vocabulary fitted on the training data (a WordPiece tokenizer learns at most ``vocab_size``
tokens, often fewer): then the count shown is the largest it can be, and a run's fitted sizes
make it exact. It is *deferred* when it depends on something only the build knows (a pretrained
model that is not on this machine, a backbone missing from the table, a plugin component): then
it says what it depends on.

The figures equal what ``archspec build`` counts (a test checks every shipped and parity spec).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .spec import hf
from .spec.backbones import BACKBONE_PARAMS
from .spec.hf_fields import defaults as hf_defaults

_BERT_LIKE = ("bert", "roberta", "xlm-roberta", "camembert", "electra")


@dataclass(frozen=True)
class Count:
    """Parameters of one node (or of a whole model).

    Attributes:
        value: the number of parameters; ``None`` when deferred to build.
        bound: ``value`` is an upper bound (a vocabulary fitted on data may be smaller).
        depends: what a bounded or deferred count depends on, in a reader's words.
        frozen: the parameters are frozen (``trainable: false``).
    """

    value: int | None
    bound: bool = False
    depends: str = ""
    frozen: bool = False

    @property
    def exact(self) -> bool:
        return self.value is not None and not self.bound

    def __str__(self) -> str:
        if self.value is None:
            return f"deferred ({self.depends})" if self.depends else "deferred"
        return ("≤ " if self.bound else "") + f"{self.value:,}"

    def to_dict(self) -> dict:
        return {"params": self.value, "exact": self.exact, "bound": self.bound,
                "depends_on": self.depends or None, "frozen": self.frozen}


@dataclass
class ParamReport:
    """Per-node counts, in the graph's order, and the totals.

    Attributes:
        nodes: node name → :class:`Count` (inputs have none and are left out).
        total: every parameter; a bound if any node is, deferred (with the known part in
            ``known``) if any node is.
        trainable: the parameters of nodes that are not frozen.
        known: the sum of the nodes whose count is known (a lower bound when some are deferred).
        fitted: where fitted vocabulary sizes came from (a run directory), if given.
    """

    nodes: dict = field(default_factory=dict)
    total: Count = Count(0)
    trainable: Count = Count(0)
    known: int = 0
    fitted: str | None = None

    def to_dict(self) -> dict:
        return {"nodes": {n: c.to_dict() for n, c in self.nodes.items()}, "total": self.total.to_dict(),
                "trainable": self.trainable.to_dict(), "known": self.known, "fitted_from": self.fitted}

    def total_line(self) -> str:
        """``parameters: ≤ 275,603 (...)`` — what a reader should know about the total."""
        t = self.total
        if t.value is None:
            deferred = [n for n, c in self.nodes.items() if c.value is None]
            known = f" (≥ {self.known:,} known)" if self.known else ""
            return (f"parameters: deferred to build{known} — "
                    + "; ".join(f"{n}: {self.nodes[n].depends}" for n in deferred))
        text = f"parameters: {t}"
        if t.bound:
            text += f" — a bound: {t.depends}"
        elif self.fitted:
            text += f" with the fitted vocabulary of {self.fitted}"
        return text


def _dense(in_width: int, widths, norm: str, activate_last: bool = True) -> tuple[int, int]:
    """Parameters and output width of archspec's dense stack (Linear → norm → act → dropout)."""
    total, w = 0, in_width
    for i, out in enumerate(widths):
        total += w * out + out
        w = out
        if (i < len(widths) - 1 or activate_last) and norm != "none":
            total += 2 * out  # batch_norm / layer_norm: weight and bias (running stats are buffers)
    return total, w


class _Deferred(Exception):
    def __init__(self, depends: str):
        self.depends = depends


def _width(checked, name: str) -> int:
    shape = checked.shapes.get(name)
    w = shape.width if shape is not None else None
    if w is None:
        raise _Deferred(f"the width of '{name}', deferred to build")
    return w


def tokenizer_json_size(path) -> int | None:
    """Vocabulary size (added tokens included) of a ``tokenizers`` ``tokenizer.json``, or ``None``.

    What ``Tokenizer.get_vocab_size(with_added_tokens=True)`` returns, read as JSON.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    vocab = (data.get("model") or {}).get("vocab") if isinstance(data, dict) else None
    if isinstance(vocab, list):  # unigram: [[piece, score], ...]
        tokens = {v[0] for v in vocab if isinstance(v, list) and v}
    elif isinstance(vocab, dict):
        tokens = set(vocab)
    else:
        return None
    ids = set(range(len(tokens)))
    for t in data.get("added_tokens") or []:
        if isinstance(t, dict) and t.get("content") not in tokens and isinstance(t.get("id"), int):
            ids.add(t["id"])
    return len(ids)


def fitted_sizes(run_dir) -> dict:
    """Vocabulary sizes a run fitted, by text input name (torch-free: read from its files).

    Raises:
        CheckpointError: ``run_dir`` is not a run directory.
    """
    from .errors import CheckpointError

    root = Path(run_dir)
    if not (root / "spec.yaml").is_file():
        raise CheckpointError(f"{run_dir} is not a run directory (no spec.yaml) — give the directory "
                              "`archspec train` wrote")
    out = {}
    for tok in sorted(root.glob("preprocess/tokenizers/*/tokenizer.json")):
        size = tokenizer_json_size(tok)
        if size is not None:
            out[tok.parent.name] = size
    return out


def transformer_config(cfg, base_dir) -> tuple[dict | None, str]:
    """The merged transformers config of a ``transformer`` encoder, or ``(None, why not)``."""
    conf: dict = {}
    if cfg.pretrained is not None:
        path, where = hf.find_config(cfg.pretrained, base_dir)
        loaded = hf.read_config(path) if where in ("local", "cache") else None
        if loaded is None:
            return None, f"the pretrained model '{cfg.pretrained}', not available offline"
        conf = loaded
    return {**conf, **(cfg.config or {})}, ""


def _pos_int(d: dict, key: str) -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise _Deferred(f"config `{key}` is {v!r}, not a positive integer")
    return v


def transformer_params(conf: dict, pooling: str) -> int:
    """Parameters of the transformers encoder archspec builds from ``conf`` (bert-like, distilbert).

    Raises:
        _Deferred: no formula for this model type or configuration.
    """
    mtype = conf.get("model_type")
    d = {**hf_defaults(mtype), **conf} if isinstance(mtype, str) else conf
    if d.get("is_decoder") or d.get("add_cross_attention"):
        raise _Deferred("a decoder configuration (no static formula)")
    if mtype in _BERT_LIKE:
        if d.get("position_embedding_type", "absolute") not in (None, "absolute"):
            raise _Deferred(f"position_embedding_type '{d['position_embedding_type']}' (no static formula)")
        h, layers, inter = _pos_int(d, "hidden_size"), _pos_int(d, "num_hidden_layers"), _pos_int(d, "intermediate_size")
        v, p = _pos_int(d, "vocab_size"), _pos_int(d, "max_position_embeddings")
        t = d.get("type_vocab_size", 2)
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            raise _Deferred(f"config `type_vocab_size` is {t!r}")
        e = _pos_int(d, "embedding_size") if mtype == "electra" else h
        emb = (v + p + t) * e + 2 * e + (e * h + h if e != h else 0)
        layer = 4 * (h * h + h) + 2 * h + (h * inter + inter) + (inter * h + h) + 2 * h
        pooler = h * h + h if mtype != "electra" and pooling == "pooler" else 0
        return emb + layers * layer + pooler
    if mtype == "distilbert":
        if d.get("sinusoidal_pos_embds"):
            raise _Deferred("sinusoidal position embeddings (no static formula)")
        dim, layers, hid = _pos_int(d, "dim"), _pos_int(d, "n_layers"), _pos_int(d, "hidden_dim")
        v, p = _pos_int(d, "vocab_size"), _pos_int(d, "max_position_embeddings")
        layer = 4 * (dim * dim + dim) + 2 * dim + (dim * hid + hid) + (hid * dim + dim) + 2 * dim
        return (v + p) * dim + 2 * dim + layers * layer
    if mtype in ("wav2vec2", "hubert"):
        return _wav2vec2_params(d, mtype)
    if mtype == "audio-spectrogram-transformer":
        return _ast_params(d)
    raise _Deferred(f"model type '{mtype}' has no static formula in archspec (counted at build)")


def _encoder_layers(h: int, inter: int, layers: int) -> int:
    """Post- or pre-norm transformer layers: q/k/v/out projections, two layer norms, a feed-forward."""
    return layers * (4 * (h * h + h) + 2 * h + (h * inter + inter) + (inter * h + h) + 2 * h)


def _wav2vec2_params(d: dict, mtype: str) -> int:
    """``Wav2Vec2Model`` / ``HubertModel``: conv feature encoder, projection, positional conv, encoder."""
    if d.get("add_adapter"):
        raise _Deferred("a wav2vec2 adapter (`add_adapter`; counted at build)")
    dims, kernels = d.get("conv_dim"), d.get("conv_kernel")
    if not (isinstance(dims, list) and isinstance(kernels, list) and len(dims) == len(kernels) and dims):
        raise _Deferred("config `conv_dim`/`conv_kernel` are not lists of one length")
    h, layers, inter = _pos_int(d, "hidden_size"), _pos_int(d, "num_hidden_layers"), _pos_int(d, "intermediate_size")
    k, groups = _pos_int(d, "num_conv_pos_embeddings"), _pos_int(d, "num_conv_pos_embedding_groups")
    norm = d.get("feat_extract_norm")
    n, c = 0, 1
    for i, (out, kern) in enumerate(zip(dims, kernels)):
        n += c * out * kern + (out if d.get("conv_bias") else 0)
        if norm == "layer" or (norm == "group" and i == 0):
            n += 2 * out  # LayerNorm per layer, or one GroupNorm(out, out) on the first
        c = out
    if mtype == "wav2vec2" or d.get("feat_proj_layer_norm", True):
        n += 2 * c  # the projection's LayerNorm
    n += c * h + h
    if (d.get("mask_time_prob") or 0) > 0 or (d.get("mask_feature_prob") or 0) > 0:
        n += h  # masked_spec_embed (SpecAugment's mask vector)
    if mtype == "hubert" and d.get("conv_pos_batch_norm"):
        n += 2 * h
    n += h * (h // groups) * k + k + h  # weight-normed positional conv: v, g (1, 1, k), bias
    return n + 2 * h + _encoder_layers(h, inter, layers)


def _ast_params(d: dict) -> int:
    """``ASTModel``: patch projection, CLS and distillation tokens, position embeddings, ViT layers."""
    h, layers, inter = _pos_int(d, "hidden_size"), _pos_int(d, "num_hidden_layers"), _pos_int(d, "intermediate_size")
    from .spec.hf_audio import spectrogram_patches

    positions = spectrogram_patches(d)
    if positions is None:
        raise _Deferred("config `patch_size`/`num_mel_bins`/`max_length`/strides")
    p = _pos_int(d, "patch_size")
    qkv = h if d.get("qkv_bias", True) else 0
    layer = 3 * (h * h + qkv) + (h * h + h) + 4 * h + (h * inter + inter) + (inter * h + h)
    return (p * p * h + h) + 2 * h + positions * h + layers * layer + 2 * h


def _rows_of_tokens(checked, input_name: str, fitted: dict) -> tuple[int, bool, str]:
    """``(rows, is_bound, depends)`` of an embedding over a text input's token ids."""
    if input_name in fitted:
        return fitted[input_name], False, ""
    tok = getattr(checked.graph.nodes.get(input_name), "tokenizer", None)
    if tok is None:
        raise _Deferred(f"the vocabulary of '{input_name}'")
    if tok.type in ("wordpiece", "whitespace"):
        return tok.vocab_size, True, (f"the {'WordPiece' if tok.type == 'wordpiece' else 'word'} vocabulary of '{input_name}' is fitted on the training "
                                      f"data, at most {tok.vocab_size:,} tokens")
    name = tok.name
    if name.startswith((".", "/", "~")):
        p = Path(name).expanduser()
        if not p.is_absolute() and checked.base_dir is not None:
            p = checked.base_dir / p
        candidates = [p / "tokenizer.json"]
    else:  # a hub name: its tokenizer.json, if already in the local Hugging Face cache
        candidates = [snap / "tokenizer.json" for root in hf._cache_dirs()
                      for snap in sorted((root / ("models--" + name.replace("/", "--")) / "snapshots").glob("*"))]
    for path in candidates:
        size = tokenizer_json_size(path)
        if size is not None:
            return size, False, ""
    raise _Deferred(f"the vocabulary of tokenizer '{name}' (no tokenizer.json on this machine)")


def _node_count(checked, name: str, cfg, fitted: dict) -> Count:
    g = checked.graph
    section = g.section[name]
    srcs = g.edges.get(name, [])
    kind = cfg.type
    frozen = section == "encoders" and not getattr(cfg, "trainable", True)
    bound, depends = False, ""
    if kind == "mlp":
        n, _ = _dense(_width(checked, srcs[0]), cfg.layers, cfg.norm, cfg.activate_last)
    elif kind == "identity":
        n = 0
    elif kind == "embedding":
        n = checked.graph.nodes[cfg.input].cardinality * cfg.dim
    elif kind == "embedding_bag":
        if cfg.vocab_size:
            rows = cfg.vocab_size
        else:
            rows, bound, depends = _rows_of_tokens(checked, cfg.input, fitted)
        n = rows * cfg.dim
    elif kind == "cnn":
        c = checked.shapes[srcs[0]].dims[0]
        n = 0
        for out in cfg.channels:
            n += c * out * cfg.kernel_size ** 2 + (out if cfg.norm == "none" else 2 * out)
            c = out
    elif kind == "torchvision":
        n = BACKBONE_PARAMS.get(cfg.model)
        if n is None:
            raise _Deferred(f"torchvision model '{cfg.model}', not in archspec's table")
    elif kind == "transformer":
        conf, why = transformer_config(cfg, checked.base_dir)
        if conf is None:
            raise _Deferred(why)
        n = transformer_params(conf, cfg.pooling)
    elif kind == "early":
        n, total_w = 0, 0
        for src in cfg.inputs:
            w = _width(checked, src)
            p = cfg.project.get(src) if isinstance(cfg.project, dict) else cfg.project
            if p:
                n += w * p + p
                w = p
            if cfg.branch_norm in ("layer_norm", "batch_norm"):
                n += 2 * w
            total_w += w
        n += _dense(total_w, cfg.layers, cfg.norm)[0]
    elif kind == "late":
        n = len(cfg.inputs) if cfg.combine == "learned" else 0
    elif kind in ("multiclass", "multilabel", "binary", "regression"):
        n, w = _dense(_width(checked, srcs[0]), cfg.layers, cfg.norm)
        outputs = {"binary": 1, "regression": getattr(cfg, "outputs", 1)}.get(kind)
        if outputs is None:
            outputs = cfg.label_space()[1]
        n += w * outputs + outputs
    elif kind == "similarity":
        learned_t = cfg.loss.type == "contrastive" and getattr(cfg.loss, "learn_temperature", False)
        n = (2 if cfg.learn_scale else 0) + (1 if learned_t else 0)  # scale and bias; log(1/T)
    else:
        counter = getattr(cfg, "static_params", None)
        n = counter([checked.shapes.get(s) for s in srcs]) if callable(counter) else None
        if n is None:
            raise _Deferred(f"no static count for type '{kind}' (counted at build)")
    return Count(n, bound, depends, frozen)


def count_params(checked, fitted: dict | None = None, fitted_from: str | None = None) -> ParamReport:
    """Static parameter counts of a checked spec.

    Args:
        checked: a :class:`~archspec.pipeline.Checked` spec (with its graph and shapes).
        fitted: vocabulary sizes fitted by a run (:func:`fitted_sizes`), by text input name.
        fitted_from: the run they came from (for messages).

    Example:
        >>> from archspec.pipeline import check_text
        >>> r = check_text("archspec: 1\\nname: m\\ninputs: {x: {type: numeric, columns: [a, b]}}\\n"
        ...                "encoders: {e: {type: mlp, input: x, layers: [4]}}\\n"
        ...                "heads: {y: {type: regression, from: e}}\\n")
        >>> rep = count_params(r)
        >>> str(rep.nodes["e"]), str(rep.nodes["y"]), str(rep.total)
        ('12', '5', '17')
    """
    fitted = dict(fitted or {})
    g = checked.graph
    rep = ParamReport(fitted=fitted_from if fitted else None)
    if g is None:
        return rep
    for name in g.order:
        if g.section[name] == "inputs" or name not in checked.shapes:
            continue
        try:
            rep.nodes[name] = _node_count(checked, name, g.nodes[name], fitted)
        except _Deferred as exc:
            frozen = g.section[name] == "encoders" and not getattr(g.nodes[name], "trainable", True)
            rep.nodes[name] = Count(None, depends=exc.depends, frozen=frozen)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            # a spec shape this counter does not foresee (e.g. a plugin's odd config): never a traceback
            rep.nodes[name] = Count(None, depends=f"no static count for this '{g.nodes[name].type}' node")
    counts = list(rep.nodes.values())
    rep.known = sum(c.value for c in counts if c.value is not None)
    bounds = [c.depends for c in counts if c.bound]
    deferred = [c for c in counts if c.value is None]
    depends = "; ".join(dict.fromkeys(bounds))
    if deferred:
        rep.total = Count(None, depends="; ".join(dict.fromkeys(c.depends for c in deferred)))
        rep.trainable = rep.total
    else:
        rep.total = Count(rep.known, bool(bounds), depends)
        rep.trainable = Count(sum(c.value for c in counts if not c.frozen), bool(bounds), depends)
    return rep


def count_for(checked, run=None) -> ParamReport:
    """:func:`count_params`, with the fitted sizes of ``run`` (a run directory) when given."""
    if run is None:
        return count_params(checked)
    return count_params(checked, fitted_sizes(run), str(run))
