"""Predictor: a loaded checkpoint that turns a study (1-4 images) into a `DraftReport`.

    predictor = load_checkpoint("checkpoints/<name>")      # or None for the shipped default
    draft = predictor.generate(["frontal.dcm", "lateral.png"])
    print(draft.findings, draft.impression, draft.labels["Pleural Effusion"].probability)

Everything a draft says comes from the model; statuses use the operating points stored in the
checkpoint, and every draft carries the disclaimer: it is for a qualified reader to correct and sign.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from reportgen.checkpoint import load_parts
from reportgen.constants import DISCLAIMER, MAX_VIEWS, OBSERVATIONS
from reportgen.data.io import LoadedImage, read_image
from reportgen.data.transforms import preprocess
from reportgen.errors import CheckpointError, StudyError
from reportgen.inference.calibration import parse_temperature
from reportgen.inference.confidence import DEFAULT_THRESHOLD, SentenceConfidence, sentence_confidences
from reportgen.inference.triage import Triage, triage
from reportgen.models.model import labels_to_prompt_values
from reportgen.text.tokenizer import decode_report

ImageInput = str | os.PathLike | bytes | LoadedImage
_FRONTAL = {"PA", "AP", "FRONTAL", "AP SUPINE", "PA-AP"}


@dataclass
class LabelPrediction:
    probability: float
    status: str  # "positive" | "uncertain" | "negative" | "not_assessed" (no validation evidence for this output)


@dataclass
class DraftReport:
    findings: str
    impression: str
    labels: dict[str, LabelPrediction]
    triage: Triage
    model: dict[str, str]
    disclaimer: str = DISCLAIMER
    sentences: list[SentenceConfidence] = field(default_factory=list)

    @property
    def flagged_sentences(self) -> list[str]:
        """Sentences the decoder was unsure of: a reader should check these first."""
        return [s.text for s in self.sentences if s.flagged]

    def to_dict(self) -> dict:
        """JSON-ready view; observation order is CheXpert's."""
        return {
            "findings": self.findings,
            "impression": self.impression,
            "labels": {k: asdict(v) for k, v in self.labels.items()},
            "triage": asdict(self.triage),
            "sentences": [asdict(s) for s in self.sentences],
            "flagged_sentences": self.flagged_sentences,
            "model": dict(self.model),
            "disclaimer": self.disclaimer,
        }


def default_checkpoint_path() -> Path:
    """`$REPORTGEN_CHECKPOINT`, else the folder named in `checkpoints/DEFAULT` of this repository."""
    env = os.environ.get("REPORTGEN_CHECKPOINT")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[2] / "checkpoints"
    marker = root / "DEFAULT"
    if not marker.is_file():
        raise CheckpointError(f"no default checkpoint: {marker} is missing; pass --checkpoint PATH")
    return root / marker.read_text().strip()


def _order_views(images: list[LoadedImage], views: Sequence[str | None]) -> list[LoadedImage]:
    """Frontal views first (the model saw frontal in slot 0 during training), stable otherwise."""
    keyed = [
        (0 if (v or im.view or "").upper() in _FRONTAL else 1, i)
        for i, (im, v) in enumerate(zip(images, views, strict=True))
    ]
    return [images[i] for _, i in sorted(keyed)]


