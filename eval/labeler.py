"""Rule-based CheXpert-style labeler: report text -> 14 observation labels (1 / 0 / -1 / NaN).

Why rules and not a model: labels are needed offline, for every generated report of every evaluation, on CPU, and
must be explainable. A compiled-regex labeler keeps the CheXpert labeler's conventions (Irvin et al., 2019:
mention extraction, then negation and uncertainty detection, then aggregation) at thousands of reports per second
in one process (`benchmarks/labeler_speed.py`), with no parser, model download or Java. `negspacy` (NegEx on a blank
spaCy pipeline) was considered and not adopted (not benchmarked here: spaCy is not a project dependency): it only
replaces the trigger step, still needs this mention vocabulary (as an EntityRuler), adds spaCy's tokenizer and
object overhead per report, and has no notion of CheXpert's uncertainty classes, pre-negation uncertainty ("cannot
exclude") or anatomy qualifiers ("heart size is normal"). The whole vocabulary is compiled into three alternations
(mentions, triggers, anatomy qualifiers), so each report is scanned a handful of times whatever its length.

Pipeline for one report (all positions are character offsets into the lower-cased text):

1. **Scope**: clause boundaries (sentence punctuation, "but", "however", "which", ";" ...) bound every rule.
2. **Triggers**: one alternation lists pseudo-negations ("no change in"), pre-negation uncertainty ("cannot
   exclude", "no new"), negation and uncertainty, longest first, so a matched phrase hides the words inside it
   ("cannot be excluded" is not a negation). Each acts forwards ("no X", up to a negation break such as "there is"
   or ", small ..."), backwards ("X is not seen", within 8 words) or both.
3. **Mentions** per observation (vocabulary in `reportgen.eval.labeler_rules`) get 1 / 0 / -1:
   pre-negation uncertainty > negation > uncertainty ("possible", "may") > coordination ("X or Y", "X versus Y";
   not for Lung Opacity, whose differentials explain an opacity that is seen) > positive. Anatomy mentions
   ("heart size", "cardiomediastinal silhouette") are labelled by their qualifier instead.
4. **Aggregation** (CheXpert): any positive -> 1, else any uncertain -> -1, else 0; never mentioned -> NaN.
   "chf"/"heart failure" also make Cardiomegaly uncertain (CheXpert's exception).
5. **No Finding** = 1 when no pathology (the 12 observations other than No Finding and Support Devices, plus
   abnormalities outside the 14 such as hernia or scoliosis) is positive or uncertain, else **0** — not blank as
   the original CheXpert labeler writes it. No Finding is never "not mentioned": a report either describes an
   abnormality or it does not. This matches CheXbert's labels (e.g. the IU X-Ray CheXbert CSV), so "mentioned"
   agreement and CE metrics that count negatives are comparable. An empty report is all NaN.

Conventions worth knowing: "suggestive of X" is positive (CheXpert reads only "suggestion of" as uncertain),
"likely X" is uncertain, "stable/unchanged heart size" is uncertain Cardiomegaly (CheXpert), "no new X" is
uncertain (CheXpert's pre-negation rule: an old X may persist).
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from reportgen.eval import labeler_rules as rules

from reportgen.constants import NEGATIVE, OBSERVATIONS, POSITIVE, UNCERTAIN
from reportgen.errors import DataError

_N_OBS = len(OBSERVATIONS)
_OBS_INDEX = {name: i for i, name in enumerate(OBSERVATIONS)}
_NO_FINDING = _OBS_INDEX["No Finding"]
_SUPPORT = _OBS_INDEX["Support Devices"]
_CARDIOMEGALY = _OBS_INDEX["Cardiomegaly"]
_EDEMA = _OBS_INDEX["Edema"]
_LUNG_OPACITY = _OBS_INDEX["Lung Opacity"]
#: Columns whose positive/uncertain label means "not No Finding" (everything but No Finding and Support Devices).
_PATHOLOGY = tuple(i for i in range(_N_OBS) if i not in (_NO_FINDING, _SUPPORT))
#: Index used for findings outside the 14 observations.
_OTHER = -1

#: Words allowed between a mention and a backward-acting trigger ("pneumothorax or effusion is not seen").
_POST_WINDOW_WORDS = 8
#: Words a forward-acting uncertainty trigger reaches ("possible small left lower lobe infiltrate").
_PRE_UNC_WINDOW_WORDS = 7
#: Words allowed between a mention and an "or" that makes it uncertain ("scarring or atelectasis").
_OR_WINDOW_WORDS = 3
#: Words allowed between an anatomy mention and a qualifier just before it ("normal heart size").
_PREFIX_WORDS = 2

# Trigger classes: (name, direction) where direction is "pre" (acts forwards), "post" (backwards) or "both".
_TRIGGER_TABLE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("pseudo", "none", rules.PSEUDO_NEGATION),
    ("preneg", "both", rules.PRENEG_UNCERTAIN),
    ("neg", "post", rules.POST_NEGATION),
    ("unc", "post", rules.POST_UNCERTAIN),
    ("negbreak", "none", rules.NEGATION_BREAK),
    ("neg", "pre", rules.PRE_NEGATION),
    ("or", "both", rules.OR_CONJUNCTION),
    ("unc", "pre", rules.PRE_UNCERTAIN),
    ("clause", "none", rules.CLAUSE_WORDS),
)
_QUALIFIER_TABLE: tuple[tuple[float, tuple[str, ...]], ...] = (
    (UNCERTAIN, rules.ANATOMY_UNCERTAIN),
    (NEGATIVE, rules.ANATOMY_NEGATIVE),
    (POSITIVE, rules.ANATOMY_POSITIVE),
    (UNCERTAIN, rules.ANATOMY_STABLE),
)


def _alternation(patterns: Iterable[str]) -> str:
    return "|".join(f"(?:{p})" for p in patterns)


def _word_groups(groups: Sequence[Iterable[str]]) -> re.Pattern[str]:
    """One regex whose named groups g0, g1, ... are the given phrase lists, matched on word boundaries.

    One pass of one alternation is several times faster than one pass per list (the regex engine tries the
    alternatives only where a word starts); where two lists could match at the same place the earlier wins.
    """
    body = "|".join(f"(?P<g{k}>{_alternation(phrases)})" for k, phrases in enumerate(groups))
    return re.compile(rf"(?<![\w-])(?:{body})(?![\w-])")


@dataclass(frozen=True)
class _Trigger:
    start: int
    end: int


@dataclass
class _Context:
    """Scope boundaries and triggers of one lower-cased report (character offsets)."""

    text: str
    breaks: list[int]
    neg_breaks: list[int]
    triggers: dict[tuple[str, str], list[_Trigger]]

    def get(self, name: str, direction: str) -> list[_Trigger]:
        """Triggers of class `name` acting in `direction` ("pre" or "post"), including two-way ones."""
        return self.triggers.get((name, direction), []) + self.triggers.get((name, "both"), [])

    def clause(self, pos: int) -> tuple[int, int]:
        """The [start, end) clause around character `pos`."""
        k = bisect_right(self.breaks, pos)
        start = self.breaks[k - 1] if k > 0 else 0
        end = self.breaks[k] if k < len(self.breaks) else len(self.text)
        return start, end

    def _crosses_neg_break(self, a: int, b: int) -> bool:
        k = bisect_right(self.neg_breaks, a - 1)
        return k < len(self.neg_breaks) and self.neg_breaks[k] < b

    def before(self, triggers: list[_Trigger], cstart: int, s: int, max_words: int | None = None) -> bool:
        """Whether the closest trigger ending before `s` in the clause reaches `s` (no negation break between)."""
        best = None
        for t in triggers:
            if cstart <= t.start and t.end <= s and (best is None or t.end > best.end):
                best = t
        if best is None or self._crosses_neg_break(best.end, s):
            return False
        return max_words is None or self.text.count(" ", best.end, s) <= max_words + 1

    def after(self, triggers: list[_Trigger], e: int, cend: int, max_words: int) -> bool:
        """Whether a trigger starts after `e` in the clause within `max_words` words."""
        return any(e <= t.start < cend and self.text.count(" ", e, t.start) <= max_words for t in triggers)


class RuleLabeler:
    """CheXpert-style rule labeler; build once (compiles four regular expressions) and reuse.

    Use `default_labeler()` for a shared instance; the object holds only compiled patterns and is thread-safe.
    """

    def __init__(self) -> None:
        # Mention groups, most specific first: look-alikes, shared phrases, then per-observation vocabularies.
        groups: list[tuple[str, ...]] = []
        meaning: list[tuple[tuple[int, ...], str]] = []  # (observation indices, kind) per group

        def add(indices: tuple[int, ...], kind: str, phrases: Iterable[str]) -> None:
            groups.append(tuple(phrases))
            meaning.append((indices, kind))

        add((_OTHER,), "finding", rules.EXCLUDED_PHRASES)
        for name, phrases in rules.NEGATED_ONLY_PHRASES.items():
            add((_OBS_INDEX[name],), "negated_only", phrases)
        for names, phrases in rules.SHARED_FINDING_PHRASES.items():
            add(tuple(_OBS_INDEX[n] for n in names), "finding", phrases)
        for name, phrases in rules.HEDGED_PHRASES.items():
            add((_OBS_INDEX[name],), "hedged", phrases)
        # Pleural Other before Lung Opacity ("pleural scarring" is not a lung opacity).
        order = sorted(rules.FINDING_PHRASES, key=lambda n: (n != "Pleural Other", OBSERVATIONS.index(n)))
        for name in order:
            add((_OBS_INDEX[name],), "finding", rules.FINDING_PHRASES[name])
        for names, phrases in rules.SHARED_ANATOMY_PHRASES.items():
            add(tuple(_OBS_INDEX[n] for n in names), "anatomy", phrases)
        for name, phrases in rules.ANATOMY_PHRASES.items():
            add((_OBS_INDEX[name],), "anatomy", phrases)
        add((_OTHER,), "finding", rules.OTHER_FINDING_PHRASES)
        self._mentions = _word_groups(groups)
        self._mention_meaning = {f"g{k}": m for k, m in enumerate(meaning)}

        self._triggers = _word_groups([phrases for _, _, phrases in _TRIGGER_TABLE])
        self._trigger_meaning = {f"g{k}": (name, d) for k, (name, d, _) in enumerate(_TRIGGER_TABLE)}
        self._comma_break = re.compile(rules.NEGATION_BREAK_COMMA)
        self._punctuation = re.compile(rules.CLAUSE_PUNCTUATION)
        self._qualifiers = _word_groups([phrases for _, phrases in _QUALIFIER_TABLE])
        self._qualifier_value = {f"g{k}": v for k, (v, _) in enumerate(_QUALIFIER_TABLE)}
        self._heart_failure = re.compile(r"(?:congestive )?heart failure|chf")

    # ------------------------------------------------------------------------------------------------------------
    def _context(self, text: str) -> _Context:
        breaks = [
            m.start()
            for m in self._punctuation.finditer(text)
            # a decimal point ("1.5 cm") is not a sentence end
            if not (text[m.start()] == "." and 0 < m.start() < len(text) - 1 and text[m.start() + 1].isdigit())
        ]
        neg_breaks = [m.start() for m in self._comma_break.finditer(text)]
        triggers: dict[tuple[str, str], list[_Trigger]] = {}
        for m in self._triggers.finditer(text):
            key = self._trigger_meaning[m.lastgroup]
            if key[0] == "clause":
                breaks.append(m.start())
            elif key[0] == "negbreak":
                neg_breaks.append(m.start())
            elif key[0] != "pseudo":
                triggers.setdefault(key, []).append(_Trigger(m.start(), m.end()))
        breaks.sort()
        neg_breaks.sort()
        return _Context(text=text, breaks=breaks, neg_breaks=neg_breaks, triggers=triggers)

    def _classify(self, ctx: _Context, s: int, e: int, hedged: bool, conjunction_hedges: bool = True) -> float:
        """Label one finding mention at [s, e) from the triggers around it.

        `conjunction_hedges=False` skips the "X or Y" / "X versus Y" rule: used for Lung Opacity, because the
        alternatives of such a differential ("atelectasis versus scarring") are explanations of an opacity that is
        itself seen.
        """
        cstart, cend = ctx.clause(s)
        if ctx.before(ctx.get("preneg", "pre"), cstart, s) or ctx.after(ctx.get("preneg", "post"), e, cend, 8):
            return UNCERTAIN
        if ctx.before(ctx.get("neg", "pre"), cstart, s) or ctx.after(
            ctx.get("neg", "post"), e, cend, _POST_WINDOW_WORDS
        ):
            return NEGATIVE
        if ctx.before(ctx.get("unc", "pre"), cstart, s, _PRE_UNC_WINDOW_WORDS) or ctx.after(
            ctx.get("unc", "post"), e, cend, _POST_WINDOW_WORDS
        ):
            return UNCERTAIN
        if conjunction_hedges:
            ors = ctx.get("or", "both")
            if ctx.after(ors, e, cend, _OR_WINDOW_WORDS) or ctx.before(ors, cstart, s, _OR_WINDOW_WORDS):
                return UNCERTAIN
        return UNCERTAIN if hedged else POSITIVE

    def _qualify(self, text: str, cstart: int, cend: int, s: int, e: int) -> float | None:
        """Label an anatomy mention from its qualifier; None when it has none (then it is not a mention).

        Order: a qualifier right before the anatomy ("normal heart size"), else the first one after it in the clause
        ("heart size is normal"), else the closest one before it ("normal heart size and mediastinal contours").
        """
        before: list[tuple[int, int, float]] = []
        for m in self._qualifiers.finditer(text, cstart, cend):
            value = self._qualifier_value[m.lastgroup]
            if m.start() >= e:
                if before and text.count(" ", before[-1][1], s) <= _PREFIX_WORDS + 1:
                    return before[-1][2]
                return value
            if m.end() <= s:
                before.append((m.start(), m.end(), value))
        return before[-1][2] if before else None

    # ------------------------------------------------------------------------------------------------------------
    def label(self, text: str) -> np.ndarray:
        """Label one report.

        Args:
            text: Free-text report (findings and/or impression), any case.

        Returns:
            float32 (14,) in OBSERVATIONS order: 1 positive, 0 negative, -1 uncertain, NaN not mentioned.
        """
        out = np.full(_N_OBS, np.nan, dtype=np.float32)
        if not text or not text.strip():
            return out
        low = " ".join(text.lower().split())
        ctx = self._context(low)
        found: list[list[float]] = [[] for _ in range(_N_OBS)]
        other_abnormal = False
        for m in self._mentions.finditer(low):
            indices, kind = self._mention_meaning[m.lastgroup]
            s, e = m.start(), m.end()
            if kind == "anatomy":
                cstart, cend = ctx.clause(s)
                value = self._qualify(low, cstart, cend, s, e)
                if value is None:
                    continue
            else:
                value = self._classify(
                    ctx, s, e, hedged=kind == "hedged", conjunction_hedges=_LUNG_OPACITY not in indices
                )
                if kind == "negated_only" and value != NEGATIVE:
                    # "acute bony abnormality" is abnormal, but not necessarily the observation
                    other_abnormal = True
                    continue
            for index in indices:
                if index == _OTHER:
                    other_abnormal = other_abnormal or value != NEGATIVE
                    continue
                found[index].append(value)
                if index == _EDEMA and value != NEGATIVE and self._heart_failure.fullmatch(m.group(0)):
                    found[_CARDIOMEGALY].append(UNCERTAIN)  # CheXpert's exception for "chf"/"heart failure"
        for i, values in enumerate(found):
            if values:
                out[i] = aggregate_mentions(values)
        abnormal = other_abnormal or any(out[i] == POSITIVE or out[i] == UNCERTAIN for i in _PATHOLOGY)
        out[_NO_FINDING] = NEGATIVE if abnormal else POSITIVE
        return out

    def label_many(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Label many reports; see `label`. Returns float32 (n, 14)."""
        out = np.full((len(texts), _N_OBS), np.nan, dtype=np.float32)
        items: Iterable[str] = texts
        if progress:
            from tqdm import tqdm

            items = tqdm(texts, desc="labelling", unit="report", file=sys.stderr)
        for i, text in enumerate(items):
            out[i] = self.label(text)
        return out


