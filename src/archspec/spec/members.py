"""A head taken from another trained run (`type: run`), frozen: a member of a late fusion (torch-free).

The checker reads the member run's own spec (``RUN/spec.yaml`` with its stored base directory) to
learn the head's kind, label space, target and output shape, so a late fusion of runs is checked
like one of heads: members with another label space are located errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr

from ..registry import register_config
from ..shapes import Shape
from .base import Name, Node


@register_config("head", "run")
class RunHeadConfig(Node):
    """A head of another trained run, frozen (its run's own spec, preprocessing and best weights).

    Use it as a member of a late fusion: the run is never retrained here, so replacing the run
    directory (or pointing `run` at another one) changes only that member. `archspec train` on a
    spec whose fusions have fixed weights trains nothing and writes a run that evaluate/predict
    accept; with `combine: learned` it trains only the combination weights.
    """

    section = "heads"
    accepts: ClassVar[frozenset] = frozenset()
    layers: ClassVar[list] = []
    activation: ClassVar[str] = "none"
    default_loss: ClassVar[str] = "none"
    allowed_losses: ClassVar[tuple] = ()

    type: Literal["run"]
    run: str = Field(min_length=1)
    """The trained run directory (relative paths start from the spec's directory), e.g. `runs/text_model`."""
    head: Name
    """The head of that run to use (a head, not a fusion), e.g. `topic`."""
    target: Name | None = None
    """Data column with the labels; defaults to the member head's own target column."""
    metrics: list[str] | None = None
    """Metrics reported for this member; defaults to the member head's."""

    _member: Any = PrivateAttr(None)  # (member config, member shape, member target, run directory)

    @property
    def loss(self):
        return None  # frozen: nothing here is trained by this member

    @property
    def member(self):
        """The member head's config in its own run (after checking)."""
        return self._member[0] if self._member else None

    @property
    def kind(self) -> str:
        m = self.member
        return getattr(m, "kind", "") if m is not None else ""

    @property
    def output_activation(self):
        return getattr(self.member, "output_activation", None)

    @property
    def separator(self):
        return getattr(self.member, "separator", None)

    @property
    def decision_threshold(self) -> float | None:
        return getattr(self.member, "decision_threshold", None)

    @property
    def target_column(self) -> str:
        return self.target or (self._member[2] if self._member else "") or ""

    def run_dir(self, base_dir) -> Path:
        p = Path(self.run).expanduser()
        return p if p.is_absolute() else Path(base_dir or ".") / p

    def resolved_metrics(self) -> list[str]:
        if self.metrics is not None:
            return list(self.metrics)
        return self.member.resolved_metrics() if self.member is not None else []

    def label_space(self):
        return self.member.label_space() if self.member is not None else None

    def static_params(self, in_shapes) -> int:
        return 0  # frozen weights of another run; not parameters of this model

    def infer(self, ins, ctx) -> Shape | None:
        from ..pipeline import check_text

        run = self.run_dir(ctx.base_dir)
        spec = run / "spec.yaml"
        if not spec.is_file() or not (run / "resolved_spec.json").is_file():
            ctx.report("E-RUN-MEMBER", ("run",), f"'{self.run}' is not a trained run directory (no spec.yaml / "
                       "resolved_spec.json there; relative paths start from the spec's folder)",
                       "train the member first (archspec train SPEC --out DIR) or fix the path")
            return None
        try:
            source = json.loads((run / "source.json").read_text()) if (run / "source.json").is_file() else {}
        except ValueError:
            source = {}
        checked = check_text(spec.read_text(), str(spec), base_dir=Path(source.get("base_dir") or run))
        if not checked.ok():
            ctx.report("E-RUN-MEMBER", ("run",), f"the spec of run {run} no longer checks "
                       f"({len(checked.errors)} errors, e.g. {checked.errors[0].message})",
                       "retrain the member run with the current archspec")
            return None
        g = checked.graph
        if self.head not in g.nodes or g.section[self.head] != "heads":
            from ..errors import did_you_mean

            heads = [n for n in g.nodes if g.section[n] == "heads"]
            ctx.report("E-RUN-MEMBER", ("head",), f"run {run} has no head '{self.head}' (its heads: "
                       f"{', '.join(heads)})", did_you_mean(self.head, heads) or "name one of its heads")
            return None
        cfg = g.nodes[self.head]
        if getattr(cfg, "type", None) == "run":
            ctx.report("E-RUN-MEMBER", ("head",), f"'{self.head}' of run {run} is itself a member of another run",
                       f"name the original run ({cfg.run}) instead")
            return None
        target = getattr(cfg, "target_column", None) or getattr(cfg, "target", None) or self.head
        self._member = (cfg, checked.shapes[self.head], target, run)
        return checked.shapes[self.head]
