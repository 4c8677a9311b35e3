"""ReportModel: image(s) -> visual tokens -> findings probabilities -> label prompt -> report tokens.

Reads top to bottom:
1. `encode_images`: a shared timm encoder runs on every view; a learned view embedding tells views apart;
   tokens of all views are concatenated (multi-view fusion by cross-attention in the decoder).
2. `findings_logits`: a linear head on the pooled tokens predicts the 14 CheXpert observations.
3. `label_prompt`: one token per observation, `obs_i + v_i * e_pos + (1 - v_i) * e_neg` with v_i in
   [0, 1] (1 positive, 0.5 uncertain, 0 negative/not mentioned). This is the findings-label *bridge*:
   the decoder can be trained on reports + labels with no image at all, and the image side on images +
   labels with no report; at inference the image's predicted labels fill the prompt.
4. The decoder (GPT-2 with cross-attention, or an LSTM) attends to [label prompt ; visual tokens].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reportgen.config import GenerationConfig, ModelConfig
from reportgen.constants import OBSERVATIONS
from reportgen.models.decoder import create_decoder
from reportgen.models.encoder import create_encoder

N_OBS = len(OBSERVATIONS)


def labels_to_prompt_values(labels: torch.Tensor) -> torch.Tensor:
    """CheXpert label values (1 / 0 / -1 / NaN) -> prompt strengths (1 / 0 / 0.5 / 0)."""
    values = torch.where(labels == -1, torch.full_like(labels, 0.5), labels)
    return torch.nan_to_num(values, nan=0.0).clamp(0.0, 1.0)


def findings_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE targets and a mask: positives 1, negatives 0; uncertain and unknown (NaN) are ignored."""
    mask = (labels == 1) | (labels == 0)
    return torch.nan_to_num(labels, nan=0.0).clamp(min=0.0), mask.float()


class ReportModel(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, special: dict[str, int]):
        super().__init__()
        self.cfg = cfg
        self.special = dict(special)
        d = cfg.decoder.d_model
        self.encoder = create_encoder(cfg.encoder, cfg.preprocess, d)
        self.view_embed = nn.Embedding(cfg.max_views, d)
        self.findings_head = nn.Linear(d, N_OBS)
        self.obs_embed = nn.Parameter(torch.randn(N_OBS, d) * 0.02)
        self.state_embed = nn.Parameter(torch.randn(2, d) * 0.02)  # [positive, negative]
        self.decoder = create_decoder(cfg.decoder, vocab_size, special)

    # 1. images -> tokens ----------------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor, view_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, V, C, S, S) images and (B, V) bool mask of present views -> (B, V*N, d) tokens and mask."""
        b, v = images.shape[:2]
        tokens = self.encoder(images.flatten(0, 1))  # shared encoder over all views: (B*V, N, d)
        n = tokens.shape[1]
        tokens = tokens.view(b, v, n, -1) + self.view_embed.weight[:v].view(1, v, 1, -1)
        token_mask = view_mask[:, :, None].expand(b, v, n)
        return tokens.reshape(b, v * n, -1), token_mask.reshape(b, v * n)

    # 2. tokens -> findings ---------------------------------------------------------------------------
    def findings_logits(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """Mean of the present views' tokens -> 14 logits."""
        m = token_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.findings_head(pooled)

    # 3. labels -> prompt ----------------------------------------------------------------------------
    def label_prompt(self, values: torch.Tensor) -> torch.Tensor:
        """(B, 14) strengths in [0, 1] -> (B, 14, d) prompt tokens."""
        v = values.unsqueeze(-1)
        return self.obs_embed + v * self.state_embed[0] + (1 - v) * self.state_embed[1]

    def memory(
        self, values: torch.Tensor, tokens: torch.Tensor | None = None, token_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder memory: the label prompt, followed by the visual tokens when the model uses them."""
        parts = [self.label_prompt(values)]
        masks = [torch.ones(values.shape[0], N_OBS, dtype=torch.long, device=values.device)]
        if tokens is not None and self.cfg.visual_tokens:
            parts.append(tokens)
            masks.append(token_mask.long())
        return torch.cat(parts, 1), torch.cat(masks, 1)

    # 4. decoder -------------------------------------------------------------------------------------
    def text_loss(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced next-token cross-entropy. `input_ids` starts with BOS and ends with EOS."""
        logits = self.decoder(
            input_ids=input_ids[:, :-1],
            attention_mask=attention_mask[:, :-1],
            encoder_hidden_states=memory,
            encoder_attention_mask=memory_mask,
        ).logits
        target = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)

    @torch.no_grad()
    def generate_text(
        self, memory: torch.Tensor, memory_mask: torch.Tensor, gen: GenerationConfig
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Beam/greedy search via transformers. Returns token ids (B, L) without BOS and per-token probs (B, L)."""
        b = memory.shape[0]
        start = torch.full((b, 1), self.special["bos"], dtype=torch.long, device=memory.device)
        out = self.decoder.generate(
            input_ids=start,
            attention_mask=torch.ones_like(start),
            encoder_hidden_states=memory,
            encoder_attention_mask=memory_mask,
            num_beams=gen.num_beams,
            max_new_tokens=min(gen.max_new_tokens, self.cfg.decoder.max_len),
            length_penalty=gen.length_penalty,
            no_repeat_ngram_size=gen.no_repeat_ngram_size,
            do_sample=False,
            early_stopping=True if gen.num_beams > 1 else False,
            bos_token_id=self.special["bos"],
            eos_token_id=self.special["eos"],
            pad_token_id=self.special["pad"],
            output_scores=True,
            return_dict_in_generate=True,
        )
        seqs = out.sequences[:, 1:]
        scores = self.decoder.compute_transition_scores(
            out.sequences, out.scores, out.get("beam_indices"), normalize_logits=True
        )
        probs = scores.exp()[:, : seqs.shape[1]]
        return seqs, probs

    # training step ------------------------------------------------------------------------------------
    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Losses for one batch of any supervision kind; DDP needs this to be the module's forward.

        - images present: masked BCE of the findings head on known (positive/negative) labels;
        - tokens present: LM loss, the prompt filled with the reference labels (teacher forcing of the bridge),
          plus the visual tokens when the batch has images (paired data).
        """
        losses: dict[str, torch.Tensor] = {}
        labels = batch["labels"]
        tokens = token_mask = None
        if "images" in batch:
            tokens, token_mask = self.encode_images(batch["images"], batch["view_mask"])
            logits = self.findings_logits(tokens, token_mask)
            target, known = findings_targets(labels)
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            losses["label"] = (bce * known).sum() / known.sum().clamp(min=1.0)
        if "input_ids" in batch:
            memory, memory_mask = self.memory(labels_to_prompt_values(labels), tokens, token_mask)
            losses["text"] = self.text_loss(batch["input_ids"], batch["attention_mask"], memory, memory_mask)
        return losses

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
