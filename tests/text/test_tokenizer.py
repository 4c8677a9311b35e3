"""Tokenizers: SentencePiece training/round trips, R2Gen word vocabulary, SEP handling, R2Gen references."""

import json

import pytest

from reportgen.errors import CheckpointError, ConfigError, DataError
from reportgen.text.clean import clean_report
from reportgen.text.tokenizer import (
    SEP_TOKEN,
    SentencePieceTokenizer,
    Tokenizer,
    WordTokenizer,
    decode_report,
    encode_report,
    load_tokenizer,
    map_oov,
    r2gen_reference,
    r2gen_vocabulary,
)

_SUBJECTS = ["The heart", "The mediastinum", "The cardiac silhouette", "Pulmonary vasculature", "The trachea"]
_STATES = ["is normal in size", "is within normal limits", "is unremarkable", "is stable", "is midline"]
_EXTRA = [
    "There is a 1.5 cm nodule in the right upper lobe.",
    "No pneumothorax or pleural effusion.",
    "Lungs are well-expanded and clear.",
    "Mild cardiomegaly with bibasilar atelectasis.",
    "Right IJ catheter tip in the SVC.",
]


def _corpus() -> list[str]:
    """30 synthetic, deterministic report sentences."""
    sentences = [f"{s} {t}." for s in _SUBJECTS for t in _STATES]
    return sentences + _EXTRA


@pytest.fixture(scope="module")
def corpus():
    return _corpus()


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def spm_tok(request, corpus):
    return SentencePieceTokenizer.train(corpus, vocab_size=120, model_type=request.param)


def test_sentencepiece_round_trip_and_special_ids(spm_tok, corpus):
    assert isinstance(spm_tok, Tokenizer)
    assert (spm_tok.pad_id, spm_tok.unk_id, spm_tok.bos_id, spm_tok.eos_id, spm_tok.sep_id) == (0, 1, 2, 3, 4)
    assert spm_tok.kind == "sentencepiece"
    assert 30 < spm_tok.vocab_size <= 120
    for text in corpus:
        ids = spm_tok.encode(text)
        assert ids and min(ids) > 4  # no specials from plain text, no unk for seen characters
        assert spm_tok.decode(ids) == text  # case, decimal and hyphen survive
    # decode drops pad/bos/eos/sep
    ids = spm_tok.encode("The heart is stable.")
    assert spm_tok.decode([2, *ids, 4, 3, 0, 0]) == "The heart is stable."


def test_sentencepiece_unknown_character_is_unk(spm_tok):
    ids = spm_tok.encode("The heart Q")  # 'Q' never seen
    assert spm_tok.unk_id in ids
    assert spm_tok.decode(ids).endswith("<unk>")


def test_sentencepiece_sep_token_is_one_piece(spm_tok):
    ids = spm_tok.encode(f"No effusion. {SEP_TOKEN} Normal.")
    assert ids.count(spm_tok.sep_id) == 1


def test_sentencepiece_deterministic_and_save_load(tmp_path, corpus, spm_tok):
    again = SentencePieceTokenizer.train(corpus, vocab_size=120, model_type=spm_tok.model_type)
    assert again.model_proto == spm_tok.model_proto
    folder = spm_tok.save(tmp_path / "tok")
    meta = json.loads((folder / "tokenizer.json").read_text())
    assert meta["kind"] == "sentencepiece" and (folder / "tokenizer.model").is_file()
    for loaded in (SentencePieceTokenizer.load(folder), load_tokenizer(folder)):
        assert isinstance(loaded, SentencePieceTokenizer)
        assert loaded.vocab_size == spm_tok.vocab_size
        for text in corpus:
            assert loaded.encode(text) == spm_tok.encode(text)


def test_sentencepiece_vocab_size_is_soft_on_tiny_corpus():
    tok = SentencePieceTokenizer.train(["Heart normal.", "Lungs clear."] * 3, vocab_size=2000)
    assert tok.vocab_size < 2000
    assert tok.decode(tok.encode("Lungs clear.")) == "Lungs clear."


def test_sentencepiece_bad_arguments(corpus):
    with pytest.raises(ConfigError, match="vocab_size >="):
        SentencePieceTokenizer.train(corpus, vocab_size=10)
    with pytest.raises(ConfigError, match="model_type"):
        SentencePieceTokenizer.train(corpus, model_type="char")
    with pytest.raises(DataError):
        SentencePieceTokenizer.train(["", "  "])


