"""Natural-language-generation metrics for reports: BLEU-1..4, METEOR, ROUGE-L, CIDEr.

Scores come from pycocoevalcap (the code every report-generation paper uses); what differs between
papers is what text goes *into* it, so every result names its **protocol**:

* ``"r2gen"`` reproduces R2Gen's evaluation (Chen et al., EMNLP 2020, ``modules/metrics.py``
  ``compute_scores`` on ``{i: [gt]}, {i: [re]}`` dicts, no PTB tokenizer). Both sides are cleaned
  with ``clean_report(mode="r2gen")`` and split on whitespace. ``max_tokens`` is R2Gen's
  ``max_seq_length`` (60 IU X-Ray, 100 MIMIC-CXR) and is applied exactly as R2Gen does: the budget
  counts the BOS token, so a *reference* keeps at most ``max_tokens - 1`` words (R2Gen truncates
  ``[bos] + ids + [eos]`` to ``max_seq_length`` and drops the BOS before decoding), while a
  *prediction* keeps at most ``max_tokens`` words (R2Gen's sampler length). With a ``vocab``, a
  reference word outside it becomes ``<unk>`` as R2Gen's decoded ground truth does.
  R2Gen's own ``compute_scores`` has no CIDEr; ours is pycocoevalcap's CIDEr-D on the same dicts,
  as the R2Gen follow-ups (R2GenCMN etc.) report it.
* ``"raw"`` is the COCO-caption convention: both sides are lower-cased and tokenized by the
  Stanford PTB tokenizer (a Java jar inside pycocoevalcap), punctuation tokens dropped, and nothing
  is truncated. Without Java, a documented regex tokenizer (`simple_tokenize`) stands in and the
  output says so.

Behaviours worth knowing (they explain many "why don't my numbers match" issues):

* BLEU is called with ``verbose=0`` as R2Gen does (pycocoevalcap would otherwise print to stdout).
  It is *corpus* BLEU (n-gram counts pooled over all reports, ``option="closest"`` brevity
  penalty), not the mean of sentence BLEU. BLEU-n is the geometric mean of 1..n-gram precisions.
* METEOR is METEOR 1.5 (``-l en -norm``: the jar lower-cases and re-tokenizes punctuation itself).
  Its corpus score comes from pooled statistics (the jar's ``EVAL`` line), not the mean of
  per-report scores. The JVM takes seconds to start, so one scorer is kept per `NLGMetric` and
  must be closed (`NLGMetric.close` or ``with``). Newlines and ``|||`` would break its line
  protocol and are replaced by spaces.
* ROUGE-L is the mean over reports of the LCS F-measure with beta = 1.2.
* CIDEr is CIDEr-D (clipped, length-penalized, x10) with IDF computed from *this* set of
  references, so it depends on which reports are in the test set.
* SPICE is not computed: it needs Stanford CoreNLP models downloaded at run time.

Without Java, METEOR is ``None`` and ``"nlg/warnings"`` says why; nothing raises.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from reportgen.eval.java import JavaInfo, detect_java

from reportgen.errors import DataError

#: Metric keys `NLGMetric.compute` always returns (values are floats; METEOR may be None).
NLG_KEYS: tuple[str, ...] = (
    "nlg/bleu1",
    "nlg/bleu2",
    "nlg/bleu3",
    "nlg/bleu4",
    "nlg/meteor",
    "nlg/rouge_l",
    "nlg/cider",
)

#: R2Gen's ``max_seq_length`` per dataset (its train_*.sh scripts).
R2GEN_MAX_SEQ_LENGTH: dict[str, int] = {"iu_xray": 60, "mimic_cxr": 100}

# pycocoevalcap's PTBTokenizer drops exactly these tokens after tokenizing.
_PTB_PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)


def _pycocoevalcap_dir(module: str) -> Path:
    """Folder of a pycocoevalcap module (the jars sit next to it); the package itself has no __file__."""
    import importlib

    return Path(importlib.import_module(f"pycocoevalcap.{module}").__file__).parent


def one_line(text: str) -> str:
    """Collapse every kind of whitespace (newlines, tabs, U+2028...) to single spaces.

    Java line protocols (METEOR's stdio, PTB's -preserveLines) would otherwise see one report as
    several, and pycocoevalcap's ROUGE splits on single spaces, so double spaces would count as
    empty tokens.
    """
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------
# Java-backed helpers
# ---------------------------------------------------------------------------------------------


class MeteorScorer:
    """One long-lived METEOR 1.5 JVM speaking pycocoevalcap's stdio protocol.

    Same jar, flags and protocol as ``pycocoevalcap.meteor.Meteor`` (so identical numbers), but
    started with a UTF-8 locale, with stderr discarded (it cannot fill a pipe and block), with a
    clear error when the JVM dies, and with an explicit `close`.
    """

    def __init__(self, java: JavaInfo | None = None) -> None:
        java = java if java is not None else detect_java()
        if not java.available:
            raise RuntimeError(f"METEOR needs Java: {java.problem}")
        jar_dir = _pycocoevalcap_dir("meteor.meteor")
        cmd = [java.executable, "-Dfile.encoding=UTF-8", "-Xmx2G", "-jar", "meteor-1.5.jar"]
        cmd += ["-", "-", "-stdio", "-l", "en", "-norm"]
        self._proc: subprocess.Popen | None = subprocess.Popen(
            cmd,
            cwd=jar_dir,
            env=java.env or None,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._lock = threading.Lock()

    def _write(self, line: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write((line + "\n").encode("utf-8"))
        self._proc.stdin.flush()

    def _read(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        answer = self._proc.stdout.readline().decode("utf-8").strip()
        if not answer:
            raise RuntimeError("the METEOR JVM stopped answering (out of memory? killed?)")
        return answer

    @staticmethod
    def _clean(text: str) -> str:
        return one_line(text.replace("|||", " "))

    def compute_score(self, gts: dict, res: dict) -> tuple[float, list[float]]:
        """pycocoevalcap's ``Meteor.compute_score``: corpus score (pooled stats) and per-item scores."""
        if self._proc is None:
            raise RuntimeError("METEOR scorer is closed")
        if gts.keys() != res.keys():
            raise ValueError("gts and res must have the same ids")
        with self._lock:
            stats = []
            for key in gts:
                # SCORE ||| reference 1 ||| ... ||| reference n ||| hypothesis  ->  one line of statistics
                refs = " ||| ".join(self._clean(r) for r in gts[key])
                self._write(f"SCORE ||| {refs} ||| {self._clean(res[key][0])}")
                stats.append(self._read())
            # EVAL ||| stats 1 ||| ... ||| stats n  ->  n per-item scores, then the pooled corpus score
            self._write(" ||| ".join(["EVAL", *stats]))
            per_item = [float(self._read()) for _ in stats]
            score = float(self._read())
        return score, per_item

    def close(self) -> None:
        """Stop the JVM (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    def __enter__(self) -> MeteorScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown: nothing sensible to do)
            pass


def ptb_tokenize(texts: Sequence[str], java: JavaInfo) -> list[str]:
    """Tokenize like ``pycocoevalcap.tokenizer.PTBTokenizer`` (lower-case, punctuation tokens removed).

    Differences from pycocoevalcap that do not change tokens: the temporary file goes to the system
    temp dir (the package dir may be read-only), the JVM gets a UTF-8 locale, and trailing empty
    lines the tokenizer omits are restored so ids never shift.
    """
    import tempfile

    if not java.available:
        raise RuntimeError(f"PTB tokenizer needs Java: {java.problem}")
    jar = _pycocoevalcap_dir("tokenizer.ptbtokenizer") / "stanford-corenlp-3.4.1.jar"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as tmp:
        tmp.write("\n".join(one_line(t) for t in texts))
    try:
        cmd = [java.executable, "-Dfile.encoding=UTF-8", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer"]
        cmd += ["-preserveLines", "-lowerCase", tmp.name]
        proc = subprocess.run(cmd, capture_output=True, env=java.env or None, timeout=600, check=False)
    finally:
        Path(tmp.name).unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"PTB tokenizer exited with {proc.returncode}")
    lines = proc.stdout.decode("utf-8").split("\n")
    if len(lines) > len(texts):
        if any(line.strip() for line in lines[len(texts) :]):
            raise RuntimeError(f"PTB tokenizer returned {len(lines)} lines for {len(texts)} texts")
        lines = lines[: len(texts)]
    lines += [""] * (len(texts) - len(lines))
    return [" ".join(w for w in line.rstrip().split(" ") if w and w not in _PTB_PUNCTUATIONS) for line in lines]


_SIMPLE_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|\w+(?:[-./]\w+)*|[^\w\s]")
_SIMPLE_CLITIC = re.compile(r"(\w)(n't|'(?:s|re|ve|ll|d|m))\b")
# PTB escapes brackets as -LRB- etc.; pycocoevalcap lower-cases *before* dropping "-LRB-", so they survive.
_SIMPLE_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}


def simple_tokenize(text: str) -> str:
    """Java-free stand-in for the PTB tokenizer, used by the "raw" protocol when Java is missing.

    Mimics PTB + pycocoevalcap on report text: lower-cases; keeps word-internal ``- . /``
    ("x-ray", "2.5", "t8/t9"); splits clitics ("heart 's", "do n't") and "cannot" ("can not");
    writes brackets as ``-lrb-``/``-rrb-`` (pycocoevalcap keeps these, lower-cased); drops the other
    punctuation tokens pycocoevalcap drops (``. , : ; ! ? ' ` " -``, runs of them). It is not PTB on
    every edge case, hence the warning in the output.
    """
    text = _SIMPLE_CLITIC.sub(r"\1 \2", text.lower().replace("cannot", "can not"))
    out = []
    for tok in _SIMPLE_TOKEN.findall(text):
        if tok in _SIMPLE_BRACKETS:
            out.append(_SIMPLE_BRACKETS[tok])
        elif not all(c in ".,:;!?'\"`-" for c in tok):
            out.append(tok)
    return " ".join(out)


# ---------------------------------------------------------------------------------------------
# Protocols: how prediction/reference strings are turned into the token strings that get scored
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProtocolContext:
    """Everything a protocol may need besides the texts."""

    dataset: str
    max_tokens: int | None
    vocab: frozenset[str] | None
    java: JavaInfo


Prepare = Callable[[list[str], list[str], ProtocolContext, list[str]], tuple[list[str], list[str]]]
_PROTOCOLS: dict[str, Prepare] = {}


def register_protocol(name: str) -> Callable[[Prepare], Prepare]:
    """Register ``prepare(preds, refs, ctx, warnings) -> (preds, refs)`` under `name`."""

    def deco(fn: Prepare) -> Prepare:
        _PROTOCOLS[name] = fn
        return fn

    return deco


def available_protocols() -> list[str]:
    return sorted(_PROTOCOLS)


def r2gen_max_tokens(dataset: str, max_tokens: int | None = None) -> int:
    """R2Gen's ``max_seq_length``: explicit value, else 60 (IU X-Ray) / 100 (MIMIC-CXR)."""
    if max_tokens is not None:
        if max_tokens < 2:
            raise ValueError("max_tokens must be >= 2 (it counts the BOS token, as R2Gen's max_seq_length does)")
        return max_tokens
    if dataset not in R2GEN_MAX_SEQ_LENGTH:
        raise ValueError(f"no R2Gen max_seq_length for dataset {dataset!r}: pass max_tokens")
    return R2GEN_MAX_SEQ_LENGTH[dataset]


def r2gen_prepare_reference(
    text: str, dataset: str = "iu_xray", max_tokens: int | None = None, vocab: Collection[str] | None = None
) -> str:
    """A reference as R2Gen scores it: cleaned, OOV words -> ``<unk>``, at most ``max_tokens - 1`` words.

    With a vocabulary this is `reportgen.text.tokenizer.r2gen_reference` (the text layer owns R2Gen's
    tokenizer semantics); without one, words are kept as they are.
    """
    from reportgen.text.clean import clean_report
    from reportgen.text.tokenizer import r2gen_reference

    limit = r2gen_max_tokens(dataset, max_tokens)
    if vocab is not None:
        return r2gen_reference(text, frozenset(vocab), max_tokens=limit, dataset=dataset)
    return " ".join(clean_report(text, mode="r2gen", dataset=dataset).split()[: limit - 1])


def r2gen_prepare_prediction(text: str, dataset: str = "iu_xray", max_tokens: int | None = None) -> str:
    """A prediction as R2Gen scores it: cleaned and at most ``max_tokens`` words (its sampler's limit).

    An empty prediction stays empty: R2Gen's decoder output is never cleaned, and cleaning "" would
    produce " ." (a free "." match against every reference).
    """
    from reportgen.text.clean import clean_report

    if not text.strip():
        return ""
    words = clean_report(text, mode="r2gen", dataset=dataset).split()
    return " ".join(words[: r2gen_max_tokens(dataset, max_tokens)])


@register_protocol("r2gen")
def _prepare_r2gen(
    preds: list[str], refs: list[str], ctx: ProtocolContext, warnings: list[str]
) -> tuple[list[str], list[str]]:
    preds = [r2gen_prepare_prediction(p, ctx.dataset, ctx.max_tokens) for p in preds]
    refs = [r2gen_prepare_reference(r, ctx.dataset, ctx.max_tokens, ctx.vocab) for r in refs]
    return preds, refs


@register_protocol("raw")
def _prepare_raw(
    preds: list[str], refs: list[str], ctx: ProtocolContext, warnings: list[str]
) -> tuple[list[str], list[str]]:
    if ctx.java.available:
        try:
            tokens = ptb_tokenize(preds + refs, ctx.java)
            return tokens[: len(preds)], tokens[len(preds) :]
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            warnings.append(f"PTB tokenizer failed ({exc}); used the regex tokenizer instead: not comparable to PTB")
    else:
        warnings.append(
            f"PTB tokenizer skipped ({ctx.java.problem}); used the regex tokenizer instead: not comparable to PTB"
        )
    return [simple_tokenize(p) for p in preds], [simple_tokenize(r) for r in refs]


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def score_tokenized(preds: Sequence[str], refs: Sequence[str], meteor: MeteorScorer | None = None) -> dict:
    """R2Gen's ``compute_scores`` (+ CIDEr) on already-prepared, space-tokenized strings.

    Args:
        preds: One generated report per item.
        refs: One reference report per item, aligned with `preds`.
        meteor: A running METEOR scorer; None leaves ``"nlg/meteor"`` as None.

    Returns:
        The `NLG_KEYS` mapped to floats in [0, 1] (CIDEr in [0, 10]).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
    if not preds:
        raise DataError("no reports to score")
    gts = {i: [one_line(r)] for i, r in enumerate(refs)}
    res = {i: [one_line(p)] for i, p in enumerate(preds)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    # CIDEr's IDF is undefined when no reference has a single n-gram (pycocoevalcap crashes on max([])).
    cider = Cider().compute_score(gts, res)[0] if any(r for (r,) in gts.values()) else 0.0
    out = {f"nlg/bleu{n + 1}": float(b) for n, b in enumerate(bleu)}
    out["nlg/meteor"] = float(meteor.compute_score(gts, res)[0]) if meteor is not None else None
    out["nlg/rouge_l"] = float(rouge)
    out["nlg/cider"] = float(cider)
    return {k: out[k] for k in NLG_KEYS}


class NLGMetric:
    """mmengine-style accumulator: `update` per batch, `compute` once.

    Example:
        >>> with NLGMetric("r2gen", dataset="iu_xray") as metric:
        ...     metric.update(["the heart is normal ."], ["heart size is normal ."])
        ...     scores = metric.compute()   # {"nlg/bleu1": ..., "nlg/protocol": "r2gen", ...}

    Args:
        protocol: "r2gen" or "raw" (see the module docstring).
        dataset: Selects the R2Gen cleaning rules and default max_tokens ("iu_xray" | "mimic_cxr").
        max_tokens: R2Gen's max_seq_length override; ignored by "raw".
        vocab: Words of the model's vocabulary; r2gen references map other words to ``<unk>``.
        java: Java to use; None detects it on first `compute` (tests pass a `JavaInfo` with no executable).
        meteor: A shared running `MeteorScorer` (not closed by this metric); None starts one lazily.
        use_meteor: False skips METEOR (saves the JVM start, e.g. in per-epoch validation).
    """

    def __init__(
        self,
        protocol: str = "r2gen",
        *,
        dataset: str = "iu_xray",
        max_tokens: int | None = None,
        vocab: Collection[str] | None = None,
        java: JavaInfo | None = None,
        meteor: MeteorScorer | None = None,
        use_meteor: bool = True,
    ) -> None:
        if protocol not in _PROTOCOLS:
            raise ValueError(f"unknown NLG protocol {protocol!r}; choose one of {available_protocols()}")
        if protocol == "r2gen":
            r2gen_max_tokens(dataset, max_tokens)  # fail now, not after generating a test set
        self.protocol = protocol
        self.dataset = dataset
        self.max_tokens = max_tokens
        self.vocab = frozenset(vocab) if vocab is not None else None
        self.use_meteor = use_meteor
        self._java = java
        self._meteor = meteor
        self._owns_meteor = meteor is None
        self._preds: list[str] = []
        self._refs: list[str] = []

    @property
    def java(self) -> JavaInfo:
        if self._java is None:
            self._java = detect_java()
        return self._java

    def update(self, preds: Sequence[str], refs: Sequence[str]) -> None:
        """Add a batch of generated reports and their references (same order, same length)."""
        if isinstance(preds, str) or isinstance(refs, str):
            raise TypeError("update() takes sequences of reports, not a single string")
        if len(preds) != len(refs):
            raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
        self._preds.extend(str(p) for p in preds)
        self._refs.extend(str(r) for r in refs)

    def reset(self) -> None:
        self._preds.clear()
        self._refs.clear()

    def __len__(self) -> int:
        return len(self._preds)

    def _get_meteor(self, warnings: list[str]) -> MeteorScorer | None:
        if not self.use_meteor:
            warnings.append("METEOR skipped on request (use_meteor=False)")
            return None
        if self._meteor is not None:
            return self._meteor
        if not self.java.available:
            warnings.append(f"METEOR skipped: {self.java.problem}")
            return None
        self._meteor = MeteorScorer(self.java)
        self._owns_meteor = True
        return self._meteor

    def compute(self) -> dict:
        """Score everything added so far.

        Returns:
            `NLG_KEYS` plus ``"nlg/protocol"``, ``"nlg/n"`` (reports scored), ``"nlg/max_tokens"``
            (r2gen only, else None), ``"nlg/java"`` (version or None) and ``"nlg/warnings"`` (list).
        """
        warnings: list[str] = []
        ctx = ProtocolContext(self.dataset, self.max_tokens, self.vocab, self.java)
        preds, refs = _PROTOCOLS[self.protocol](list(self._preds), list(self._refs), ctx, warnings)
        meteor = self._get_meteor(warnings)
        try:
            scores = score_tokenized(preds, refs, meteor)
        except (RuntimeError, OSError, ValueError) as exc:
            if meteor is None or isinstance(exc, DataError):
                raise
            warnings.append(f"METEOR failed ({exc}); reported as null")
            self.close()
            scores = score_tokenized(preds, refs, None)
        scores["nlg/protocol"] = self.protocol
        scores["nlg/n"] = len(preds)
        scores["nlg/max_tokens"] = r2gen_max_tokens(self.dataset, self.max_tokens) if self.protocol == "r2gen" else None
        scores["nlg/java"] = self.java.version
        scores["nlg/warnings"] = warnings
        return scores

    def close(self) -> None:
        """Stop the METEOR JVM if this metric started it."""
        if self._meteor is not None and self._owns_meteor:
            self._meteor.close()
        self._meteor = None if self._owns_meteor else self._meteor

    def __enter__(self) -> NLGMetric:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
