"""Sentence confidence: how sure the decoder was of each sentence it wrote.

A sentence's confidence is the mean probability of its tokens under the decoder (the probability of
the token that was actually emitted, from the search itself). Low-confidence sentences are flagged
for review in every output. Sentence boundaries are found on the decoded text (a '.', '!' or '?'
followed by a new word), so "1.5 cm" is not split and both tokenizer kinds behave the same.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_THRESHOLD = 0.5


@dataclass
class SentenceConfidence:
    text: str
    section: str  # "findings" | "impression"
    confidence: float
    flagged: bool


def _split(tokenizer, ids: list[int], probs: list[float]) -> list[tuple[str, list[float]]]:
    sentences, group, group_p = [], [], []
    for k, (tok, p) in enumerate(zip(ids, probs, strict=True)):
        group.append(tok)
        group_p.append(p)
        text = tokenizer.decode(group)
        if not text.rstrip().endswith((".", "!", "?")):
            continue
        nxt = ids[k + 1] if k + 1 < len(ids) else None
        if nxt is None or tokenizer.decode([*group, nxt])[len(text) :].startswith(" "):
            sentences.append((text.strip(), group_p))
            group, group_p = [], []
    if group and tokenizer.decode(group).strip():
        sentences.append((tokenizer.decode(group).strip(), group_p))
    return sentences


def sentence_confidences(
    tokenizer, ids: list[int], probs: list[float], threshold: float = DEFAULT_THRESHOLD
) -> list[SentenceConfidence]:
    """Per-sentence mean token probability for a generated sequence (without BOS), split into sections.

    `ids` and `probs` are aligned; the sequence stops at the first EOS; the separator token switches
    from findings to impression and is not part of any sentence.
    """
    n = ids.index(tokenizer.eos_id) if tokenizer.eos_id in ids else len(ids)
    out: list[SentenceConfidence] = []
    section, start = "findings", 0
    bounds = [i for i in range(n) if ids[i] == tokenizer.sep_id][:1] + [n]
    for end in bounds:
        keep = [(t, p) for t, p in zip(ids[start:end], probs[start:end], strict=True) if t != tokenizer.sep_id]
        if keep:
            toks, ps = map(list, zip(*keep, strict=True))
            for text, group_p in _split(tokenizer, toks, ps):
                conf = float(sum(group_p) / len(group_p))
                out.append(SentenceConfidence(text, section, round(conf, 4), conf < threshold))
        section, start = "impression", end + 1
    return out
