"""End to end on the IU X-Ray sample images: the model's drafts next to the radiologists' reports.

    python benchmarks/iu_samples.py --checkpoint checkpoints/cxr-demo --data-root ../shared/data

Only 5 IU images exist on this machine (3 studies; one lacks its lateral view). This is a look at
real drafts, not a metric: the numbers that matter are in the model card's benchmark commands.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reportgen.inference.predictor import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--data-root", default="../shared/data")
    args = ap.parse_args()
    folder = Path(args.data_root) / "iu_xray" / "images_sample"
    reports = json.loads((folder / "reports.json").read_text())
    predictor = load_checkpoint(args.checkpoint)
    print(f"model: {predictor.info['name']} {predictor.info['version']} sha256:{predictor.info['sha256'][:12]}\n")
    for key, entry in sorted(reports.items()):
        images = [folder / f"{name}.png" for name in entry["image"] if (folder / f"{name}.png").is_file()]
        if not images:
            continue
        draft = predictor.generate(images)
        ref = entry["report"]
        positives = [f"{k} {v.probability:.2f}" for k, v in draft.labels.items() if v.status == "positive"]
        print(f"### {key} ({len(images)} view{'s' if len(images) > 1 else ''})")
        print(f"- radiologist findings: {ref.get('FINDINGS', '')}")
        print(f"- radiologist impression: {ref.get('IMPRESSION', '')}")
        print(f"- draft findings: {draft.findings}")
        print(f"- draft impression: {draft.impression}")
        print(f"- draft positive labels: {', '.join(positives) or 'none'}; triage {draft.triage.priority}")
        if draft.flagged_sentences:
            print(f"- low-confidence sentences: {' | '.join(draft.flagged_sentences)}")
        print()


if __name__ == "__main__":
    main()
