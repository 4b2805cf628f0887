"""Text → token ids and attention masks: a WordPiece tokenizer trained on the training text, or a
pretrained (Hugging Face) tokenizer from a local directory, or by hub name (downloaded on first use into
the Hugging Face cache; never in offline mode).

Each tokenizer type registers its builder under its spec name (``register_builder("tokenizer", ...)``):
a class with ``fit(cfg, texts, max_length, base_dir, node)`` (from the training split; optionally
``streaming(cfg) -> (update(texts), finish(max_length))`` to be fitted chunk by chunk) and
``load(directory, max_length)`` (from a run), instances with ``kind``, ``vocab_size``, ``pad_id``,
``save(directory)`` and ``encode(texts) -> (ids, mask)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import BuildError, CheckpointError
from ..registry import register_builder

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # [PAD] is id 0


def texts_of(series) -> list[str]:
    """Cell values as strings; a missing cell is the empty string."""
    from .convert import is_missing

    return ["" if is_missing(v) else str(v) for v in series]


@register_builder("tokenizer", "wordpiece")
class WordPieceText:
    """A WordPiece tokenizer (``tokenizers`` library) that adds ``[CLS] … [SEP]`` and pads to ``max_length``."""

    kind = "wordpiece"

    @classmethod
    def fit(cls, cfg, texts, max_length: int, base_dir, node: str) -> "WordPieceText":
        return cls.train(texts, cfg.vocab_size, cfg.lowercase, cfg.min_frequency, max_length)

    @staticmethod
    def streaming(cfg):
        """A streaming fit for the ``text`` input's home: ``(update(texts), finish(max_length))``.

        Word counts grow with the distinct words, never with the rows."""
        counter = WordCounter(cfg.lowercase)
        return counter.update, lambda max_length: WordPieceText.from_counts(counter, cfg.vocab_size,
                                                                            cfg.min_frequency, max_length)

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        tokenizer.enable_truncation(self.max_length)
        tokenizer.enable_padding(length=self.max_length, pad_id=0, pad_token="[PAD]")

    @staticmethod
    def counter(lowercase: bool) -> "WordCounter":
        """A streaming word counter for :meth:`from_counts` (feed it chunks of text)."""
        return WordCounter(lowercase)

    @classmethod
    def train(cls, texts, vocab_size: int, lowercase: bool, min_frequency: int,
              max_length: int) -> "WordPieceText":
        """Train on ``texts`` (an iterable of strings: the training split only), offline.

        The vocabulary is a pure function of the text: ``tokenizers``' own WordPiece trainer breaks
        ties between equally frequent merges in hash-map order, which differs in every process
        (huggingface/tokenizers#1794), so two runs with one seed got different vocabularies. Here
        ``tokenizers`` still normalises, splits and encodes, but the merges are chosen by
        :func:`wordpiece_vocabulary` (most frequent pair first, ties by the pair's text).

        Example:
            >>> t = WordPieceText.train(["a cat", "a dog"] * 3, 100, True, 1, 6)
            >>> t.encode(["A cat"])[0].tolist()[0][:1], t.pad_id
            ([2], 0)
            >>> t.tokenizer.get_vocab() == WordPieceText.train(["a cat", "a dog"] * 3, 100, True, 1, 6).tokenizer.get_vocab()
            True
        """
        counter = WordCounter(lowercase)
        counter.update(texts)
        return cls.from_counts(counter, vocab_size, min_frequency, max_length)

    @classmethod
    def from_counts(cls, counter: "WordCounter", vocab_size: int, min_frequency: int,
                    max_length: int) -> "WordPieceText":
        """The tokenizer for the words a :class:`WordCounter` has seen."""
        from tokenizers import Tokenizer, models, processors

        vocab = wordpiece_vocabulary(counter.counts, vocab_size, min_frequency, SPECIAL_TOKENS)
        tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                         continuing_subword_prefix="##"))
        _bert_pipeline(tok, counter.lowercase)
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
        return cls(tok, max_length)

    @classmethod
    def load(cls, directory, max_length: int) -> "WordPieceText":
        from tokenizers import Tokenizer

        path = Path(directory) / "tokenizer.json"
        try:
            return cls(Tokenizer.from_file(str(path)), max_length)
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise CheckpointError(f"{path}: cannot load the saved tokenizer ({exc}) — the run directory is "
                                  "incomplete or corrupt; train again") from None

    def save(self, directory) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "tokenizer.json.tmp"
        self.tokenizer.save(str(tmp))
        os.replace(tmp, directory / "tokenizer.json")

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int:
        return 0

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, mask)``, both int64 ``(n, max_length)``."""
        encs = self.tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encs], dtype=np.int64).reshape(len(texts), self.max_length)
        mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64).reshape(len(texts), self.max_length)
        return ids, mask


