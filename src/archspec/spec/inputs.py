"""Inputs: columns of the data set and what the model receives from them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from ..registry import register_config
from ..shapes import FEATURES, IMAGE, INDEX, TOKENS, Shape
from .base import Name, Node, PositiveInt, RegistryUnion, StrictModel


@register_config("tokenizer", "wordpiece")
class WordPieceTokenizerConfig(StrictModel):
    """A WordPiece tokenizer trained on the training split's text (offline, with `tokenizers`)."""

    type: Literal["wordpiece"] = "wordpiece"
    vocab_size: PositiveInt = 8000
    """Largest vocabulary to learn, special tokens included."""
    lowercase: bool = True
    """Lower-case and strip accents before splitting."""
    min_frequency: PositiveInt = 2
    """Minimum count of a merge to enter the vocabulary."""


@register_config("tokenizer", "pretrained")
class PretrainedTokenizerConfig(StrictModel):
    """The tokenizer of a pretrained model: a hub name or a local directory."""

    type: Literal["pretrained"] = "pretrained"
    name: Annotated[str, Field(min_length=1, max_length=4096)]
    """Hub model name (e.g. `bert-base-uncased`) or path to a local directory."""


@register_config("tokenizer", "whitespace")
class WhitespaceTokenizerConfig(StrictModel):
    """Word-level: each whitespace-separated token is one id, e.g. a list of item ids such as a user's
    history (`318 296 2571`). The vocabulary is the training split's most frequent tokens; a token
    outside it is `[UNK]`. No `[CLS]`/`[SEP]` are added and an empty text is all padding."""

    type: Literal["whitespace"] = "whitespace"
    vocab_size: PositiveInt = 8000
    """Largest vocabulary (most frequent tokens first, ties by text), `[PAD]` and `[UNK]` included."""
    lowercase: bool = False
    """Lower-case the text before splitting."""
    min_frequency: PositiveInt = 1
    """Minimum count of a token in the training text to enter the vocabulary."""


TokenizerConfig = Annotated[object, RegistryUnion("tokenizer")]


class InputNode(Node):
    section = "inputs"


@register_config("input", "text")
class TextInputConfig(InputNode):
    """Text from one column, tokenized to int64 ids `(B, max_length)` plus an attention mask."""

    type: Literal["text"]
    column: Name
    """Data column holding the text."""
    max_length: Annotated[int, Field(gt=0, le=8192, strict=True)] = 128
    """Tokens per example after truncation and padding."""
    tokenizer: TokenizerConfig = WordPieceTokenizerConfig()
    """How text becomes ids: `wordpiece` (trained on the training text), `whitespace` (one id per
    whitespace-separated token, e.g. item ids) or `pretrained`."""

    def infer(self, ins, ctx) -> Shape:
        return Shape(TOKENS, (self.max_length,), "int64")


@register_config("input", "image")
class ImageInputConfig(InputNode):
    """Images read from file paths in one column, resized to `size`, as float `(B, C, H, W)`."""

    type: Literal["image"]
    column: Name
    """Data column holding image file paths (relative to the data file)."""
    size: Annotated[list[Annotated[int, Field(gt=0, le=4096, strict=True)]], Field(min_length=2, max_length=2)] = [224, 224]
    """Height and width after resizing."""
    channels: Literal[1, 3] = 3
    """1 for grayscale, 3 for RGB."""
    normalize: Literal["imagenet", "unit", "none"] = "imagenet"
    """`unit` scales pixels to [0, 1]; `imagenet` also standardises with ImageNet mean/std."""

    def infer(self, ins, ctx) -> Shape:
        return Shape(IMAGE, (self.channels, self.size[0], self.size[1]))


@register_config("input", "numeric")
class NumericInputConfig(InputNode):
    """Numeric (tabular) columns as a float vector `(B, len(columns))`."""

    type: Literal["numeric"]
    columns: Annotated[list[Name], Field(min_length=1)]
    """Data columns, in order."""
    normalize: Literal["standard", "minmax", "none"] = "standard"
    """Fitted on the training split only: `standard` (zero mean, unit variance) or `minmax`."""

    @field_validator("columns")
    @classmethod
    def _unique(cls, columns):
        dup = sorted({c for c in columns if columns.count(c) > 1})
        if dup:
            raise ValueError(f"columns listed twice: {', '.join(dup)} — list each column once")
        return columns

    def infer(self, ins, ctx) -> Shape:
        return Shape(FEATURES, (len(self.columns),))


@register_config("input", "categorical")
class CategoricalInputConfig(InputNode):
    """One categorical column as an int64 index `(B,)`; index 0 is reserved for unseen values."""

    type: Literal["categorical"]
    column: Name
    """Data column holding the category."""
    categories: Annotated[list[str], Field(min_length=1)] | None = None
    """The categories, if known in advance; otherwise the vocabulary is fitted on the training split."""
    max_categories: Annotated[int, Field(gt=0, le=10_000_000, strict=True)] = 1000
    """Vocabulary cap when fitted (most frequent first); ignored when `categories` is given."""

    @property
    def cardinality(self) -> int:
        """Embedding rows needed: every category plus one for unseen values."""
        return (len(self.categories) if self.categories else self.max_categories) + 1

    def infer(self, ins, ctx) -> Shape:
        return Shape(INDEX, (), "int64")


@register_config("input", "vector")
class VectorInputConfig(InputNode):
    """A precomputed feature vector (e.g. an embedding computed elsewhere) of declared width."""

    type: Literal["vector"]
    column: Name
    """Data column holding a list of floats per row (or a prefix: columns `name_0 … name_{width-1}`)."""
    width: Annotated[int, Field(gt=0, le=1_000_000, strict=True)]
    """Length of every vector."""

    def infer(self, ins, ctx) -> Shape:
        return Shape(FEATURES, (self.width,))
