"""Reference systems for `reportgen benchmark`: the floors and the bound a trained model is read against.

A report-generation score means little alone: IU X-Ray's most frequent training report already
scores a respectable BLEU because most studies are normal. Every benchmark therefore runs the
model next to:

* **most_frequent**: the mode of the cleaned training reports, copied to every study (a "normal"
  prior; it needs no images and no checkpoint).
* **nearest_neighbour**: the training report of the closest training study by cosine similarity of
  the model's pooled image embedding (`Predictor.embed`): retrieval with the model's own encoder,
  the usual retrieval floor of the literature.
* **label_oracle**: the decoder conditioned on the *reference's* CheXpert labels
  (`Predictor.generate_from_labels`): what the decoder could write if the findings head were
  perfect, i.e. an upper bound of the text side on its own. Works without images.
* **model**: the checkpoint end to end (images -> labels -> text).

Systems are registered by name (`register_system`) and share one small interface (`System`), so the
benchmark loop is the same for all of them. The pure pieces (`most_frequent_report`,
`cosine_nearest`, `reference_labels`) are what the tests pin down.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from reportgen.errors import DataError

if TYPE_CHECKING:
    from reportgen.data.datasets import StudyRecord
    from reportgen.inference.predictor import Predictor


# ------------------------------------------------------------------------------------------- pure parts


def join_report(findings: str | None, impression: str | None) -> str:
    """One report string: findings, then " " + impression when there is one (what every system is scored on)."""
    parts = [p.strip() for p in (findings, impression) if p and p.strip()]
    return " ".join(parts)


def record_report(record: StudyRecord) -> str:
    """The reference text of a study: its findings and impression joined (see `join_report`)."""
    return join_report(record.findings, record.impression)


def most_frequent_report(reports: Sequence[str], clean: Callable[[str], str] | None = None) -> str:
    """The most frequent report after cleaning; ties go to the lexicographically smallest text.

    Cleaning first matters: IU X-Ray's normal reports differ in spacing and punctuation, and counting
    raw strings would split one "normal" report into several rarer ones. The tie rule depends only on
    the texts, not on their order, so the baseline is the same however the split is shuffled.

    Args:
        reports: Training reports.
        clean: Text normaliser applied before counting (default: whitespace collapsing only).

    Raises:
        DataError: No non-empty report to count.
    """
    clean = clean or (lambda t: " ".join(t.split()))
    counts = Counter(c for c in (clean(r) for r in reports if r) if c.strip())
    if not counts:
        raise DataError("most_frequent baseline: the training split has no non-empty report")
    best = max(counts.values())
    return min(text for text, n in counts.items() if n == best)


def cosine_nearest(queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of the most cosine-similar row of `keys` for each row of `queries` (ties: the lowest index).

    Args:
        queries: (n, d) embeddings.
        keys: (m, d) embeddings, m >= 1.

    Returns:
        int64 (n,) indices into `keys`.
    """
    q = np.asarray(queries, dtype=np.float64)
    k = np.asarray(keys, dtype=np.float64)
    if q.ndim != 2 or k.ndim != 2 or q.shape[1] != k.shape[1] or len(k) == 0:
        raise ValueError(f"need (n, d) queries and (m>=1, d) keys, got {q.shape} and {k.shape}")
    # A zero vector has no direction: its similarity is 0 to everything instead of NaN.
    qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    kn = k / np.maximum(np.linalg.norm(k, axis=1, keepdims=True), 1e-12)
    return np.argmax(qn @ kn.T, axis=1).astype(np.int64)


def reference_labels(
    records: Sequence[StudyRecord], labeler: Callable[[Sequence[str]], np.ndarray] | None = None
) -> np.ndarray:
    """CheXpert labels (n, 14) of the references: the record's own labels, else the labeler on its report.

    Records carrying labels (manifest, CheXbert CSV) keep them; the others are labelled in one call
    with `labeler` (default `reportgen.eval.labeler.label_reports`), the same labeler CE uses.
    """
    from reportgen.constants import OBSERVATIONS

    out = np.full((len(records), len(OBSERVATIONS)), np.nan, dtype=np.float32)
    todo = [i for i, r in enumerate(records) if r.labels is None]
    for i, r in enumerate(records):
        if r.labels is not None:
            out[i] = r.labels
    if todo:
        if labeler is None:
            from reportgen.eval.labeler import label_reports as labeler
        out[todo] = np.asarray(labeler([record_report(records[i]) for i in todo]), dtype=np.float32)
    return out


def missing_images(records: Sequence[StudyRecord]) -> list[str]:
    """Image paths of `records` that are not files (as strings, in record order)."""
    return [str(p) for r in records for p in r.images if not p.is_file()]


# ---------------------------------------------------------------------------------------------- systems


@dataclass
class SystemContext:
    """What a system may use: the training split, the checkpoint (or None) and batch settings.

    Attributes:
        train: training-split records (their reports and, for retrieval, their images).
        predictor: the loaded checkpoint, or None when the benchmark runs baselines only.
        batch_size: studies per forward pass.
        clean: text normaliser for training reports (most_frequent).
        labeler: texts -> (n, 14) labels, for references without labels (label_oracle).
        progress: show tqdm bars for preparation work (embedding the training split).
        with_impression: score generated impressions too. False when the references are findings only
            (R2Gen's IU/MIMIC protocol), so a model is not penalised for writing a section the reference lacks.
    """

    train: list[StudyRecord]
    predictor: Predictor | None = None
    batch_size: int = 8
    clean: Callable[[str], str] | None = None
    labeler: Callable[[Sequence[str]], np.ndarray] | None = None
    progress: bool = False
    with_impression: bool = True

    def join(self, findings: str, impression: str) -> str:
        return join_report(findings, impression if self.with_impression else None)