def aggregate_mentions(values: Iterable[float]) -> float:
    """CheXpert's aggregation of several mentions of one observation: positive > uncertain > negative."""
    values = list(values)
    if POSITIVE in values:
        return POSITIVE
    if UNCERTAIN in values:
        return UNCERTAIN
    return NEGATIVE


@lru_cache(maxsize=1)
def default_labeler() -> RuleLabeler:
    """The shared labeler instance, compiled on first use (nothing is compiled at import time)."""
    return RuleLabeler()


def label_report(text: str) -> np.ndarray:
    """Label one report: float32 (14,) in OBSERVATIONS order, 1 / 0 / -1, NaN = not mentioned."""
    return default_labeler().label(text)


def label_reports(texts: Sequence[str], progress: bool = False) -> np.ndarray:
    """Label many reports: float32 (n, 14) in OBSERVATIONS order, 1 / 0 / -1, NaN = not mentioned.

    Args:
        texts: Report texts; None or empty strings give an all-NaN row.
        progress: Show a tqdm bar on stderr.
    """
    return default_labeler().label_many([t or "" for t in texts], progress=progress)


# ----------------------------------------------------------------------------------------------------------------
# CLI: reportgen label INPUT.csv -o OUTPUT.csv [--column report]
# ----------------------------------------------------------------------------------------------------------------


