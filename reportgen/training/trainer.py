"""`reportgen train`: one loop for paired, image+label and text+label data, resumable, DDP-aware.

- Sources are interleaved round-robin each epoch, so one model learns the image side (findings head)
  and the text side (decoder on label prompts) together, and both sides when paired data exists.
- Model selection uses the validation split only (never test): the summed validation losses.
- `out_dir/last.pt` holds everything to resume (model, optimizer, scheduler, epoch, RNG, best score) and
  is replaced atomically; the best epoch is exported as a checkpoint folder `out_dir/best/`.
- Under `torchrun --nproc_per_node N` it uses DistributedDataParallel (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from reportgen.checkpoint import build_model, save_checkpoint
from reportgen.config import DatasetSpec, ExperimentConfig, save_config, to_dict
from reportgen.constants import OBSERVATIONS
from reportgen.data.datasets import StudyRecord, load_dataset
from reportgen.errors import ConfigError, DataError
from reportgen.training.data import DatasetOptions, StudyDataset, collate, record_text

KINDS = ("paired", "image_labels", "text_labels")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl with CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_records(specs: list[DatasetSpec], split: str) -> list[StudyRecord]:
    records: list[StudyRecord] = []
    for spec in specs:
        records += load_dataset(spec.name, spec.root, split=split, **spec.options)
    return records


def fill_labels_from_text(records: list[StudyRecord]) -> None:
    """Records with a report but no labels get reportgen's own labeler's labels (the bridge needs labels)."""
    todo = [r for r in records if r.labels is None and r.findings]
    if not todo:
        return
    from reportgen.eval.labeler import label_reports

    for rec, lab in zip(todo, label_reports([f"{r.findings} {r.impression or ''}" for r in todo]), strict=True):
        rec.labels = lab


def build_tokenizer(cfg: ExperimentConfig, texts: list[str]):
    from reportgen.text.tokenizer import SentencePieceTokenizer, WordTokenizer

    if not texts:
        raise DataError("no training reports: the decoder needs data.paired or data.text_labels with text")
    if cfg.data.tokenizer == "sentencepiece":
        return SentencePieceTokenizer.train(texts, vocab_size=cfg.data.vocab_size)
    if cfg.data.tokenizer == "word":
        return WordTokenizer.build(texts)
    raise ConfigError(f"data.tokenizer must be 'sentencepiece' or 'word', not {cfg.data.tokenizer!r}")


def _report_texts(records: list[StudyRecord], clean_mode: str) -> list[str]:
    out = []
    for r in records:
        if r.findings:
            findings, impression = record_text(r, clean_mode)
            out.append(f"{findings} {impression or ''}".strip())
    return out


class Trainer:
    def __init__(self, cfg: ExperimentConfig, resume: bool = False, command: str | None = None):
        self.cfg = cfg
        self.resume = resume
        self.command = command or " ".join(["reportgen", *sys.argv[1:]])
        self.dist = setup_distributed()
        self.out = Path(cfg.train.out_dir)
        self.device = torch.device(f"cuda:{self.dist.rank}" if torch.cuda.is_available() else "cpu")
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.train.seed)

    # data -------------------------------------------------------------------------------------------
    def _datasets(self, tokenizer, split: str) -> dict[str, StudyDataset]:
        cfg = self.cfg
        out = {}
        for kind in KINDS:
            specs = getattr(cfg.data, kind)
            recs = self.records[split][kind]
            if not specs or not recs:
                continue
            opts = DatasetOptions(
                use_images=kind != "text_labels",
                use_text=kind != "image_labels",
                max_views=cfg.model.max_views,
                max_len=cfg.model.decoder.max_len,
                clean_mode=cfg.data.clean_mode,
                augment=cfg.train.augment and split == "train",
            )
            out[kind] = StudyDataset(recs, cfg.model.preprocess, tokenizer, opts)
        return out

    def _load_all_records(self) -> None:
        self.records = {}
        for split in ("train", "val"):
            self.records[split] = {}
            for kind in KINDS:
                recs = load_records(getattr(self.cfg.data, kind), split)
                if kind != "image_labels" and self.cfg.data.label_from_text:
                    fill_labels_from_text(recs)
                self.records[split][kind] = recs

    def _loader(self, ds: StudyDataset, train: bool, seed_offset: int) -> DataLoader:
        sampler = None
        if self.dist.world > 1:
            sampler = DistributedSampler(ds, shuffle=train, seed=self.cfg.train.seed + seed_offset)
        gen = torch.Generator().manual_seed(self.cfg.train.seed + seed_offset)
        return DataLoader(
            ds,
            batch_size=self.cfg.train.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            generator=gen,
            num_workers=self.cfg.train.num_workers,
            collate_fn=functools.partial(collate, pad_id=ds.tokenizer.pad_id),
            drop_last=False,
        )

    # loop -------------------------------------------------------------------------------------------
    def run(self) -> Path:
        cfg, out = self.cfg, self.out
        out.mkdir(parents=True, exist_ok=True)
        self._load_all_records()
        state = None
        if self.resume and (out / "last.pt").is_file():
            state = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        elif self.resume:
            self._log(f"--resume: no {out / 'last.pt'} yet, starting from scratch")

        from reportgen.text.tokenizer import load_tokenizer

        if (out / "tokenizer").is_dir() and state is not None:
            tokenizer = load_tokenizer(out / "tokenizer")
        else:
            texts = _report_texts(
                self.records["train"]["paired"] + self.records["train"]["text_labels"], cfg.data.clean_mode
            )
            tokenizer = build_tokenizer(cfg, texts)
            if self.dist.main:
                tokenizer.save(out / "tokenizer")
        self.tokenizer = tokenizer
        if self.dist.main:
            save_config(cfg, out / "config.yaml")

        model = build_model(cfg, tokenizer).to(self.device)
        train_sets = self._datasets(tokenizer, "train")
        val_sets = self._datasets(tokenizer, "val")
        if not train_sets:
            raise DataError("no training data: fill data.paired, data.image_labels or data.text_labels")
        loaders = {k: self._loader(ds, True, i) for i, (k, ds) in enumerate(train_sets.items())}
        steps_per_epoch = max(len(dl) for dl in loaders.values()) * len(loaders)
        if cfg.train.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps_per_epoch)
        total = steps_per_epoch * cfg.train.epochs

        opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        warm = max(1, min(cfg.train.warmup_steps, total // 10 or 1))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, total))))
        )
        start_epoch, best, history = 0, float("inf"), []
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
            torch.set_rng_state(state["rng"]["torch"])
            np.random.set_state(state["rng"]["numpy"])
            random.setstate(state["rng"]["python"])
            self._log(f"resumed from epoch {state['epoch'] + 1} (best val loss {best:.4f})")

        ddp = DistributedDataParallel(model, find_unused_parameters=True) if self.dist.world > 1 else model
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.train.bf16 else nullcontext()
        for epoch in range(start_epoch, cfg.train.epochs):
            for dl in loaders.values():
                if isinstance(dl.sampler, DistributedSampler):
                    dl.sampler.set_epoch(epoch)
            ddp.train()
            iters = {k: iter(dl) for k, dl in loaders.items()}
            sums: dict[str, float] = {}
            n_images = 0
            t0 = time.perf_counter()
            bar = tqdm(
                range(steps_per_epoch),
                desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                disable=not self.dist.main,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            kinds = list(loaders)
            for step in bar:
                kind = kinds[step % len(kinds)]
                try:
                    batch = next(iters[kind])
                except StopIteration:  # smaller sources cycle within an epoch
                    iters[kind] = iter(loaders[kind])
                    batch = next(iters[kind])
                batch = {k: v.to(self.device) for k, v in batch.items()}
                with autocast:
                    losses = ddp(batch)
                loss = cfg.train.label_loss_weight * losses.get("label", 0) + cfg.train.text_loss_weight * losses.get(
                    "text", 0
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.train.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                opt.step()
                sched.step()
                for k, v in losses.items():
                    value = float(v.detach())
                    sums[k] = sums[k] * 0.9 + value * 0.1 if k in sums else value  # smoothed for the bar
                if "images" in batch:
                    n_images += int(batch["view_mask"].sum())
                elapsed = time.perf_counter() - t0
                bar.set_postfix({**{k: f"{v:.3f}" for k, v in sums.items()}, "img/s": f"{n_images / elapsed:.1f}"})
            train_time = time.perf_counter() - t0
            last = epoch + 1 == cfg.train.epochs
            if (epoch + 1) % max(1, cfg.train.eval_every) and not last:
                if self.dist.main:
                    self._save_state(model, opt, sched, epoch, best, history)
                continue
            val = self.validate(model, val_sets)
            score = sum(v for k, v in val.items() if k.endswith("_loss"))
            record = {
                "epoch": epoch + 1,
                "train": sums,
                "val": val,
                "val_score": score,
                "images_per_s": n_images / train_time if train_time else 0.0,
                "seconds": train_time,
            }
            history.append(record)
            improved = bool(val) and score < best
            if improved:
                best = score
            if self.dist.main:
                self._log(json.dumps(record))
                if improved or (not val and last):  # without validation data the last epoch is exported
                    self._export(model, "best", history)
                self._save_state(model, opt, sched, epoch, best, history)
        if self.dist.world > 1:
            dist.barrier()
        return out / "best"

    @torch.no_grad()
    def validate(self, model, val_sets: dict[str, StudyDataset]) -> dict[str, float]:
        """Validation losses (what selects the best epoch) and the findings head's mean AUROC."""
        from sklearn.metrics import roc_auc_score

        model.eval()
        out: dict[str, float] = {}
        totals: dict[str, list[float]] = {}
        probs, labels = [], []
        for ds in val_sets.values():
            for batch in self._loader(ds, False, 0):
                batch = {k: v.to(self.device) for k, v in batch.items()}
                for k, v in model(batch).items():
                    totals.setdefault(k, []).append(float(v))
                if "images" in batch:
                    tokens, mask = model.encode_images(batch["images"], batch["view_mask"])
                    probs.append(model.findings_logits(tokens, mask).sigmoid().cpu().numpy())
                    labels.append(batch["labels"].cpu().numpy())
        for k, v in totals.items():
            out[f"{k}_loss"] = float(np.mean(v))
        if probs:
            p, y = np.concatenate(probs), np.concatenate(labels)
            aucs = {}
            for j, name in enumerate(OBSERVATIONS):
                known = (y[:, j] == 0) | (y[:, j] == 1)
                if known.sum() and 0 < y[known, j].sum() < known.sum():
                    aucs[name] = float(roc_auc_score(y[known, j], p[known, j]))
            if aucs:
                out["auroc_mean"] = float(np.mean(list(aucs.values())))
        return out

    # persistence ------------------------------------------------------------------------------------
    def _save_state(self, model, opt, sched, epoch: int, best: float, history: list) -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "best": best,
            "history": history,
            "config": to_dict(self.cfg),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        }
        tmp = self.out / "last.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.out / "last.pt")  # atomic: a crash leaves the previous last.pt intact

    def _export(self, model, name: str, history: list) -> None:
        meta = {
            "training": {
                "command": self.command,
                "history": history,
                "data": {k: [to_dict(s) for s in getattr(self.cfg.data, k)] for k in KINDS},
                "n_train": {k: len(v) for k, v in self.records["train"].items()},
                "n_val": {k: len(v) for k, v in self.records["val"].items()},
            }
        }
        save_checkpoint(self.out / name, model, self.cfg, self.tokenizer, meta)

    def _log(self, msg: str) -> None:
        if self.dist.main:
            tqdm.write(msg, file=sys.stderr)
            with open(self.out / "train_log.jsonl" if msg.startswith("{") else self.out / "train.log", "a") as f:
                f.write(msg + "\n")


def train(cfg: ExperimentConfig, resume: bool = False, command: str | None = None) -> Path:
    return Trainer(cfg, resume=resume, command=command).run()
