"""Tokenizers turning cleaned report text into ids and back.

Two kinds behind one protocol (`Tokenizer`):

* `SentencePieceTokenizer` (``kind="sentencepiece"``): a unigram or BPE model trained on the training reports,
  case kept; the default for drafting clinical text.
* `WordTokenizer` (``kind="word"``): R2Gen's whitespace word vocabulary (train-split words seen >= threshold times,
  sorted, plus ``<unk>``), for reproducing R2Gen-style baselines.

Both reserve the same special ids at the start (pad=0, unk=1, bos=2, eos=3, sep=4), so models, losses and beam
search never need to know which kind they are talking to. ``encode`` never adds bos/eos: the model owns that.
A tokenizer lives in a folder with a ``tokenizer.json`` naming its kind; `load_tokenizer` dispatches on it, so a
checkpoint carries its own tokenizer.

The pure R2Gen helpers at the bottom (`r2gen_vocabulary`, `map_oov`, `r2gen_reference`) rebuild exactly the
reference strings R2Gen scores against, for the evaluator.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from reportgen.errors import CheckpointError, ConfigError, DataError
from reportgen.text.clean import clean_report

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "R2GEN_MAX_SEQ_LENGTH",
    "R2GEN_THRESHOLDS",
    "SEP_ID",
    "SEP_TOKEN",
    "TOKENIZER_JSON",
    "UNK_ID",
    "UNK_TOKEN",
    "SentencePieceTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "decode_report",
    "encode_report",
    "load_tokenizer",
    "map_oov",
    "r2gen_reference",
    "r2gen_vocabulary",
]

#: Separates findings from impression inside one target sequence.
SEP_TOKEN = "<impression>"
UNK_TOKEN = "<unk>"
PAD_ID, UNK_ID, BOS_ID, EOS_ID, SEP_ID = 0, 1, 2, 3, 4
_SPECIAL_PIECES: tuple[str, ...] = ("<pad>", UNK_TOKEN, "<s>", "</s>", SEP_TOKEN)

TOKENIZER_JSON = "tokenizer.json"
_SPM_MODEL = "tokenizer.model"

#: R2Gen's word-count thresholds (``--threshold``) per dataset; other names use the MIMIC value, as R2Gen does.
R2GEN_THRESHOLDS: dict[str, int] = {"iu_xray": 3, "mimic_cxr": 10}
#: R2Gen's ``--max_seq_length`` per dataset (counts the leading BOS, so 59 / 99 words survive).
R2GEN_MAX_SEQ_LENGTH: dict[str, int] = {"iu_xray": 60, "mimic_cxr": 100}


@runtime_checkable
class Tokenizer(Protocol):
    """What models, training and inference may rely on, whatever the tokenizer kind."""

    kind: str

    @property
    def pad_id(self) -> int: ...

    @property
    def unk_id(self) -> int: ...

    @property
    def bos_id(self) -> int: ...

    @property
    def eos_id(self) -> int: ...

    @property
    def sep_id(self) -> int: ...

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without bos/eos; the literal `SEP_TOKEN` in ``text`` maps to ``sep_id``."""
        ...

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, skipping pad/bos/eos/sep."""
        ...

    def save(self, directory: str | Path) -> Path:
        """Write the tokenizer into ``directory`` (created if needed); returns the folder."""
        ...


class _SpecialIds:
    """The fixed special ids shared by both kinds (read-only properties, so the protocol is satisfied)."""

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    @property
    def sep_id(self) -> int:
        return SEP_ID

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids `decode` drops: pad, bos, eos and sep (unk stays visible as a token)."""
        return frozenset({PAD_ID, BOS_ID, EOS_ID, SEP_ID})


def _write_json(directory: str | Path, payload: dict) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / TOKENIZER_JSON).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return directory


def _read_json(directory: str | Path) -> dict:
    path = Path(directory) / TOKENIZER_JSON
    if not path.is_file():
        raise CheckpointError(f"no {TOKENIZER_JSON} in {Path(directory)}; save a tokenizer there first")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); re-save the tokenizer") from exc
    if not isinstance(payload, dict) or "kind" not in payload:
        raise CheckpointError(f"{path} has no 'kind'; re-save the tokenizer")
    return payload


# --------------------------------------------------------------------------------------------------------------------
# SentencePiece
# --------------------------------------------------------------------------------------------------------------------

_SPM_MODEL_TYPES = ("unigram", "bpe")
# SentencePiece's own complaints, parsed to clamp or explain instead of surfacing a C++ check failure.
_TOO_HIGH = re.compile(r"value <= (\d+)")
_TOO_LOW = re.compile(r"smaller than required_chars\. (\d+) vs (\d+)")


