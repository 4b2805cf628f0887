"""The `training` section: data, optimiser, schedule and loop settings."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from ..registry import register_config
from .base import FiniteFloat, NonNegFloat, NonNegInt, PositiveFloat, PositiveInt, Probability, RegistryUnion, StrictModel

Path = Annotated[str, Field(min_length=1, max_length=4096)]


class DataConfig(StrictModel):
    """Where the data is. Paths are relative to the spec file; CSV, Parquet or JSON Lines by extension."""

    train: Path | None = None
    """Training data file."""
    validation: Path | None = None
    """Validation file; if absent, `validation_split` of the training file is held out."""
    test: Path | None = None
    """Held-out test file for `archspec evaluate`."""


class OptimizerBase(StrictModel):
    lr: PositiveFloat = 1e-3
    """Learning rate (peak rate when a schedule is used)."""
    weight_decay: NonNegFloat = 0.0
    """L2 penalty (decoupled for `adamw`)."""


@register_config("optimizer", "adam")
class AdamConfig(OptimizerBase):
    """Adam (Keras' `optimizer="adam"`: lr 1e-3, betas 0.9/0.999, eps 1e-7)."""

    type: Literal["adam"]
    betas: Annotated[list[Probability], Field(min_length=2, max_length=2)] = [0.9, 0.999]
    """Decay rates of the running averages of the gradient and of its square."""
    eps: PositiveFloat = 1e-7
    """Keras' default epsilon (PyTorch's is 1e-8)."""


@register_config("optimizer", "adamw")
class AdamWConfig(OptimizerBase):
    """AdamW: Adam with decoupled weight decay."""

    type: Literal["adamw"]
    betas: Annotated[list[Probability], Field(min_length=2, max_length=2)] = [0.9, 0.999]
    """Decay rates of the running averages of the gradient and of its square."""
    eps: PositiveFloat = 1e-8
    """Added to the denominator for numerical stability (PyTorch's default)."""
    weight_decay: NonNegFloat = 0.01
    """Decoupled weight decay (PyTorch's AdamW default)."""


@register_config("optimizer", "sgd")
class SGDConfig(OptimizerBase):
    """Stochastic gradient descent with optional (Nesterov) momentum."""

    type: Literal["sgd"]
    lr: PositiveFloat = 0.01
    """Learning rate (peak rate when a schedule is used)."""
    momentum: Probability = 0.0
    """Momentum factor (0 = plain SGD)."""
    nesterov: bool = False
    """Nesterov momentum (needs `momentum` > 0)."""

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self):
        if self.nesterov and self.momentum == 0:
            raise ValueError("`nesterov: true` needs `momentum` > 0")
        return self


OptimizerConfig = Annotated[object, RegistryUnion("optimizer")]


@register_config("schedule", "constant")
class ConstantScheduleConfig(StrictModel):
    """The same learning rate throughout (after an optional warmup)."""

    type: Literal["constant"]
    warmup_steps: NonNegInt = 0
    """Steps of linear warmup from 0 to the peak rate."""


@register_config("schedule", "cosine")
class CosineScheduleConfig(StrictModel):
    """Cosine decay from the peak rate to `min_lr` over training, after an optional warmup."""

    type: Literal["cosine"]
    warmup_steps: NonNegInt = 0
    """Steps of linear warmup from 0 to the peak rate."""
    min_lr: NonNegFloat = 0.0
    """Learning rate at the end of the decay."""


@register_config("schedule", "linear")
class LinearScheduleConfig(StrictModel):
    """Linear warmup then linear decay to zero."""

    type: Literal["linear"]
    warmup_steps: NonNegInt = 0
    """Steps of linear warmup from 0 to the peak rate."""


ScheduleConfig = Annotated[object, RegistryUnion("schedule")]


class EarlyStoppingConfig(StrictModel):
    """Stop when a validation metric stops improving."""

    metric: Annotated[str, Field(min_length=1, max_length=128)]
    """`HEAD/METRIC` (e.g. `sentiment/accuracy`) or `loss` (total validation loss)."""
    mode: Literal["max", "min", "auto"] = "auto"
    """Whether larger is better; `auto` picks `min` for losses and errors, `max` otherwise."""
    patience: PositiveInt = 3
    """Epochs without improvement before stopping."""
    min_delta: NonNegFloat = 0.0
    """Smallest change of the metric that counts as an improvement."""


class FixedWeightingConfig(StrictModel):
    """Total loss = Σ weight × loss, with each loss's fixed `weight` (Keras `loss_weights`)."""

    type: Literal["fixed"]


