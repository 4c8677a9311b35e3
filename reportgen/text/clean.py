"""Report text cleaning: R2Gen's benchmark normalisation and a case-keeping clinical normalisation.

Two modes, because they serve different masters:

* ``"r2gen"`` reproduces, character for character, the cleaning that R2Gen (Chen et al., EMNLP 2020,
  ``modules/tokenizers.py``) and R2GenCMN apply before building the word vocabulary and before scoring.
  Published IU X-Ray / MIMIC-CXR BLEU/METEOR/ROUGE/CIDEr numbers are computed on text cleaned this way,
  so comparing with them needs the same quirks (lower case, most punctuation deleted, "1.5" -> "15").
* ``"clinical"`` keeps what a reader needs (case, decimals, hyphens) and only tidies layout; it is the
  text a model should learn to draft.

Both are pure functions of the input string.
"""

from __future__ import annotations

import re
import unicodedata

from reportgen.errors import ConfigError

__all__ = ["CLEAN_MODES", "PLACEHOLDER_POLICIES", "clean_report", "split_sentences"]

CLEAN_MODES: tuple[str, ...] = ("clinical", "r2gen")

# --------------------------------------------------------------------------------------------------------------------
# R2Gen mode
# --------------------------------------------------------------------------------------------------------------------

# R2Gen's per-sentence regex, written here as a raw string with the same meaning. Inside the class, ":-\[" is a
# RANGE from ':' (0x3A) to '[' (0x5B), so it deletes ':;<=>?@', 'A'-'Z' and '[' while the hyphen itself survives.
_R2GEN_PUNCT = re.compile(r"[.,?;*!%^&_+():-\[\]{}]")

# Enumerator removals, applied in this order after the repeated-character collapses. Plain str.replace semantics
# (left to right, non-overlapping), which is why "11. x" -> "1x" and "21. x" -> "2x".
_R2GEN_ENUMERATORS: tuple[tuple[str, str], ...] = (
    ("1. ", ""),
    (". 2. ", ". "),
    (". 3. ", ". "),
    (". 4. ", ". "),
    (". 5. ", ". "),
    (" 2. ", ". "),
    (" 3. ", ". "),
    (" 4. ", ". "),
    (" 5. ", ". "),
)

# How many times each "collapse a doubled character" replacement runs. Each pass turns a run of n characters into
# ceil(n / 2), so long runs are NOT fully collapsed (IU: 9 dots -> 2 dots).
_IU_COLLAPSES: tuple[tuple[str, str, int], ...] = (("..", ".", 3),)
_MIMIC_COLLAPSES: tuple[tuple[str, str, int], ...] = (
    ("__", "_", 7),
    ("  ", " ", 6),
    ("..", ".", 8),
)


def _r2gen_sentence(sentence: str) -> str:
    """R2Gen's per-sentence cleaner: drop quotes/slashes, strip, lower, then the punctuation regex.

    The strip happens BEFORE the regex, so "( a )" keeps its inner spaces and a sentence made only of punctuation
    becomes an empty string (which R2Gen keeps; see `_clean_r2gen`).
    """
    for char in ('"', "/", "\\", "'"):
        sentence = sentence.replace(char, "")
    return _R2GEN_PUNCT.sub("", sentence.strip().lower())