class SentencePieceTokenizer(_SpecialIds):
    """A trained SentencePiece model (unigram or BPE) with the project's fixed special ids.

    No normalisation beyond SentencePiece's ``nmt_nfkc`` happens here: clean text first (`clean_report`); case is
    kept. Digits are split into single pieces so measurements ("1.5 cm") generalise across values.

    Attributes:
        kind: ``"sentencepiece"``.
        model_proto: The serialized SentencePiece model (what ``tokenizer.model`` holds).
    """

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, *, model_type: str = "unigram") -> None:
        import sentencepiece as spm  # local import: no work or heavy import at module import time

        self.model_proto = model_proto
        self.model_type = model_type
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        expected = {PAD_ID: "<pad>", UNK_ID: UNK_TOKEN, BOS_ID: "<s>", EOS_ID: "</s>", SEP_ID: SEP_TOKEN}
        for idx, piece in expected.items():
            if idx >= self._sp.get_piece_size() or self._sp.id_to_piece(idx) != piece:
                raise CheckpointError(f"sentencepiece model does not have {piece!r} at id {idx}; retrain it")

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 2000,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        seed: int = 0,
    ) -> SentencePieceTokenizer:
        """Train on (already cleaned) report texts, in memory and deterministically.

        Args:
            texts: Training-split reports (one string each; newlines allowed). Empty strings are skipped.
            vocab_size: Requested number of pieces including the 5 special ones. A soft limit: a tiny corpus
                that cannot fill it yields a smaller vocabulary instead of an error.
            model_type: ``"unigram"`` or ``"bpe"``.
            character_coverage: Fraction of characters covered by single-character pieces; 1.0 keeps every
                character seen in training (rare symbols would otherwise become unk).
            seed: Seed for SentencePiece's random generator (training is single-threaded and unshuffled, so the
                same texts in the same order give the same model).

        Raises:
            ConfigError: Unknown model type, or ``vocab_size`` below the number of distinct characters.
            DataError: No non-empty text.
        """
        import sentencepiece as spm

        if model_type not in _SPM_MODEL_TYPES:
            raise ConfigError(f"unknown sentencepiece model_type {model_type!r}; use one of {_SPM_MODEL_TYPES}")
        corpus = [t for t in texts if t and t.strip()]
        if not corpus:
            raise DataError("cannot train a tokenizer on zero non-empty reports; check the training split")
        spm.set_random_generator_seed(seed)
        options = dict(
            model_type=model_type,
            character_coverage=character_coverage,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            user_defined_symbols=[SEP_TOKEN],
            unk_surface=UNK_TOKEN,
            hard_vocab_limit=False,
            split_digits=True,
            num_threads=1,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            max_sentence_length=1 << 16,
            minloglevel=2,
        )
        size = int(vocab_size)
        for _ in range(3):  # at most: too high -> clamped once; anything else is a real error
            writer = io.BytesIO()
            try:
                spm.SentencePieceTrainer.train(
                    sentence_iterator=iter(corpus), model_writer=writer, vocab_size=size, **options
                )
            except RuntimeError as exc:
                message = str(exc)
                if (low := _TOO_LOW.search(message)) is not None:
                    raise ConfigError(
                        f"vocab_size {size} is smaller than the {low.group(2)} distinct characters and special "
                        f"pieces of the corpus; use vocab_size >= {low.group(2)}"
                    ) from exc
                if (high := _TOO_HIGH.search(message)) is not None and int(high.group(1)) < size:
                    size = int(high.group(1))
                    continue
                raise
            return cls(writer.getvalue(), model_type=model_type)
        raise ConfigError(f"sentencepiece could not train with vocab_size={vocab_size}; try a smaller value")

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text, out_type=int))

    def decode(self, ids: Iterable[int]) -> str:
        special = self.special_ids
        return self._sp.decode([int(i) for i in ids if int(i) not in special])

    def id_to_piece(self, idx: int) -> str:
        """The piece string of one id (for debugging and attention plots)."""
        return self._sp.id_to_piece(int(idx))

    def save(self, directory: str | Path) -> Path:
        directory = _write_json(
            directory,
            {
                "kind": self.kind,
                "model_file": _SPM_MODEL,
                "model_type": self.model_type,
                "vocab_size": self.vocab_size,
                "sep_token": SEP_TOKEN,
                "special_ids": {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID, "sep": SEP_ID},
            },
        )
        (directory / _SPM_MODEL).write_bytes(self.model_proto)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> SentencePieceTokenizer:
        """Load a tokenizer written by `save`.

        Raises:
            CheckpointError: Missing/invalid files, or a folder holding another tokenizer kind.
        """
        payload = _read_json(directory)
        if payload["kind"] != cls.kind:
            raise CheckpointError(f"{Path(directory)} holds a {payload['kind']!r} tokenizer, not sentencepiece")
        model_path = Path(directory) / payload.get("model_file", _SPM_MODEL)
        if not model_path.is_file():
            raise CheckpointError(f"{model_path} is missing; copy the whole tokenizer folder")
        return cls(model_path.read_bytes(), model_type=payload.get("model_type", "unigram"))