def test_encode_decode_report_with_sep(spm_tok):
    findings, impression = "The heart is normal in size.", "No pneumothorax or pleural effusion."
    ids = encode_report(spm_tok, findings, impression)
    assert ids.count(spm_tok.sep_id) == 1
    # generated sequences carry bos, eos and padding
    assert decode_report(spm_tok, [spm_tok.bos_id, *ids, spm_tok.eos_id, 0, 0]) == (findings, impression)
    assert decode_report(spm_tok, encode_report(spm_tok, findings)) == (findings, "")
    assert encode_report(spm_tok, findings, "")[-1] == spm_tok.sep_id
    # anything after eos is ignored, even a separator
    assert decode_report(spm_tok, [*spm_tok.encode(findings), spm_tok.eos_id, spm_tok.sep_id, 7]) == (findings, "")


TRAIN_REPORTS = [
    "The heart is normal. The lungs are clear.",
    "The heart is enlarged. The lungs are clear.",
    "The heart is normal. No effusion.",
    "Lungs clear. Heart normal.",
]


def test_r2gen_vocabulary_threshold():
    # counts after r2gen cleaning: "." 8, the 5, heart 4, is/normal/lungs/clear 3, are 2, enlarged/no/effusion 1
    vocab = r2gen_vocabulary(TRAIN_REPORTS, threshold=3, dataset="iu_xray")
    assert vocab == sorted(vocab)
    assert vocab == [".", "<unk>", "clear", "heart", "is", "lungs", "normal", "the"]
    assert r2gen_vocabulary(TRAIN_REPORTS, threshold=4) == [".", "<unk>", "heart", "the"]
    # the default threshold follows the dataset: 10 for MIMIC keeps nothing here
    assert r2gen_vocabulary(TRAIN_REPORTS, dataset="mimic_cxr") == ["<unk>"]
    assert "enlarged" in r2gen_vocabulary(TRAIN_REPORTS, threshold=1)


def test_word_tokenizer_encode_decode_and_unk(tmp_path):
    tok = WordTokenizer.build(TRAIN_REPORTS, dataset="iu_xray")  # threshold 3 by default
    assert isinstance(tok, Tokenizer) and tok.kind == "word" and tok.threshold == 3
    assert tok.vocab_size == 5 + 7  # specials + words (no duplicate <unk>)
    text = clean_report("The heart is enlarged.", mode="r2gen")
    ids = tok.encode(text)
    assert ids[3] == tok.unk_id  # "enlarged" is below threshold
    assert tok.decode(ids) == "the heart is <unk> ."
    assert tok.encode(f"the heart {SEP_TOKEN} clear")[2] == tok.sep_id
    assert decode_report(tok, [tok.bos_id, *encode_report(tok, "the heart .", "clear ."), tok.eos_id]) == (
        "the heart .",
        "clear .",
    )
    folder = tok.save(tmp_path / "word")
    loaded = load_tokenizer(folder)
    assert isinstance(loaded, WordTokenizer) and loaded.encode(text) == ids and loaded.words == tok.words
    with pytest.raises(CheckpointError, match="not sentencepiece"):
        SentencePieceTokenizer.load(folder)


def test_map_oov_and_r2gen_reference():
    vocab = set(r2gen_vocabulary(TRAIN_REPORTS, threshold=3))
    assert map_oov("the heart is  enlarged .", vocab) == "the heart is <unk> ."
    assert r2gen_reference("The heart is ENLARGED. Lungs are clear.", vocab, max_tokens=60) == (
        "the heart is <unk> . lungs <unk> clear ."
    )
    # R2Gen keeps max_seq_length ids including the leading bos, i.e. max_seq_length - 1 words
    assert r2gen_reference("The heart is ENLARGED. Lungs are clear.", vocab, max_tokens=5) == "the heart is <unk>"
    long_report = " ".join(["The heart is normal."] * 30)  # 150 words
    assert len(r2gen_reference(long_report, vocab).split()) == 59  # IU default max_seq_length 60
    assert len(r2gen_reference(long_report, vocab, dataset="mimic_cxr").split()) == 99
    assert len(r2gen_reference(long_report, vocab, max_tokens=0).split()) == 150


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"kind": "bytes"}))
    with pytest.raises(CheckpointError, match="unknown tokenizer kind"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"kind": "sentencepiece"}))
    with pytest.raises(CheckpointError, match="missing"):
        load_tokenizer(tmp_path)
