"""Report decoders, registered by name; both are `transformers` models so both use its `generate()`.

- "transformer": GPT-2 built from a config with cross-attention (no hub weights). transformers gives
  us attention, the KV cache, beam search, length penalty and `no_repeat_ngram_size`.
- "lstm": an LSTM with additive attention over the memory (Show-Attend-Tell style). Wrapping it as a
  `PreTrainedModel` + `GenerationMixin` lets it share the same beam search instead of a hand-written one;
  it runs without a cache (re-reads the prefix each step), which is cheap at report lengths.

Both take `encoder_hidden_states` (B, M, d) and `encoder_attention_mask` (B, M) as the memory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers import GenerationMixin, GPT2Config, GPT2LMHeadModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from reportgen.config import DecoderConfig
from reportgen.errors import ConfigError

DecoderFactory = Callable[[DecoderConfig, int, dict[str, int]], nn.Module]
_DECODERS: dict[str, DecoderFactory] = {}


def register_decoder(name: str) -> Callable[[DecoderFactory], DecoderFactory]:
    def deco(fn: DecoderFactory) -> DecoderFactory:
        _DECODERS[name] = fn
        return fn

    return deco


def available_decoders() -> list[str]:
    return sorted(_DECODERS)


def create_decoder(cfg: DecoderConfig, vocab_size: int, special: dict[str, int]) -> nn.Module:
    """Build a decoder by registry name. `special` holds pad/bos/eos token ids."""
    if cfg.name not in _DECODERS:
        raise ConfigError(f"unknown decoder {cfg.name!r}; available: {available_decoders()}")
    return _DECODERS[cfg.name](cfg, vocab_size, special)


@register_decoder("transformer")
def _gpt2(cfg: DecoderConfig, vocab_size: int, special: dict[str, int]) -> nn.Module:
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=cfg.max_len + 2,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        add_cross_attention=True,
        bos_token_id=special["bos"],
        eos_token_id=special["eos"],
        pad_token_id=special["pad"],
        tie_word_embeddings=True,
    )
    return GPT2LMHeadModel(config)


class LSTMDecoderConfig(PretrainedConfig):
    model_type = "reportgen_lstm"

    def __init__(self, vocab_size=1000, d_model=256, n_layer=1, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_layer = n_layer
        self.num_hidden_layers = n_layer
        self.dropout = dropout
        self.is_decoder = True
        self.use_cache = False  # no KV cache: generate() re-runs the prefix


class LSTMAttnDecoder(PreTrainedModel, GenerationMixin):
    """Input feeding LSTM: each step sees the previous token and the attention context of the memory."""

    config_class = LSTMDecoderConfig
    main_input_name = "input_ids"

    def __init__(self, config: LSTMDecoderConfig):
        super().__init__(config)
        d = config.d_model
        self.embed = nn.Embedding(config.vocab_size, d)
        self.lstm = nn.LSTM(2 * d, d, num_layers=config.n_layer, batch_first=True)
        self.attn_q = nn.Linear(d, d)
        self.attn_v = nn.Linear(d, 1)
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Linear(2 * d, config.vocab_size)
        self.post_init()

    def _init_weights(self, module):  # transformers calls this from post_init
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def _attend(self, h: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Additive attention of one step's hidden state (B, d) over memory (B, M, d)."""
        scores = self.attn_v(torch.tanh(memory + self.attn_q(h).unsqueeze(1))).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, torch.finfo(scores.dtype).min)
        return (scores.softmax(-1).unsqueeze(-1) * memory).sum(1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutput:
        emb = self.drop(self.embed(input_ids))
        bsz, length, d = emb.shape
        memory = encoder_hidden_states
        context = memory.mean(1) if memory is not None else emb.new_zeros(bsz, d)
        state = None
        outs = []
        for t in range(length):  # input feeding needs the previous context, hence the explicit loop
            step, state = self.lstm(torch.cat([emb[:, t], context], -1).unsqueeze(1), state)
            h = step[:, 0]
            context = self._attend(h, memory, encoder_attention_mask) if memory is not None else context
            outs.append(torch.cat([h, context], -1))
        logits = self.out(self.drop(torch.stack(outs, 1)))
        return CausalLMOutput(logits=logits)

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        # No cache: the whole prefix is re-read each step.
        return {
            "input_ids": input_ids,
            "encoder_hidden_states": kwargs.get("encoder_hidden_states"),
            "encoder_attention_mask": kwargs.get("encoder_attention_mask"),
        }


@register_decoder("lstm")
def _lstm(cfg: DecoderConfig, vocab_size: int, special: dict[str, int]) -> nn.Module:
    config = LSTMDecoderConfig(
        vocab_size=vocab_size,
        d_model=cfg.d_model,
        n_layer=cfg.n_layer,
        dropout=cfg.dropout,
        bos_token_id=special["bos"],
        eos_token_id=special["eos"],
        pad_token_id=special["pad"],
    )
    return LSTMAttnDecoder(config)
