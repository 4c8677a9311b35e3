"""Encoders and decoders are tested over their registries with tiny configs, so a new entry is tested for free."""

import pytest
import torch

from reportgen.config import DecoderConfig, EncoderConfig, GenerationConfig, ModelConfig, PreprocessConfig
from reportgen.errors import ConfigError
from reportgen.models.decoder import available_decoders, create_decoder
from reportgen.models.encoder import TimmEncoder, create_encoder
from reportgen.models.model import ReportModel, findings_targets, labels_to_prompt_values

SPECIAL = {"pad": 0, "bos": 2, "eos": 3}


def tiny_model(encoder="test_resnet", decoder="transformer", visual=True):
    cfg = ModelConfig(
        encoder=EncoderConfig(name=encoder),
        decoder=DecoderConfig(name=decoder, d_model=32, n_layer=1, n_head=4, dropout=0.0, max_len=20),
        preprocess=PreprocessConfig(image_size=64),
        visual_tokens=visual,
    )
    torch.manual_seed(0)
    return ReportModel(cfg, vocab_size=40, special=SPECIAL).eval()


@pytest.mark.parametrize("name", ["test_resnet", "test_vit", "test_efficientnet"])
def test_any_timm_encoder_gives_tokens(name):
    enc = create_encoder(EncoderConfig(name=name), PreprocessConfig(image_size=64), d_model=32)
    tokens = enc(torch.randn(2, 1, 64, 64))
    assert tokens.ndim == 3 and tokens.shape[0] == 2 and tokens.shape[-1] == 32


def test_unknown_encoder_is_a_config_error():
    with pytest.raises(ConfigError, match="timm"):
        create_encoder(EncoderConfig(name="no_such_net"), PreprocessConfig(), 32)


def test_encoder_loads_local_weights_and_rejects_wrong_files(tmp_path):
    from safetensors.torch import save_file

    pre = PreprocessConfig(image_size=64)
    src = TimmEncoder(EncoderConfig(name="test_resnet"), pre, 32)
    save_file({k: v.contiguous() for k, v in src.backbone.state_dict().items()}, str(tmp_path / "w.safetensors"))
    dst = TimmEncoder(EncoderConfig(name="test_resnet", weights=str(tmp_path / "w.safetensors")), pre, 32)
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(v, dst.backbone.state_dict()[k])
    other = TimmEncoder(EncoderConfig(name="test_vit"), pre, 32)
    torch.save(other.backbone.state_dict(), tmp_path / "vit.pt")
    with pytest.raises(ConfigError, match="does not match"):
        TimmEncoder(EncoderConfig(name="test_resnet", weights=str(tmp_path / "vit.pt")), pre, 32)


@pytest.mark.parametrize("name", available_decoders())
def test_decoders_score_and_generate_with_beams(name):
    dec = create_decoder(DecoderConfig(name=name, d_model=32, n_layer=1, n_head=4, max_len=20), 40, SPECIAL).eval()
    memory, mask = torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.long)
    logits = dec(
        input_ids=torch.randint(4, 40, (2, 7)), encoder_hidden_states=memory, encoder_attention_mask=mask
    ).logits
    assert logits.shape == (2, 7, 40)
    start = torch.full((2, 1), 2)
    kw = dict(
        input_ids=start,
        attention_mask=torch.ones_like(start),
        encoder_hidden_states=memory,
        encoder_attention_mask=mask,
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=3,
    )
    beams = dec.generate(num_beams=3, **kw)
    assert beams.shape[0] == 2 and beams.shape[1] <= 7
    assert torch.equal(dec.generate(num_beams=3, **kw), beams)  # deterministic


@pytest.mark.parametrize("name", available_decoders())
def test_decoder_output_depends_on_memory(name):
    dec = create_decoder(DecoderConfig(name=name, d_model=32, n_layer=1, n_head=4, max_len=20), 40, SPECIAL).eval()
    ids = torch.randint(4, 40, (1, 5))
    a = dec(input_ids=ids, encoder_hidden_states=torch.randn(1, 3, 32)).logits
    b = dec(input_ids=ids, encoder_hidden_states=torch.randn(1, 3, 32)).logits
    assert not torch.allclose(a, b)


def test_label_value_mapping():
    labels = torch.tensor([[1.0, 0.0, -1.0, float("nan")]])
    assert labels_to_prompt_values(labels).tolist() == [[1.0, 0.0, 0.5, 0.0]]
    target, known = findings_targets(labels)
    assert target.tolist() == [[1.0, 0.0, 0.0, 0.0]] and known.tolist() == [[1.0, 1.0, 0.0, 0.0]]


def test_multi_view_masking_ignores_padded_views():
    model = tiny_model()
    one = torch.randn(1, 1, 1, 64, 64)
    padded = torch.cat([one, torch.randn(1, 1, 1, 64, 64)], dim=1)
    t1, m1 = model.encode_images(one, torch.tensor([[True]]))
    t2, m2 = model.encode_images(padded, torch.tensor([[True, False]]))
    assert torch.allclose(model.findings_logits(t1, m1), model.findings_logits(t2, m2), atol=1e-5)
    assert m2.shape[1] == 2 * m1.shape[1]


def test_training_forward_losses_by_supervision_kind():
    model = tiny_model().train()
    labels = torch.tensor([[1.0] + [float("nan")] * 13] * 2)
    images = {"images": torch.randn(2, 1, 1, 64, 64), "view_mask": torch.ones(2, 1, dtype=torch.bool)}
    text = {
        "input_ids": torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
    }
    assert set(model({"labels": labels, **images})) == {"label"}
    assert set(model({"labels": labels, **text})) == {"text"}
    losses = model({"labels": labels, **images, **text})
    assert set(losses) == {"label", "text"}
    (losses["label"] + losses["text"]).backward()
    assert model.obs_embed.grad is not None and model.encoder.proj.weight.grad is not None


def test_generate_text_returns_probabilities():
    model = tiny_model()
    memory, mask = model.memory(torch.zeros(2, 14))
    seqs, probs = model.generate_text(memory, mask, GenerationConfig(num_beams=2, max_new_tokens=5))
    assert seqs.shape[0] == 2 and probs.shape[0] == 2
    assert ((probs >= 0) & (probs <= 1)).all()
