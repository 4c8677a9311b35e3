"""StudyRecords -> torch batches for the three kinds of supervision (paired, image+labels, text+labels).

Images are decoded and resized once and cached as fp16 tensors: on a 2-core machine decoding PNGs
every epoch would cost more than the model. Augmentation runs on the cached tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from reportgen.config import PreprocessConfig
from reportgen.constants import MAX_VIEWS, OBSERVATIONS
from reportgen.data.datasets import StudyRecord
from reportgen.data.io import read_image
from reportgen.data.transforms import TrainAugment, preprocess
from reportgen.text.clean import clean_report
from reportgen.text.tokenizer import encode_report

N_OBS = len(OBSERVATIONS)


def record_labels(rec: StudyRecord) -> np.ndarray:
    return rec.labels if rec.labels is not None else np.full(N_OBS, np.nan, dtype=np.float32)


def record_text(rec: StudyRecord, clean_mode: str) -> tuple[str, str | None]:
    findings = clean_report(rec.findings or "", mode=clean_mode)
    impression = clean_report(rec.impression, mode=clean_mode) if rec.impression else None
    return findings, impression


@dataclass
class DatasetOptions:
    use_images: bool
    use_text: bool
    max_views: int = MAX_VIEWS
    max_len: int = 160
    clean_mode: str = "clinical"
    augment: bool = False


class StudyDataset(Dataset):
    """Items: {"images": (V, C, S, S) or None, "labels": (14,), "input_ids": LongTensor or None}."""

    def __init__(self, records: Sequence[StudyRecord], pre: PreprocessConfig, tokenizer, opts: DatasetOptions):
        self.records = list(records)
        self.pre = pre
        self.tokenizer = tokenizer
        self.opts = opts
        self.augment = TrainAugment() if opts.augment else None
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.records)

    def _images(self, i: int) -> torch.Tensor:
        if i not in self._cache:
            paths = self.records[i].images[: self.opts.max_views]
            self._cache[i] = torch.stack([preprocess(read_image(p), self.pre) for p in paths]).half()
        return self._cache[i].float()

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        item: dict = {
            "labels": torch.from_numpy(record_labels(rec).astype(np.float32)),
            "images": None,
            "input_ids": None,
        }
        if self.opts.use_images:
            images = self._images(i)
            if self.augment is not None:
                images = torch.stack([self.augment(im) for im in images])
            item["images"] = images
        if self.opts.use_text:
            findings, impression = record_text(rec, self.opts.clean_mode)
            ids = encode_report(self.tokenizer, findings, impression)[: self.opts.max_len - 2]
            item["input_ids"] = torch.tensor([self.tokenizer.bos_id, *ids, self.tokenizer.eos_id], dtype=torch.long)
        return item


def collate(items: list[dict], pad_id: int = 0) -> dict:
    """Pad views (with a view mask) and token sequences (with an attention mask)."""
    batch: dict = {"labels": torch.stack([it["labels"] for it in items])}
    if items[0]["images"] is not None:
        v = max(it["images"].shape[0] for it in items)
        c, s = items[0]["images"].shape[1], items[0]["images"].shape[-1]
        images = torch.zeros(len(items), v, c, s, s)
        view_mask = torch.zeros(len(items), v, dtype=torch.bool)
        for j, it in enumerate(items):
            n = it["images"].shape[0]
            images[j, :n] = it["images"]
            view_mask[j, :n] = True
        batch["images"], batch["view_mask"] = images, view_mask
    if items[0]["input_ids"] is not None:
        length = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), length), pad_id, dtype=torch.long)
        mask = torch.zeros(len(items), length, dtype=torch.long)
        for j, it in enumerate(items):
            n = len(it["input_ids"])
            ids[j, :n] = it["input_ids"]
            mask[j, :n] = 1
        batch["input_ids"], batch["attention_mask"] = ids, mask
    return batch