def _clean_r2gen(text: str, dataset: str) -> str:
    """Behaviour-identical re-implementation of R2Gen's ``clean_report_iu_xray`` / ``clean_report_mimic_cxr``.

    Quirks reproduced on purpose (metrics depend on them):

    * Dataset choice: ``"iu_xray"`` uses the IU cleaner, ANY other name uses the MIMIC cleaner (as R2Gen's
      ``if dataset_name == 'iu_xray' ... else ...``).
    * MIMIC only: "\\n" -> " " first; then "__" -> "_" seven times and "  " -> " " six times (runs halve each
      pass). IU does NOT touch newlines: they survive inside the output (``str.split()`` later treats them as
      spaces).
    * ".." -> "." three times (IU) / eight times (MIMIC): runs halve each pass, very long runs survive.
    * Enumerator removal by plain substring replacement: "1. " -> "" anywhere (also inside "11. " -> "1"),
      ". N. " -> ". " and " N. " -> ". " for N in 2..5 (so "size 2. Lungs" -> "size. Lungs"); 6+ untouched.
    * strip + lower-case, then split on the exact string ". " (so "1.5" and "end.\\nNext" do NOT split, and a
      final "." stays attached to the last sentence until the regex deletes it).
    * Per sentence: delete '"', '/', '\\\\', "'"; strip; lower; delete ``.,?;*!%^&_+()[]{}`` and the range
      ':'..'[' (i.e. ``:;<=>?@``). Hyphens, digits, '#', '$', '|', '~', '`' and non-ASCII survive; decimals lose
      their point ("1.5 cm" -> "15 cm").
    * Empty sentences are kept (R2Gen's filter compares a str with ``[]``, which is always unequal), so
      "a. . b" -> "a .  . b ." and "" -> " .".
    * Output: sentences joined with " . " plus a trailing " ." — always, even if the report had no final period.

    R2GenCMN (Chen et al., ACL 2021) ships the same two functions.
    """
    collapses = _IU_COLLAPSES if dataset == "iu_xray" else _MIMIC_COLLAPSES
    if dataset != "iu_xray":
        text = text.replace("\n", " ")
    for old, new, times in collapses:
        for _ in range(times):
            text = text.replace(old, new)
    for old, new in _R2GEN_ENUMERATORS:
        text = text.replace(old, new)
    sentences = text.strip().lower().split(". ")
    return " . ".join(_r2gen_sentence(s) for s in sentences) + " ."


# --------------------------------------------------------------------------------------------------------------------
# Sentence splitting (shared by clinical mode and other layers)
# --------------------------------------------------------------------------------------------------------------------

# Lower-cased words that end with a period but do not end a sentence.
_ABBREVIATIONS = frozenset({"dr", "mr", "mrs", "ms", "st", "vs", "approx", "e.g", "i.e", "cf", "fig"})
# A sentence boundary: ., ! or ? followed by whitespace. A period between digits ("1.5") has no whitespace after it.
_BOUNDARY = re.compile(r"[.!?]+(?=\s)")
_ENUMERATOR_ONLY = re.compile(r"\d{1,2}[.)]")


