"""Training and inference throughput (images/s) of encoders + findings head on this machine.

    python benchmarks/train_throughput.py --encoders resnet18 vit_tiny_patch16_224 --size 224 --threads 2

Synthetic 1-channel batches (speed does not depend on content); median of `--repeats` timed steps after
warmup. The same ReportModel the trainer uses, image side only (encoder + findings head + BCE).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from reportgen.config import DecoderConfig, EncoderConfig, ModelConfig, PreprocessConfig
from reportgen.models.model import ReportModel


def measure(name: str, size: int, batch: int, repeats: int, bf16: bool) -> tuple[float, float, int]:
    cfg = ModelConfig(
        encoder=EncoderConfig(name=name),
        decoder=DecoderConfig(d_model=256, n_layer=1, n_head=4),
        preprocess=PreprocessConfig(image_size=size),
    )
    model = ReportModel(cfg, vocab_size=100, special={"pad": 0, "bos": 2, "eos": 3})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(batch, 1, 1, size, size)
    batch_d = {
        "images": images,
        "view_mask": torch.ones(batch, 1, dtype=torch.bool),
        "labels": torch.randint(0, 2, (batch, 14)).float(),
    }
    ctx = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if bf16
        else (lambda: torch.autocast("cpu", enabled=False))
    )
    train_t, infer_t = [], []
    for i in range(repeats + 1):
        t = time.perf_counter()
        model.train()
        with ctx():
            loss = model(batch_d)["label"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            train_t.append(time.perf_counter() - t)
        model.eval()
        t = time.perf_counter()
        with torch.no_grad(), ctx():
            model.findings_logits(*model.encode_images(images, batch_d["view_mask"]))
        if i:
            infer_t.append(time.perf_counter() - t)
    params = sum(p.numel() for p in model.encoder.parameters())
    return batch / statistics.median(train_t), batch / statistics.median(infer_t), params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", nargs="+", default=["resnet18", "vit_tiny_patch16_224"])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"| encoder | params (M) | train img/s | infer img/s |  ({args.size} px, batch {args.batch}, "
        f"{args.threads} threads, {'bf16' if args.bf16 else 'fp32'}, median of {args.repeats})"
    )
    print("|---|---|---|---|")
    for name in args.encoders:
        tr, inf, n = measure(name, args.size, args.batch, args.repeats, args.bf16)
        print(f"| {name} | {n / 1e6:.1f} | {tr:.1f} | {inf:.1f} |", flush=True)


if __name__ == "__main__":
    main()