def format_label(value: float) -> str:
    """CSV cell for a label: "1.0", "0.0", "-1.0" or "" (not mentioned), as CheXpert/CheXbert CSVs write them."""
    return "" if math.isnan(value) else f"{float(value):.1f}"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reportgen label",
        description="Label free-text chest X-ray reports with the 14 CheXpert observations (rule-based).",
    )
    parser.add_argument("input", type=Path, help="CSV file with a header row and one report per row")
    parser.add_argument("-o", "--output", type=Path, required=True, help="CSV to write (text column + 14 labels)")
    parser.add_argument("--column", default="report", help="name of the report text column (default: report)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `reportgen label`; writes the text column then the 14 labels in OBSERVATIONS order."""
    args = _build_parser().parse_args(argv)
    if not args.input.is_file():
        raise DataError(f"input CSV not found: {args.input}")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with args.input.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        if args.column not in columns:
            available = ", ".join(repr(c) for c in columns) or "none (empty file)"
            raise DataError(f"column {args.column!r} not in {args.input}; available columns: {available}; use --column")
        texts = [row.get(args.column) or "" for row in reader]
    labels = label_reports(texts, progress=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([args.column, *OBSERVATIONS])
        for text, row in zip(texts, labels, strict=True):
            writer.writerow([text, *(format_label(v) for v in row)])
    print(f"labelled {len(texts)} reports -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