def split_sentences(text: str) -> list[str]:
    """Split report text into sentences without breaking decimals, abbreviations or list numbers.

    A boundary is '.', '!' or '?' followed by whitespace, so "1.5 cm" and "x-ray." at the very end stay intact;
    "e.g. ", "approx. ", "Dr. " do not split; a bare list number ("1." in "1. No effusion.") is glued to the
    sentence it numbers. Whitespace inside sentences is collapsed to single spaces; no punctuation is added.

    Args:
        text: Any report text (newlines allowed).

    Returns:
        Non-empty, stripped sentences in order, each keeping its own final punctuation if it had one.
    """
    text = " ".join(text.split())
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        fragment = text[start : match.end()]
        last_word = fragment[: match.start() - start].rsplit(" ", 1)[-1].lower()
        if match.group() == "." and last_word in _ABBREVIATIONS:
            continue
        if _ENUMERATOR_ONLY.fullmatch(fragment.strip()):
            continue  # keep "1." with the sentence that follows it
        sentences.append(fragment.strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return [s for s in sentences if s]


# --------------------------------------------------------------------------------------------------------------------
# Clinical mode
# --------------------------------------------------------------------------------------------------------------------

PLACEHOLDER_POLICIES: tuple[str, ...] = ("drop_sentence", "delete")
# IU X-Ray's de-identification replaced words with "XXXX"; "x-XXXX" is always "x-ray" in that corpus.
_IU_XRAY_WORD = re.compile(r"\b([xX])-XXXX\b")
# One placeholder: IU's run of 3+ capital X's (optionally hyphen/slash-joined) or MIMIC-CXR's "___" (2+ underscores).
# IU sometimes glues the mask to digits or capitals ("4XXXX" ribs, "XXXXPM"), so only lower-case letters block it.
_ONE_PLACEHOLDER = r"(?:(?<![a-z])X{3,}(?:[-/]X{3,})*(?![a-z])|_{2,})"
_PLACEHOLDER = re.compile(_ONE_PLACEHOLDER + r"-?")  # with a trailing hyphen, as in "XXXX-year-old"
# A masked date/time after a temporal preposition ("compared to XXXX", "notified at ___ on ___") can go with its
# preposition and leave a grammatical sentence. "of"/"to"/"in" are left out: there the mask is usually anatomy.
_PREPOSITION_PLACEHOLDER = re.compile(
    r"\s*,?\s*\b(?:from|on|at|since|dated|(?:compared|prior) to|compared with)\s+"
    + _ONE_PLACEHOLDER
    + r"(?:\s*(?:,|and|at|on)?\s*"
    + _ONE_PLACEHOLDER
    + r")*",
    re.IGNORECASE,
)
_BRACKETED_PLACEHOLDER = re.compile(r"\s*\(\s*" + _ONE_PLACEHOLDER + r"(?:[\s,]+" + _ONE_PLACEHOLDER + r")*\s*\)")
_HAS_PLACEHOLDER = re.compile(_ONE_PLACEHOLDER)
# List numbers at the start of a line or after a sentence end: "1. No effusion" / "2) Stable".
_LINE_ENUMERATOR = re.compile(r"(?m)^[ \t]*\d{1,2}[.)][ \t]+(?=[A-Za-z])")
_INLINE_ENUMERATOR = re.compile(r"(^|[.!?:]\s+)\d{1,2}[.)]\s+(?=[A-Za-z])")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+(?=[,;:!?]|\.(?!\d))")
_PUNCT_RUN = re.compile(r"[.,;:!?](?:\s*[.,;:!?])+")
_MISSING_SPACE = re.compile(r"(?<=[a-z]{2})([.!?;,])(?=[A-Z])")
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]")


def _collapse_punct_run(match: re.Match[str]) -> str:
    """Reduce a run like ". ," or ",," or "..." to one mark: the first sentence end if any, else the first mark."""
    marks = [c for c in match.group() if not c.isspace()]
    enders = [c for c in marks if c in ".!?"]
    return enders[0] if enders else marks[0]


def _remove_placeholders(text: str, policy: str) -> str:
    """Handle de-identification placeholders (see `_clean_clinical`, step 3)."""
    text = _IU_XRAY_WORD.sub(r"\1-ray", text)
    text = _PREPOSITION_PLACEHOLDER.sub("", text)
    text = _BRACKETED_PLACEHOLDER.sub("", text)
    if policy == "drop_sentence" and _HAS_PLACEHOLDER.search(text):
        text = " ".join(s for s in split_sentences(text) if not _HAS_PLACEHOLDER.search(s))
    return _PLACEHOLDER.sub("", text)


