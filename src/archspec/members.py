"""Members from other runs (`type: run` heads): each member run predicts with its own spec,
preprocessing and best weights, and its outputs join the batches of the fused model.

A member is frozen, so its outputs over a data file are computed once (one streaming pass of that
run over the file, in file order) and then handed to every batch by row position
(``"<head>.member"``). Nothing of a member is trained or copied: replacing the member run's
directory changes that member's part on the next evaluate/predict, and only that part.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import CheckpointError


def member_heads(checked) -> list[tuple[str, object]]:
    g = checked.graph
    return [(n, g.nodes[n]) for n in g.order if getattr(g.nodes[n], "type", None) == "run"]


def _outputs_over_file(name: str, cfg, checked, pre, path: str, n_rows: int, log) -> torch.Tensor:
    from .inference import _loader, load_run

    run = cfg.run_dir(checked.base_dir)
    model, mpre, _ = load_run(run)
    try:
        ours, theirs = pre.label_names(name), mpre.label_names(cfg.head)
    except LookupError:
        ours = theirs = None
    if ours is not None and theirs is not None and list(ours) != list(theirs):
        raise CheckpointError(f"heads.{name}: run {run} orders the classes of '{cfg.head}' as {theirs}, but this "
                              f"model's labels are {ours} — give the classes by name (`classes: [...]`) in both specs")
    shape = model.shapes[cfg.head]
    out = torch.zeros((n_rows, *shape.dims))
    loader = _loader(model.checked, mpre, path, need_targets=False, batch_size=256, members=False)
    try:
        with torch.no_grad():
            for inputs, _, rows in loader:
                if len(rows):
                    out[torch.as_tensor(rows, dtype=torch.long)] = model(inputs)[cfg.head].float()
    finally:
        loader.close()
    log(f"member {name}: {cfg.head} of run {run} over {Path(path).name} ({n_rows} rows)")
    return out


class WithMembers:
    """A :class:`~archspec.data.Loader` whose batches also carry the member runs' outputs."""

    def __init__(self, loader, outputs: dict):
        self.loader = loader
        self.outputs = outputs  # "<head>.member" -> (rows of the file, ...) tensor

    def __iter__(self):
        for inputs, targets, rows in self.loader:
            idx = torch.as_tensor(rows, dtype=torch.long)
            yield {**inputs, **{k: v[idx] for k, v in self.outputs.items()}}, targets, rows

    def __getattr__(self, item):  # epoch(), batches(), close(), skipped, ... of the wrapped loader
        return getattr(self.loader, item)

    def epoch(self, epoch: int, start_batch: int = 0) -> "WithMembers":
        self.loader.epoch(epoch, start_batch)
        return self


_CACHE: dict = {}


def with_members(checked, pre, loader, table, log=print):
    """``loader`` with the outputs of the spec's member runs added (``loader`` itself when it has none)."""
    heads = member_heads(checked)
    if not heads or loader is None:
        return loader
    path = str(table.source)
    outputs = {}
    for name, cfg in heads:
        run = cfg.run_dir(checked.base_dir)
        stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted((run / "checkpoints").glob("*.json"))
                      + sorted(run.glob("gbdt/*.txt")) + [run / "spec.yaml"] if p.exists())
        key = (str(run.resolve()), cfg.head, path, stamp)
        if key not in _CACHE:
            _CACHE.clear() if len(_CACHE) > 8 else None
            _CACHE[key] = _outputs_over_file(name, cfg, checked, pre, path, table.num_rows, log)
        outputs[name + ".member"] = _CACHE[key]
    return WithMembers(loader, outputs)