# --------------------------------------------------------------------------------------------------------------------
# R2Gen word level
# --------------------------------------------------------------------------------------------------------------------


def _default_threshold(dataset: str) -> int:
    return R2GEN_THRESHOLDS.get(dataset, R2GEN_THRESHOLDS["mimic_cxr"])


def r2gen_vocabulary(texts: Iterable[str], threshold: int | None = None, dataset: str = "iu_xray") -> list[str]:
    """R2Gen's word vocabulary: words of the r2gen-cleaned train reports seen >= ``threshold`` times, plus '<unk>'.

    Cleaning is token-wise idempotent, so already r2gen-cleaned texts give the same vocabulary.

    Args:
        texts: Train-split reports (R2Gen uses ``annotation.json``'s ``report`` field).
        threshold: Minimum count; ``None`` picks R2Gen's default for ``dataset`` (IU 3, MIMIC 10).
        dataset: Selects the r2gen cleaner and default threshold.

    Returns:
        The sorted list (Python string order, as R2Gen's ``vocab.sort()``); R2Gen's id of a word is its index + 1.
    """
    threshold = _default_threshold(dataset) if threshold is None else int(threshold)
    counter: Counter[str] = Counter()
    for text in texts:
        counter.update(clean_report(text, mode="r2gen", dataset=dataset).split())
    return sorted([word for word, count in counter.items() if count >= threshold] + [UNK_TOKEN])


def map_oov(text: str, vocab: set[str] | frozenset[str]) -> str:
    """Replace every whitespace-separated word not in ``vocab`` by '<unk>' and join with single spaces.

    This is what R2Gen's ``decode(tokenizer(report))`` does to an already r2gen-cleaned reference.
    """
    return " ".join(word if word in vocab else UNK_TOKEN for word in text.split())


def r2gen_reference(
    text: str, vocab: set[str] | frozenset[str], max_tokens: int | None = None, dataset: str = "iu_xray"
) -> str:
    """The ground-truth string R2Gen scores a prediction against.

    R2Gen tokenizes ``[0] + ids + [0]``, truncates to ``max_seq_length`` (the leading 0 counts), and decodes
    ``reports_ids[:, 1:]`` until the first 0. So the reference is the r2gen-cleaned report, OOV words as '<unk>',
    cut to its first ``max_seq_length - 1`` words (the final " ." is lost when a long report is cut).

    Args:
        text: Raw reference report.
        vocab: The training vocabulary (`r2gen_vocabulary`).
        max_tokens: R2Gen's ``--max_seq_length`` (IU 60, MIMIC 100); ``None`` uses that default for
            ``dataset``; 0 or a negative value disables truncation.
        dataset: Selects the r2gen cleaner and default length.
    """
    if max_tokens is None:
        max_tokens = R2GEN_MAX_SEQ_LENGTH.get(dataset, R2GEN_MAX_SEQ_LENGTH["mimic_cxr"])
    words = map_oov(clean_report(text, mode="r2gen", dataset=dataset), vocab).split()
    if max_tokens > 0:
        words = words[: max(max_tokens - 1, 0)]
    return " ".join(words)


