from reportgen.inference.confidence import sentence_confidences
from reportgen.text.tokenizer import SentencePieceTokenizer, WordTokenizer, encode_report

TEXTS = ["The heart is normal. A 1.5 cm nodule is seen.", "No effusion. Lungs are clear."] * 5


def _ids(tok, findings, impression):
    return encode_report(tok, findings, impression) + [tok.eos_id, tok.pad_id]


def test_sentences_split_by_section_without_breaking_decimals():
    tok = SentencePieceTokenizer.train(TEXTS * 3, vocab_size=60)
    ids = _ids(tok, "The heart is normal. A 1.5 cm nodule is seen.", "No effusion.")
    probs = [0.9] * len(ids)
    out = sentence_confidences(tok, ids, probs)
    assert [(s.section, s.text) for s in out] == [
        ("findings", "The heart is normal."),
        ("findings", "A 1.5 cm nodule is seen."),
        ("impression", "No effusion."),
    ]
    assert all(abs(s.confidence - 0.9) < 1e-6 and not s.flagged for s in out)


def test_low_probability_sentence_is_flagged():
    tok = WordTokenizer.build([t.lower() for t in TEXTS], threshold=1)
    first = tok.encode("the heart is normal .")
    second = tok.encode("no effusion .")
    ids = first + second + [tok.eos_id]
    probs = [0.95] * len(first) + [0.2] * len(second) + [0.99]
    out = sentence_confidences(tok, ids, probs, threshold=0.5)
    assert [s.flagged for s in out] == [False, True]
    assert out[1].confidence == 0.2
