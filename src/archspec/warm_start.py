"""Start training from another run's weights: the second stage of transfer learning.

Stage 1 trains new layers on top of a frozen pretrained encoder (``trainable: false``); stage 2
unfreezes it (``trainable: true``, usually with a smaller learning rate) and starts from stage 1's
weights: ``archspec train stage2.yaml --init-from runs/stage1``. Weights are matched by name, as in
Caffe's fine-tuning: a node of the same name and shape is copied, a node only in the new spec
starts fresh, and a node whose shape changed is an error that says to rename it to learn it from
scratch.
"""

from __future__ import annotations

from pathlib import Path

from . import checkpoint as ckpt
from .errors import CheckpointError


def _node(key: str) -> str:
    parts = key.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def warm_start(model, run_dir, log=print) -> dict:
    """Copy a run's ``best`` (else ``last``) weights into ``model`` wherever names and shapes agree.

    Args:
        model: a compiled model (``archspec.build.compile_spec``).
        run_dir: a run directory written by ``archspec train``.
        log: where the one-line summary goes.

    Returns:
        ``{"loaded": [node...], "fresh": [node...], "unused": [node...], "checkpoint": name}``.

    Raises:
        CheckpointError: not a run directory, nothing in common, or a node whose shape changed.
    """
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"--init-from {run_dir}: not a trained run directory (no checkpoints/) — give the "
                              "run directory the first stage wrote")
    name = "best" if ckpt.read_pointer(ckpt_dir, "best", missing_ok=True) else "last"
    source = ckpt.load_weights(ckpt_dir, name)
    mine = model.state_dict()
    for key, value in mine.items():
        if key in source and tuple(source[key].shape) != tuple(value.shape):
            node = _node(key)
            raise CheckpointError(f"--init-from {run_dir}: '{key}' has shape {tuple(source[key].shape)} there but "
                                  f"{tuple(value.shape)} in this spec — keep node '{node}' the same size, or rename "
                                  "it to learn it from scratch")
    shared = {k: source[k] for k in mine if k in source}
    if not shared:
        raise CheckpointError(f"--init-from {run_dir}: the run shares no node (by name) with this spec — warm "
                              "starting needs the same node names as the first stage")
    model.load_state_dict(shared, strict=False)
    loaded = sorted({_node(k) for k in shared})
    fresh = sorted({_node(k) for k in mine if k not in source} - set(loaded))
    unused = sorted({_node(k) for k in source if k not in mine})
    log(f"initialised from {run_dir} ({name} checkpoint): {', '.join(loaded)}"
        + (f"; fresh: {', '.join(fresh)}" if fresh else "") + (f"; not used: {', '.join(unused)}" if unused else ""))
    return {"loaded": loaded, "fresh": fresh, "unused": unused, "checkpoint": name}


def save_pretrained_configs(model, run_dir) -> list[str]:
    """Save the transformers config of every pretrained ``transformer`` node under ``RUN/pretrained/<node>``.

    A trained run then rebuilds those encoders from its own files (``compile_spec(weights_from_run=RUN)``):
    its checkpoint holds every weight, so evaluating or predicting never needs the pretrained files.
    """
    saved = []
    for name, cfg in model.node_configs.items():
        if getattr(cfg, "type", None) == "transformer" and cfg.pretrained:
            folder = Path(run_dir) / "pretrained" / name
            folder.mkdir(parents=True, exist_ok=True)
            model.encoders[name].model.config.to_json_file(str(folder / "config.json"))
            extractor = getattr(model.encoders[name], "feature_extractor", None)  # an audio model's
            if extractor is not None:
                extractor.to_json_file(str(folder / "preprocessor_config.json"))
            saved.append(name)
    return saved