@dataclass
class System:
    """A named way of producing a report per study.

    Subclasses say what they need (`needs_checkpoint`, `needs_images`, `needs_train_images`) so the
    benchmark can skip them with a reason instead of failing halfway; `prepare` does the one-off work
    (counting, embedding the training split), `predict` maps a batch of studies to report strings.
    """

    context: SystemContext
    name: str = ""
    needs_checkpoint: bool = False
    needs_images: bool = False
    needs_train_images: bool = False
    _ready: bool = field(default=False, init=False, repr=False)

    def unavailable(self) -> str | None:
        """Why this system cannot run here (a one-line reason), or None when it can."""
        ctx = self.context
        if self.needs_checkpoint and ctx.predictor is None:
            return f"{self.name} needs a checkpoint: pass --checkpoint PATH"
        if self.needs_train_images:
            if not ctx.train:
                return f"{self.name} needs training studies with images; the training split is empty"
            missing = missing_images(ctx.train)
            if missing:
                return (
                    f"{self.name} needs the training images; {len(missing)} image file(s) missing (e.g. {missing[0]})"
                )
        return None

    def prepare(self) -> None:
        """One-off work before the first batch (idempotent)."""
        self._ready = True

    def predict(self, records: Sequence[StudyRecord]) -> list[str]:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, records: Sequence[StudyRecord]) -> list[str]:
        if not self._ready:
            self.prepare()
            self._ready = True
        return self.predict(records)


SystemFactory = Callable[[SystemContext], System]
_SYSTEMS: dict[str, SystemFactory] = {}


def register_system(name: str) -> Callable[[type[System]], type[System]]:
    """Class decorator: register a `System` subclass under `name` (timm-style registry)."""

    def deco(cls: type[System]) -> type[System]:
        if name in _SYSTEMS:
            raise ValueError(f"system {name!r} is already registered")
        _SYSTEMS[name] = lambda ctx: cls(context=ctx, name=name)
        return cls

    return deco


def available_systems() -> list[str]:
    """Registered system names, in registration order (model first)."""
    return list(_SYSTEMS)


def create_system(name: str, context: SystemContext) -> System:
    """Build a registered system; DataError naming the choices for an unknown name."""
    if name not in _SYSTEMS:
        raise DataError(f"unknown system {name!r}; choose from {', '.join(available_systems())}")
    return _SYSTEMS[name](context)


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


@register_system("model")
@dataclass
class ModelSystem(System):
    """The checkpoint end to end: images -> findings head -> label prompt -> text."""

    needs_checkpoint: bool = True
    needs_images: bool = True

    def predict(self, records: Sequence[StudyRecord]) -> list[str]:
        drafts = self.context.predictor.generate_batch([r.images for r in records], [r.views for r in records])
        return [self.context.join(d.findings, d.impression) for d in drafts]


@register_system("most_frequent")
@dataclass
class MostFrequentSystem(System):
    """The most frequent cleaned training report, for every study."""

    report: str = ""

    def unavailable(self) -> str | None:
        if not any(record_report(r) for r in self.context.train):
            return f"{self.name} needs training reports; the training split has none"
        return None

    def prepare(self) -> None:
        self.report = most_frequent_report([record_report(r) for r in self.context.train], self.context.clean)

    def predict(self, records: Sequence[StudyRecord]) -> list[str]:
        return [self.report] * len(records)


@register_system("nearest_neighbour")
@dataclass
class NearestNeighbourSystem(System):
    """The report of the most cosine-similar training study in the model's embedding space."""

    needs_checkpoint: bool = True
    needs_images: bool = True
    needs_train_images: bool = True
    keys: np.ndarray | None = field(default=None, repr=False)
    reports: list[str] = field(default_factory=list, repr=False)

    def prepare(self) -> None:
        from tqdm import tqdm

        train = [r for r in self.context.train if record_report(r)]
        if not train:
            raise DataError(f"{self.name}: the training split has no study with a report")
        chunks = list(_batches(train, self.context.batch_size))
        embeds = [
            self.context.predictor.embed([r.images for r in chunk])
            for chunk in tqdm(chunks, desc="embed train", unit="batch", disable=not self.context.progress)
        ]
        self.keys = np.concatenate(embeds)
        self.reports = [record_report(r) for r in train]

    def predict(self, records: Sequence[StudyRecord]) -> list[str]:
        idx = cosine_nearest(self.context.predictor.embed([r.images for r in records]), self.keys)
        return [self.reports[i] for i in idx]


@register_system("label_oracle")
@dataclass
class LabelOracleSystem(System):
    """The decoder conditioned on the reference's own labels: the text side's upper bound, image-free."""

    needs_checkpoint: bool = True

    def predict(self, records: Sequence[StudyRecord]) -> list[str]:
        labels = reference_labels(records, self.context.labeler)
        return [self.context.join(f, i) for f, i in self.context.predictor.generate_from_labels(labels)]