class Predictor:
    def __init__(self, path: str | Path, device: str = "cpu"):
        self.path = Path(path)
        self.device = torch.device(device)
        self.model, self.cfg, self.tokenizer, self.meta = load_parts(self.path)
        self.model.to(self.device)
        self.points = self.meta.get("operating_points") or {}
        missing = [o for o in OBSERVATIONS if o not in self.points]
        if missing:
            raise CheckpointError(f"checkpoint {self.path}: metadata.json has no operating point for {missing[0]}")
        # One float, or one per observation (a list of 14 fitted by `reportgen calibrate`); logits are
        # divided by it before the sigmoid in generate_batch and predict_probabilities.
        t = parse_temperature(self.meta.get("temperature", 1.0), where=f"checkpoint {self.path}")
        self.temperature = t if isinstance(t, float) else torch.as_tensor(t, device=self.device)
        self.sentence_threshold = float(self.meta.get("sentence_confidence_threshold", DEFAULT_THRESHOLD))

    @property
    def info(self) -> dict:
        return {
            "name": self.meta.get("name", self.cfg.name),
            "version": self.meta.get("version", self.cfg.version),
            "sha256": self.meta["sha256"],
            "labels": list(OBSERVATIONS),
            "intended_use": self.meta.get("intended_use", ""),
            "preprocessing": self.meta.get("preprocessing", {}),
            "untrained": bool(self.meta.get("untrained", False)),
        }

    @property
    def model_ref(self) -> dict[str, str]:
        info = self.info
        return {"name": info["name"], "version": info["version"], "sha256": info["sha256"]}

    # inputs -----------------------------------------------------------------------------------------
    def _study_tensor(self, images: Sequence[ImageInput], views: Sequence[str | None] | None) -> torch.Tensor:
        if len(images) == 0:
            raise StudyError("a study needs at least one image")
        if len(images) > MAX_VIEWS:
            raise StudyError(
                f"a study has at most {MAX_VIEWS} images; got {len(images)} (use --each for separate studies)"
            )
        loaded = [im if isinstance(im, LoadedImage) else read_image(im) for im in images]
        views = list(views) if views else [None] * len(loaded)
        if len(views) != len(loaded):
            raise StudyError(f"{len(views)} view tags for {len(loaded)} images")
        loaded = _order_views(loaded, views)[: self.cfg.model.max_views]
        return torch.stack([preprocess(im, self.cfg.model.preprocess) for im in loaded])

    def _batch(self, studies, views_list) -> tuple[torch.Tensor, torch.Tensor]:
        tensors = [self._study_tensor(s, v) for s, v in zip(studies, views_list, strict=True)]
        v = max(t.shape[0] for t in tensors)
        c, s = tensors[0].shape[1], tensors[0].shape[-1]
        images = torch.zeros(len(tensors), v, c, s, s)
        mask = torch.zeros(len(tensors), v, dtype=torch.bool)
        for i, t in enumerate(tensors):
            images[i, : t.shape[0]], mask[i, : t.shape[0]] = t, True
        return images.to(self.device), mask.to(self.device)

    # outputs ----------------------------------------------------------------------------------------
    def _assessed(self, name: str) -> bool:
        """False when calibration saw no labelled validation image for it (its head output was never checked)."""
        return self.points[name].get("n_pos", 1) > 0

    def _status(self, name: str, p: float) -> str:
        if not self._assessed(name):
            return "not_assessed"
        pt = self.points[name]
        return "positive" if p >= pt["positive"] else "uncertain" if p >= pt["uncertain"] else "negative"

    def status_values(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities -> CheXpert label values (1 / -1 / 0) at the stored operating points."""
        code = {"positive": 1.0, "uncertain": -1.0, "negative": 0.0, "not_assessed": float("nan")}
        return np.array(
            [[code[self._status(o, float(p))] for o, p in zip(OBSERVATIONS, row, strict=True)] for row in probs],
            dtype=np.float32,
        )

    def prompt_values(self, probs: np.ndarray) -> np.ndarray:
        """Label values that fill the decoder's prompt: positive at the balanced (Youden) threshold.

        Output statuses may use sensitivity-oriented operating points (a screening flag for a reader);
        the text, however, should state a finding only when it is more likely present than not at a
        balanced point, so a calibrated checkpoint's `youden` threshold is used here when stored.
        """
        cut = np.array([self.points[o].get("youden") or self.points[o]["positive"] for o in OBSERVATIONS])
        assessed = np.array([self._assessed(o) for o in OBSERVATIONS])
        return ((probs >= cut) & assessed).astype(np.float32)

    @torch.no_grad()
    def generate_batch(
        self,
        studies: Sequence[Sequence[ImageInput]],
        views: Sequence[Sequence[str | None] | None] | None = None,
        oracle_labels: np.ndarray | None = None,
    ) -> list[DraftReport]:
        """Drafts for several studies in one forward pass (what the API's dynamic batching calls).

        `oracle_labels` (n, 14) in CheXpert values replaces the predicted labels in the decoder prompt:
        the benchmark's label-oracle mode, which bounds the decoder on its own.
        """
        views = list(views) if views is not None else [None] * len(studies)
        images, mask = self._batch(studies, views)
        tokens, token_mask = self.model.encode_images(images, mask)
        logits = self.model.findings_logits(tokens, token_mask) / self.temperature
        probs = logits.sigmoid().cpu().numpy()
        values = oracle_labels if oracle_labels is not None else self.prompt_values(probs)
        prompt = labels_to_prompt_values(torch.as_tensor(values, dtype=torch.float32, device=self.device))
        memory, memory_mask = self.model.memory(prompt, tokens, token_mask)
        seqs, tok_probs = self.model.generate_text(memory, memory_mask, self.cfg.generation)
        return [self._draft(probs[i], seqs[i].tolist(), tok_probs[i].tolist()) for i in range(len(studies))]

    def _draft(self, probs: np.ndarray, ids: list[int], tok_probs: list[float]) -> DraftReport:
        findings, impression = decode_report(self.tokenizer, ids)
        labels = {
            o: LabelPrediction(round(float(p), 4), self._status(o, float(p)))
            for o, p in zip(OBSERVATIONS, probs, strict=True)
        }
        probabilities = {o: lp.probability for o, lp in labels.items()}
        statuses = {o: lp.status for o, lp in labels.items()}
        return DraftReport(
            findings=findings,
            impression=impression,
            labels=labels,
            triage=triage(probabilities, statuses, self.points),
            model=self.model_ref,
            sentences=sentence_confidences(self.tokenizer, ids, tok_probs, self.sentence_threshold),
        )

    @torch.no_grad()
    def generate_from_labels(self, labels: np.ndarray) -> list[tuple[str, str]]:
        """(findings, impression) per row of CheXpert label values (n, 14), with no image at all.

        The decoder sees only the label prompt: the label-oracle bound of the decoder, and the way to
        benchmark the text side on datasets whose images are not available.
        """
        prompt = labels_to_prompt_values(torch.as_tensor(labels, dtype=torch.float32, device=self.device))
        memory, memory_mask = self.model.memory(prompt)
        seqs, _ = self.model.generate_text(memory, memory_mask, self.cfg.generation)
        return [decode_report(self.tokenizer, row.tolist()) for row in seqs]

    @torch.no_grad()
    def predict_probabilities(self, studies: Sequence[Sequence[ImageInput]]) -> np.ndarray:
        """Findings-head probabilities (n, 14) after the checkpoint's temperature, without generating text."""
        images, mask = self._batch(studies, [None] * len(studies))
        tokens, token_mask = self.model.encode_images(images, mask)
        return (self.model.findings_logits(tokens, token_mask) / self.temperature).sigmoid().cpu().numpy()

    @torch.no_grad()
    def embed(self, studies: Sequence[Sequence[ImageInput]]) -> np.ndarray:
        """Pooled visual embedding (n, d) per study: what nearest-neighbour retrieval compares."""
        images, mask = self._batch(studies, [None] * len(studies))
        tokens, token_mask = self.model.encode_images(images, mask)
        m = token_mask.unsqueeze(-1).float()
        return ((tokens * m).sum(1) / m.sum(1).clamp(min=1.0)).cpu().numpy()

    def generate(self, images: Sequence[ImageInput], views: Sequence[str | None] | None = None) -> DraftReport:
        return self.generate_batch([images], [views])[0]

    def warmup(self) -> None:
        """One forward pass on a blank study, so the first real request does not pay for lazy init."""
        size = self.cfg.model.preprocess.image_size
        blank = LoadedImage(np.full((size, size), 0.5, dtype=np.float32), "png", None, None)
        self.generate([blank])


def load_checkpoint(path: str | Path | None = None, device: str = "cpu") -> Predictor:
    """Load a checkpoint folder (None = the shipped default) into a Predictor. Never touches the network."""
    return Predictor(default_checkpoint_path() if path is None else path, device=device)