class WordTokenizer(_SpecialIds):
    """R2Gen's word-level tokenizer with the project's special ids in front.

    Ids: 0 ``<pad>``, 1 ``<unk>``, 2 ``<s>``, 3 ``</s>``, 4 `SEP_TOKEN`, then R2Gen's sorted words (``<unk>`` not
    repeated). ``encode`` splits on whitespace and does NOT clean: pass ``clean_report(text, mode="r2gen")`` output
    (cleaning inside would delete the '<' '>' of `SEP_TOKEN`). ``decode`` joins words with single spaces and keeps
    '<unk>' visible, as R2Gen's decode does.

    Attributes:
        kind: ``"word"``.
        words: The vocabulary words after the special tokens, sorted.
        dataset: Dataset whose R2Gen cleaner/threshold built the vocabulary.
        threshold: Minimum train count used.
    """

    kind = "word"

    def __init__(self, words: Sequence[str], *, dataset: str = "iu_xray", threshold: int | None = None) -> None:
        self.words = [w for w in words if w not in _SPECIAL_PIECES]
        self.dataset = dataset
        self.threshold = _default_threshold(dataset) if threshold is None else int(threshold)
        self._itos = list(_SPECIAL_PIECES) + self.words
        self._stoi = {token: idx for idx, token in enumerate(self._itos)}

    @classmethod
    def build(cls, texts: Iterable[str], threshold: int | None = None, dataset: str = "iu_xray") -> WordTokenizer:
        """Build R2Gen's vocabulary from train reports (raw or r2gen-cleaned); see `r2gen_vocabulary`."""
        threshold = _default_threshold(dataset) if threshold is None else int(threshold)
        return cls(r2gen_vocabulary(texts, threshold, dataset), dataset=dataset, threshold=threshold)

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    @property
    def vocabulary(self) -> frozenset[str]:
        """R2Gen's vocabulary as a set (words plus '<unk>'), ready for `map_oov` / `r2gen_reference`."""
        return frozenset(self.words) | {UNK_TOKEN}

    def encode(self, text: str) -> list[int]:
        return [self._stoi.get(word, UNK_ID) for word in text.split()]

    def decode(self, ids: Iterable[int]) -> str:
        special = self.special_ids
        return " ".join(self._itos[int(i)] for i in ids if int(i) not in special)

    def save(self, directory: str | Path) -> Path:
        return _write_json(
            directory,
            {
                "kind": self.kind,
                "dataset": self.dataset,
                "threshold": self.threshold,
                "sep_token": SEP_TOKEN,
                "special_tokens": list(_SPECIAL_PIECES),
                "words": self.words,
            },
        )

    @classmethod
    def load(cls, directory: str | Path) -> WordTokenizer:
        """Load a tokenizer written by `save`.

        Raises:
            CheckpointError: Missing/invalid file, or a folder holding another tokenizer kind.
        """
        payload = _read_json(directory)
        if payload["kind"] != cls.kind:
            raise CheckpointError(f"{Path(directory)} holds a {payload['kind']!r} tokenizer, not word")
        if not isinstance(payload.get("words"), list):
            raise CheckpointError(f"{Path(directory) / TOKENIZER_JSON} has no 'words' list; re-save the tokenizer")
        return cls(payload["words"], dataset=payload.get("dataset", "iu_xray"), threshold=payload.get("threshold"))


# --------------------------------------------------------------------------------------------------------------------
# Loading and report-level helpers
# --------------------------------------------------------------------------------------------------------------------

_LOADERS: dict[str, Callable[[str | Path], Tokenizer]] = {
    SentencePieceTokenizer.kind: SentencePieceTokenizer.load,
    WordTokenizer.kind: WordTokenizer.load,
}


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load whichever tokenizer kind ``directory/tokenizer.json`` names.

    Raises:
        CheckpointError: Missing/invalid ``tokenizer.json`` or an unknown kind.
    """
    kind = _read_json(directory)["kind"]
    if kind not in _LOADERS:
        raise CheckpointError(f"unknown tokenizer kind {kind!r} in {Path(directory)}; known: {sorted(_LOADERS)}")
    return _LOADERS[kind](directory)


def encode_report(tok: Tokenizer, findings: str | None, impression: str | None = None) -> list[int]:
    """Ids of one target sequence: findings, then ``sep_id`` and the impression when one is given.

    No bos/eos are added. ``impression=None`` means "no impression section" (no separator); an empty string
    still emits the separator, so the model learns that the impression is empty.
    """
    ids = tok.encode(findings or "")
    if impression is not None:
        ids = ids + [tok.sep_id] + tok.encode(impression)
    return ids


def decode_report(tok: Tokenizer, ids: Iterable[int]) -> tuple[str, str]:
    """Split a generated id sequence into ``(findings, impression)``.

    A leading bos is ignored and decoding stops at the first eos (beam outputs are often eos + padding). The
    first ``sep_id`` splits findings from impression; later separators are dropped. Without a separator the whole
    text is findings and the impression is "".
    """
    seq = [int(i) for i in ids]
    if seq and seq[0] == tok.bos_id:
        seq = seq[1:]
    if tok.eos_id in seq:
        seq = seq[: seq.index(tok.eos_id)]
    if tok.sep_id not in seq:
        return tok.decode(seq), ""
    cut = seq.index(tok.sep_id)
    return tok.decode(seq[:cut]), tok.decode(seq[cut + 1 :])