def _bert_pipeline(tok, lowercase: bool) -> None:
    from tokenizers import decoders, normalizers, pre_tokenizers

    # BertNormalizer strips accents exactly when it lower-cases (strip_accents=None follows lowercase).
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()


class WordCounter:
    """Word frequencies of a text stream, split the way the WordPiece tokenizer splits (BERT rules).

    Memory grows with the number of distinct words, not with the number of rows.
    """

    def __init__(self, lowercase: bool):
        from collections import Counter

        from tokenizers import Tokenizer, models

        self.lowercase = lowercase
        self.counts: Counter = Counter()
        self._tok = Tokenizer(models.WordPiece({"[UNK]": 0}, unk_token="[UNK]"))
        _bert_pipeline(self._tok, lowercase)

    def update(self, texts) -> None:
        norm, pre = self._tok.normalizer, self._tok.pre_tokenizer
        for text in texts:
            self.counts.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(text)))


def wordpiece_vocabulary(word_counts, vocab_size: int, min_frequency: int, specials=SPECIAL_TOKENS) -> list[str]:
    """A WordPiece vocabulary learned by byte-pair merges, deterministically.

    What ``tokenizers``' ``WordPieceTrainer`` does (BPE merges over words split into characters,
    ``##`` marking a piece inside a word, stop at ``vocab_size`` or when no pair occurs
    ``min_frequency`` times), with one difference: among equally frequent pairs the one whose text
    sorts first is merged, so the result never depends on the process.

    Returns:
        the tokens in id order: ``specials``, then the alphabet (most frequent first), then merges
        in the order they were made.

    Example:
        >>> wordpiece_vocabulary({"low": 5, "lower": 2, "newest": 6}, 18, 2, ["[UNK]"])[-4:]
        ['newest', 'low', '##wer', 'lower']
    """
    import heapq
    from collections import Counter, defaultdict

    items = sorted(word_counts.items())
    seqs = [[w[0]] + ["##" + ch for ch in w[1:]] for w, _ in items if w]
    freq = [c for w, c in items if w]
    symbols: Counter = Counter()
    for seq, c in zip(seqs, freq):
        for sym in seq:
            symbols[sym] += c
    vocab = list(specials)
    known = set(vocab)
    for sym in sorted(symbols, key=lambda s: (-symbols[s], s)):
        if sym not in known:
            vocab.append(sym)
            known.add(sym)
    pairs: dict = defaultdict(int)
    where: dict = defaultdict(set)
    for i, (seq, c) in enumerate(zip(seqs, freq)):
        for p in zip(seq, seq[1:]):
            pairs[p] += c
            where[p].add(i)
    heap = [(-c, a, b) for (a, b), c in pairs.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        neg, a, b = heapq.heappop(heap)
        count = pairs.get((a, b), 0)
        if count != -neg or count == 0:
            continue  # a stale entry: the pair's current count has its own entry
        if count < min_frequency:
            break
        new = a + (b[2:] if b.startswith("##") else b)
        changed = set()
        for i in sorted(where.pop((a, b), ())):
            seq, c = seqs[i], freq[i]
            merged, j = [], 0
            while j < len(seq):
                if j + 1 < len(seq) and seq[j] == a and seq[j + 1] == b:
                    merged.append(new)
                    j += 2
                else:
                    merged.append(seq[j])
                    j += 1
            if len(merged) == len(seq):
                continue
            for p in zip(seq, seq[1:]):
                pairs[p] -= c
                changed.add(p)
            for p in zip(merged, merged[1:]):
                pairs[p] += c
                where[p].add(i)
                changed.add(p)
            seqs[i] = merged
        pairs.pop((a, b), None)
        for p in sorted(changed):
            if pairs.get(p, 0) > 0:
                heapq.heappush(heap, (-pairs[p], *p))
        if new not in known:
            vocab.append(new)
            known.add(new)
    return vocab


@register_builder("tokenizer", "whitespace")
class WhitespaceText(WordPieceText):
    """A word-level tokenizer (``tokenizers``' ``WordLevel``): one id per whitespace-separated token.

    For texts that are lists of symbols, such as the ids of the items a user interacted with. The
    vocabulary is ``[PAD]`` (id 0), ``[UNK]``, then the training tokens by falling count (ties by
    text), so it is a pure function of the text. Padded and truncated (on the right) to
    ``max_length``; nothing is added around the tokens.

    Example:
        >>> t = WhitespaceText.train(["318 296", "318 50", "318"], 100, False, 1, 3)
        >>> t.encode(["318 7 296", ""])[0].tolist(), t.vocab_size
        ([[2, 1, 3], [0, 0, 0]], 5)
    """

    kind = "whitespace"

    @staticmethod
    def streaming(cfg):
        """``(update(texts), finish(max_length))``: token counts grow with the distinct tokens only."""
        from collections import Counter

        counts: Counter = Counter()

        def update(texts):
            for text in texts:
                counts.update((text.lower() if cfg.lowercase else text).split())

        return update, lambda max_length: WhitespaceText.from_token_counts(
            counts, cfg.vocab_size, cfg.lowercase, cfg.min_frequency, max_length)

    @classmethod
    def train(cls, texts, vocab_size: int, lowercase: bool, min_frequency: int,
              max_length: int) -> "WhitespaceText":
        """Fit on ``texts`` (the training split only)."""
        from collections import Counter

        counts = Counter(t for text in texts for t in (text.lower() if lowercase else text).split())
        return cls.from_token_counts(counts, vocab_size, lowercase, min_frequency, max_length)

    @classmethod
    def from_token_counts(cls, counts, vocab_size: int, lowercase: bool, min_frequency: int,
                          max_length: int) -> "WhitespaceText":
        """The tokenizer for the most frequent tokens of ``counts`` (a token → count mapping)."""
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

        specials = ["[PAD]", "[UNK]"]
        kept = [t for t, c in sorted(counts.items(), key=lambda tc: (-tc[1], tc[0]))
                if c >= min_frequency and t not in specials]
        vocab = specials + kept[:max(0, vocab_size - len(specials))]
        tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
        if lowercase:
            tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return cls(tok, max_length)


@register_builder("tokenizer", "pretrained")
class PretrainedText:
    """A Hugging Face tokenizer (``AutoTokenizer``): a local directory, or a hub name (cached on first use)."""

    kind = "pretrained"
    needs_texts = False  # nothing is fitted: the fit pass does not read the text column

    @classmethod
    def fit(cls, cfg, texts: list[str], max_length: int, base_dir, node: str) -> "PretrainedText":
        return cls.from_name(cfg.name, base_dir, max_length, node)

    def __init__(self, tokenizer, max_length: int):
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise BuildError("the pretrained tokenizer has neither a padding nor an end-of-sequence token, "
                                 "so batches cannot be padded — use a tokenizer with a pad token")
            tokenizer.pad_token = tokenizer.eos_token  # GPT-style tokenizers: pad with EOS (masked out)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)

    @classmethod
    def from_name(cls, name: str, base_dir, max_length: int, node: str = "inputs") -> "PretrainedText":
        """Load by hub name (downloaded into the Hugging Face cache on first use) or from a local directory
        (relative to the spec).

        Raises:
            BuildError: the tokenizer cannot be loaded (offline and not cached, unknown name, no
                network); the message says how to provide it.
        """
        local = name.startswith((".", "/", "~")) or os.sep in name and Path(name).expanduser().exists()
        if local:
            p = Path(name).expanduser()
            if not p.is_absolute() and base_dir is not None:
                p = Path(base_dir) / p
            if not p.is_dir():
                raise BuildError(f"{node}.tokenizer.name: no directory {p} — save the tokenizer there "
                                 "(`tokenizer.save_pretrained(dir)`), or fix the path (relative to the spec file)")
            return cls(_auto(str(p), node, name), max_length)
        return cls(_auto(name, node, name), max_length)

    @classmethod
    def load(cls, directory, max_length: int) -> "PretrainedText":
        try:
            return cls(_auto(str(directory), "saved", str(directory)), max_length)
        except BuildError as exc:
            raise CheckpointError(f"{directory}: cannot load the saved tokenizer — the run directory is "
                                  f"incomplete or corrupt ({exc})") from None

    def save(self, directory) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(directory))

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, mask)``, both int64 ``(n, max_length)``."""
        out = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_length,
                             return_attention_mask=True)
        n = len(texts)
        ids = np.asarray(out["input_ids"], dtype=np.int64).reshape(n, self.max_length)
        mask = np.asarray(out["attention_mask"], dtype=np.int64).reshape(n, self.max_length)
        return ids, mask


def _auto(ref: str, node: str, name: str):
    from .. import hub

    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise BuildError(f"{node}.tokenizer: a pretrained tokenizer needs `transformers` — install "
                         "archspec[torch]") from None
    try:
        # a hub name is downloaded on first use into the Hugging Face cache; offline, local_files_only
        # fails at once (never waits for retries). trust_remote_code is never taken from a spec.
        return AutoTokenizer.from_pretrained(ref, local_files_only=hub.offline(), trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if hub.is_hub_name(ref):
            raise BuildError(f"{node}.tokenizer: cannot load pretrained tokenizer '{name}': "
                             f"{hub.load_failure(name, exc, 'tokenizer')}, or use `type: wordpiece`") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BuildError(
            f"{node}.tokenizer: cannot load pretrained tokenizer '{name}' ({first[:300]}) — put its "
            "files (tokenizer.json, tokenizer_config.json, ...) in that directory (`tokenizer.save_pretrained(dir)`), "
            "or use `type: wordpiece`") from None