class UncertaintyWeightingConfig(StrictModel):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018): one learned
    log-variance s = log σ² per loss, trained with the model. A regression loss (mse, huber)
    contributes exp(-s)/2 × L + s/2, a classification loss (cross-entropy, nll, binary
    cross-entropy, contrastive) exp(-s) × L + s/2. The total can go negative; the per-head losses
    and effective weights are logged separately."""

    type: Literal["uncertainty"]
    init_log_variance: FiniteFloat = 0.0
    """Starting log-variance s of every loss (0: σ = 1, as in the paper). Each loss's fixed `weight`
    scales it before weighting (a prior)."""


class GradNormWeightingConfig(StrictModel):
    """GradNorm (Chen et al., ICML 2018): learned weights that balance the gradient norms the
    losses cause on the last shared layer (found from the graph: the last node every loss reads),
    pulling faster-learning tasks back. The weights always sum to the number of losses; the fixed
    `weight`s, rescaled to that sum, are their starting values."""

    type: Literal["gradnorm"]
    alpha: NonNegFloat = 1.5
    """Restoring force toward equal training rates (the paper's α; 0 = equal gradient norms)."""
    lr: PositiveFloat = 0.025
    """Learning rate of the weights (their own Adam optimizer)."""
    layer: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """The node whose last layer GradNorm watches; default: the last node every loss reads (from the
    graph). It must be a node every loss reads."""


class DWAWeightingConfig(StrictModel):
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019): each epoch, weight_k =
    K × softmax_k(r_k / T) where r_k = L_k(t-1) / L_k(t-2) is the rate at which loss k fell over
    the last two epochs (epoch-mean training losses); the first two epochs use equal weights. The
    fixed `weight`s act as a prior on the softmax (weight_k ∝ weight × exp(r_k / T))."""

    type: Literal["dwa"]
    temperature: PositiveFloat = 2.0
    """Softmax temperature T (large: weights stay near equal; the paper uses 2)."""


LossWeightingConfig = Annotated[
    Union[FixedWeightingConfig, UncertaintyWeightingConfig, GradNormWeightingConfig, DWAWeightingConfig],
    Field(discriminator="type"),
]
class TrackingConfig(StrictModel):
    """Experiment tracking (off unless `backends` names one; `archspec train --track` overrides it)."""

    backends: list[Literal["tensorboard", "mlflow"]] = []
    """`tensorboard` (event files in `RUN/tensorboard/`) and/or `mlflow` (a run in an MLflow store)."""
    mlflow_uri: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    """MLflow tracking URI, e.g. `sqlite:////srv/mlflow.db` or `http://mlflow:5000`; default: a SQLite
    store `mlflow.db` in the folder that holds the run directory."""
    experiment: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """MLflow experiment name; default: the spec's `name`."""


class TrainingConfig(StrictModel):
    """How to train (Keras `compile`/`fit` defaults where Keras has one)."""

    data: DataConfig = DataConfig()
    """Where the training, validation and test data are."""
    optimizer: OptimizerConfig = AdamConfig(type="adam")
    """The optimizer; Adam with Keras' defaults when left out."""
    schedule: ScheduleConfig = ConstantScheduleConfig(type="constant")
    """The learning-rate schedule; constant when left out."""
    batch_size: Annotated[int, Field(gt=0, le=1_000_000, strict=True)] = 32
    """Rows per forward pass (all processes together); with `grad_accumulation: N` one optimizer
    step sees N × batch_size rows."""
    epochs: Annotated[int, Field(gt=0, le=100_000, strict=True)] = 10
    """Passes over the training split."""
    max_steps: PositiveInt | None = None
    """Stop after this many optimizer steps (overrides `epochs` when reached first)."""
    validation_split: Probability = 0.2
    """Share of the training file held out for validation when no validation file is given."""
    seed: NonNegInt = 0
    """Seeds data splitting, shuffling, initialisation and dropout."""
    grad_clip: PositiveFloat | None = None
    """Clip the global gradient norm to this value."""
    grad_accumulation: Annotated[int, Field(gt=0, le=4096, strict=True)] = 1
    """Micro-batches per optimizer step."""
    mixed_precision: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """`auto` uses bf16 autocast on CUDA when supported, full precision on CPU."""
    on_nonfinite: Literal["error", "skip"] = "error"
    """On a NaN/inf loss: stop with an error naming the head, or skip the step and count it."""
    checkpoint_every: PositiveInt | None = None
    """Also save the `last` checkpoint every N optimizer steps (it is always saved at each epoch end)."""
    early_stopping: EarlyStoppingConfig | None = None
    """Stop when a validation metric stops improving (none by default: train all epochs)."""
    num_workers: NonNegInt | None = None
    """Data loader worker processes that read rows, decode and resize images and tokenize text per
    batch (0: in the training process). Default: 0 for specs without image or text inputs, else
    `min(8, CPUs - 1)`."""
    on_bad_row: Literal["error", "skip"] = "error"
    """A row whose values cannot be used (an unreadable image, a missing label, a line the reader
    cannot split): stop with its file, row and column, or leave it out and count it."""
    fit_rows: PositiveInt | None = None
    """Fit the input preprocessing (statistics, categories, tokenizer) on a seeded sample of this many
    training rows instead of all of them (label maps still read every row)."""
    loss_weighting: LossWeightingConfig = FixedWeightingConfig(type="fixed")
    """How the losses of a multi-task model are combined: `fixed` weights (default), or learned
    by `uncertainty`, `gradnorm` or `dwa`. Effective weights are logged per epoch."""
    tracking: TrackingConfig | None = None
    """Log the run to TensorBoard and/or MLflow (see docs/loop.md)."""