def _clean_clinical(text: str, placeholders: str = "drop_sentence") -> str:
    """Tidy a report for training/drafting while keeping its clinical content.

    Steps (in order):

    1. Unicode NFKC (full-width characters, ligatures, non-breaking spaces become plain ones); "\\r" dropped.
    2. List numbers ("1. ", "2) ") at line starts or after a sentence end are removed.
    3. De-identification placeholders (IU X-Ray "XXXX", MIMIC-CXR "___"). No masked word is guessed except
       "x-XXXX" -> "x-ray" (IU masked "ray" in "x-ray"; unambiguous). A placeholder right after a temporal
       preposition (a masked date/time: "compared to XXXX", "notified at ___ on ___") is removed with the
       preposition, a bracketed one ("(XXXX)") with its brackets. Any other placeholder sits inside a noun phrase
       ("The XXXX are intact", "pulmonary XXXX"): with ``placeholders="drop_sentence"`` (default) that whole
       sentence is dropped, because a model must not learn to write "The are intact"; with ``"delete"`` only the
       placeholder (and a hyphen after it) is deleted. On IU X-Ray's findings+impression about 12% of sentences
       hold a placeholder; nearly all of them are dropped by the default.
    4. Whitespace (including newlines and tabs) collapses to single spaces; spaces before , ; : ! ? and before a
       period that does not start a decimal (" .5") are removed; empty brackets are dropped.
    5. Runs of punctuation ("..", ",,", ". ,", ":.") collapse to one mark, preferring a sentence end.
    6. A missing space after a sentence end between words ("normal.Lungs") is inserted.
    7. Sentences (see `split_sentences`) that are only punctuation are dropped; a sentence ending in , ; : gets
       a period instead; every sentence ends with '.', '!' or '?'.

    Case, decimals ("1.5 cm"), hyphens ("well-expanded") and parentheses are kept.
    """
    text = unicodedata.normalize("NFKC", text).replace("\r", "")
    text = _LINE_ENUMERATOR.sub("", text)
    text = " ".join(text.split())
    text = _INLINE_ENUMERATOR.sub(r"\1", text)
    text = _remove_placeholders(text, placeholders)
    text = " ".join(text.split())
    text = _EMPTY_BRACKETS.sub("", text)
    text = _SPACE_BEFORE_PUNCT.sub("", text)
    text = _PUNCT_RUN.sub(_collapse_punct_run, text)
    text = _MISSING_SPACE.sub(r"\1 ", text)
    sentences = []
    for sentence in split_sentences(text):
        sentence = sentence.strip(" ,;:")
        if not any(c.isalnum() for c in sentence):
            continue
        if sentence[-1] not in ".!?":
            sentence += "."
        sentences.append(sentence)
    return " ".join(sentences)


# --------------------------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------------------------


def clean_report(
    text: str | None, mode: str = "clinical", dataset: str = "iu_xray", *, placeholders: str = "drop_sentence"
) -> str:
    """Clean one report (findings, impression, or both) for training or scoring.

    Args:
        text: Raw report text; ``None`` is treated as an empty report.
        mode: ``"clinical"`` (case-keeping tidy-up, the text a model should draft) or ``"r2gen"`` (R2Gen's exact
            lower-cased, punctuation-stripped form, for comparable NLG metrics and the R2Gen word vocabulary).
        dataset: Only used by ``"r2gen"``: ``"iu_xray"`` selects R2Gen's IU cleaner, any other name its MIMIC-CXR
            cleaner (as R2Gen does). Clinical mode handles both datasets' placeholders regardless.
        placeholders: Clinical mode only: ``"drop_sentence"`` drops sentences whose de-identification placeholder
            sits inside a noun phrase, ``"delete"`` deletes just the placeholder (see `_clean_clinical`).

    Returns:
        The cleaned text. Clinical mode returns "" for a report with no words; r2gen mode returns " ." for an empty
        report, exactly as R2Gen does.

    Raises:
        ConfigError: Unknown ``mode`` or ``placeholders`` policy.
    """
    if mode not in CLEAN_MODES:
        raise ConfigError(f"unknown text cleaning mode {mode!r}; use one of {', '.join(CLEAN_MODES)}")
    if placeholders not in PLACEHOLDER_POLICIES:
        raise ConfigError(f"unknown placeholder policy {placeholders!r}; use one of {', '.join(PLACEHOLDER_POLICIES)}")
    text = text or ""
    if mode == "r2gen":
        return _clean_r2gen(text, dataset)
    return _clean_clinical(text, placeholders)
