"""Prompt -> the text embeddings the LTX-2 transformer consumes (Gemma 3 + the LTX2 text connectors).

Mirrors `LTX2Pipeline._get_gemma_prompt_embeds` + `LTX2Pipeline.__call__`'s connector call
(`diffusers/pipelines/ltx2/pipeline_ltx2.py`):

1. tokenizer with `padding_side="left"` (pad token falls back to eos), prompts `.strip()`-ed,
   `padding="max_length"`, `max_length=max_sequence_length` (1024 in the pipeline), truncation,
   special tokens (Gemma adds `<bos>`);
2. `text_encoder(input_ids, attention_mask, output_hidden_states=True).hidden_states` -> all
   `num_layers + 1` states stacked on a new last dim and flattened: (B, T, hidden * (layers + 1));
3. `connectors(embeds, attention_mask, padding_side=tokenizer.padding_side)` ->
   (video_embeds, audio_embeds, connector_mask).

The connectors output is what the transformer takes as `encoder_hidden_states` /
`audio_encoder_hidden_states` / `encoder_attention_mask` / `audio_encoder_attention_mask`. Caching
this output (not the Gemma states, which are 49x larger for Gemma 3 12B) is what training should do.
With learnable registers (all released LTX-2.x connectors) padding positions are replaced by
registers and the returned mask is all ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PromptEmbeddings:
    """Text conditioning for one batch of prompts, ready for `LTX2VideoTransformer3DModel.forward`.

    video: (B, T, Dv) -> `encoder_hidden_states`  (Dv = caption_channels for LTX-2.0, 4096 for LTX-2.3)
    audio: (B, T, Da) -> `audio_encoder_hidden_states` (Da = caption_channels for LTX-2.0, 2048 for LTX-2.3)
    mask:  (B, T) int64, 1 = attend -> `encoder_attention_mask` and `audio_encoder_attention_mask`;
           None when every token is attended (lets the fused attention kernels take the text)
    """

    video: torch.Tensor
    audio: torch.Tensor
    mask: torch.Tensor | None

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> PromptEmbeddings:
        return PromptEmbeddings(
            video=self.video.to(device=device, dtype=dtype),
            audio=self.audio.to(device=device, dtype=dtype),
            mask=None if self.mask is None else self.mask.to(device=device),
        )

    @staticmethod
    def cat(items: Sequence[PromptEmbeddings]) -> PromptEmbeddings:
        return PromptEmbeddings(
            video=torch.cat([e.video for e in items]),
            audio=torch.cat([e.audio for e in items]),
            mask=torch.cat([e.mask for e in items]),
        )

    def __getitem__(self, index: int | slice) -> PromptEmbeddings:
        index = slice(index, index + 1) if isinstance(index, int) else index
        return PromptEmbeddings(video=self.video[index], audio=self.audio[index], mask=self.mask[index])


class TextEncoder:
    """Gemma 3 + LTX2TextConnectors, frozen, with one job: `encode(prompts)`.

    Drop the object (and call `torch.cuda.empty_cache()`) once the captions are cached: Gemma 3 12B
    is ~24 GB in bf16 and need not share the GPU with the transformer.
    """

    def __init__(self, tokenizer, text_encoder, connectors, *, max_sequence_length: int) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.connectors = connectors.eval().requires_grad_(False)
        self.max_sequence_length = max_sequence_length
        self.tokenizer.padding_side = "left"  # Gemma expects left padding (LTX2Pipeline sets it too)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @property
    def device(self) -> torch.device:
        return next(self.text_encoder.parameters()).device

    @torch.no_grad()
    def gemma_states(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1-2: packed Gemma hidden states (B, T, hidden * (layers + 1)) and the token mask (B, T)."""
        tokens = self.tokenizer(
            [p.strip() for p in prompts],
            padding="max_length",
            max_length=self.max_sequence_length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        input_ids = tokens.input_ids.to(self.device)
        mask = tokens.attention_mask.to(self.device)
        out = self.text_encoder(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        states = torch.stack(out.hidden_states, dim=-1).flatten(2, 3)
        # The pipeline casts to the text encoder's dtype; we cast to the connectors' so mixed-dtype setups work.
        return states.to(dtype=next(self.connectors.parameters()).dtype), mask

    @torch.no_grad()
    def encode(self, prompts: str | Sequence[str]) -> PromptEmbeddings:
        """Embeddings for each prompt. Prompts are encoded one at a time, so a prompt's embedding does not
        depend on what else is in the batch (bit-identical to encoding it alone)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        results = []
        for prompt in prompts:
            states, mask = self.gemma_states([prompt])
            video, audio, connector_mask = self.connectors(states, mask, padding_side=self.tokenizer.padding_side)
            results.append(PromptEmbeddings(video=video, audio=audio, mask=connector_mask))
        return PromptEmbeddings.cat(results)
