"""Tensor names of the original LTX-2 / LTX-2.3 single file <-> the diffusers components.

The original layout is what Lightricks publishes (`ltx-2-19b-dev.safetensors`,
`ltx-2.3-22b-dev.safetensors`) and what ltx-core and ComfyUI load; the diffusers layout is what
`LTX2Pipeline.from_pretrained` loads. Every tensor keeps its values, shape and dtype: conversion is
a pure renaming, so it can stream bytes from one file to the other.

    model.diffusion_model.<dit key>                    -> transformer/<renamed>
    model.diffusion_model.{video,audio}_embeddings_connector.* and
    text_embedding_projection.*                        -> connectors/<renamed>
    vae.*                                              -> vae/<renamed, block indices remapped>
    audio_vae.*                                        -> audio_vae/<renamed>
    vocoder.*                                          -> vocoder/<renamed>

The renames work on whole dot-separated segments, so each map is a bijection and `KeyMap.to_original`
is its exact inverse. The video VAE's block indices depend on the block lists of the file's metadata
(`encoder_blocks`, `decoder_blocks`), hence a `KeyMap` per file.
"""

from __future__ import annotations

from dataclasses import dataclass

COMPONENTS = ("transformer", "connectors", "vae", "audio_vae", "vocoder")

DIT_PREFIX = "model.diffusion_model."
TEXT_PROJECTION_PREFIX = "text_embedding_projection."
CONNECTOR_NAMES = {"video_embeddings_connector": "video_connector", "audio_embeddings_connector": "audio_connector"}

# Leftovers of LTX-Video 0.9 files that no LTX-2 loader reads; dropped on purpose (and reported).
IGNORED_KEYS = (
    "vae.per_channel_statistics.channel",
    "vae.per_channel_statistics.mean-of-stds",
    "vae.per_channel_statistics.mean-of-stds_over_std-of-means",
)

# First segment of a DiT key.
_DIT_TOP = {
    "patchify_proj": "proj_in",
    "audio_patchify_proj": "audio_proj_in",
    "adaln_single": "time_embed",
    "audio_adaln_single": "audio_time_embed",
    "prompt_adaln_single": "prompt_adaln",
    "audio_prompt_adaln_single": "audio_prompt_adaln",
    "av_ca_video_scale_shift_adaln_single": "av_cross_attn_video_scale_shift",
    "av_ca_a2v_gate_adaln_single": "av_cross_attn_video_a2v_gate",
    "av_ca_audio_scale_shift_adaln_single": "av_cross_attn_audio_scale_shift",
    "av_ca_v2a_gate_adaln_single": "av_cross_attn_audio_v2a_gate",
}
# Any later segment of a DiT or connector key.
_BLOCK_SEGMENTS = {
    "q_norm": "norm_q",
    "k_norm": "norm_k",
    "scale_shift_table_a2v_ca_video": "video_a2v_cross_attn_scale_shift_table",
    "scale_shift_table_a2v_ca_audio": "audio_a2v_cross_attn_scale_shift_table",
    "transformer_1d_blocks": "transformer_blocks",
}
_TEXT_PROJECTION = {
    "aggregate_embed": "text_proj_in",  # LTX-2.0: one projection to the Gemma width
    "video_aggregate_embed": "video_text_proj_in",  # LTX-2.3: one per stream
    "audio_aggregate_embed": "audio_text_proj_in",
}
_LATENT_STATS = {"mean-of-means": "latents_mean", "std-of-means": "latents_std"}
_VOCODER_SEGMENTS = {"ups": "upsamplers", "resblocks": "resnets", "conv_pre": "conv_in", "conv_post": "conv_out",
                     "act_post": "act_out"}


def _invert(mapping: dict[str, str]) -> dict[str, str]:
    inverse = {v: k for k, v in mapping.items()}
    assert len(inverse) == len(mapping)
    return inverse


def _rename(segments: list[str], mapping: dict[str, str]) -> list[str]:
    return [mapping.get(s, s) for s in segments]


_DIT_TOP_BACK, _BLOCK_SEGMENTS_BACK = _invert(_DIT_TOP), _invert(_BLOCK_SEGMENTS)
_TEXT_PROJECTION_BACK, _CONNECTOR_NAMES_BACK = _invert(_TEXT_PROJECTION), _invert(CONNECTOR_NAMES)
_LATENT_STATS_BACK, _VOCODER_SEGMENTS_BACK = _invert(_LATENT_STATS), _invert(_VOCODER_SEGMENTS)


class UnknownKey(KeyError):
    """A tensor name that no LTX-2 component owns."""


@dataclass(frozen=True)
class VaeBlocks:
    """Where each original video-VAE block lands in diffusers (built from the metadata's block lists).

    encoder: original `down_blocks.<i>` -> diffusers path (`down_blocks.<j>`, `down_blocks.<j>.downsamplers.0`
    or `mid_block`); decoder: original `up_blocks.<i>` -> `mid_block`, `up_blocks.<j>.upsamplers.0` or
    `up_blocks.<j>`. ltx-core builds the decoder from `reversed(decoder_blocks)`, so `up_blocks.0` is the
    block next to the latent.
    """

    encoder: tuple[str, ...]
    decoder: tuple[str, ...]

    @classmethod
    def from_metadata(cls, vae: dict) -> "VaeBlocks":
        return cls(encoder=_encoder_paths(vae["encoder_blocks"]), decoder=_decoder_paths(vae["decoder_blocks"]))


class VaeLayoutError(ValueError):
    """A video VAE whose block list has no diffusers equivalent."""


def _encoder_paths(blocks: list) -> tuple[str, ...]:
    names = [block[0] for block in blocks]
    if len(names) < 1 or len(names) % 2 == 0 or any(
        (n == "res_x") != (i % 2 == 0) for i, n in enumerate(names)
    ) or not all(n.startswith("compress_") and n.endswith("_res") for n in names[1::2]):
        raise VaeLayoutError(f"video VAE encoder_blocks {names} do not alternate res_x / compress_*_res blocks")
    paths = []
    for i in range(len(names)):
        stage = i // 2
        if i == len(names) - 1:
            paths.append("mid_block")
        else:
            paths.append(f"down_blocks.{stage}" if i % 2 == 0 else f"down_blocks.{stage}.downsamplers.0")
    return tuple(paths)


def _decoder_paths(blocks: list) -> tuple[str, ...]:
    names = [block[0] for block in reversed(blocks)]
    if len(names) < 1 or len(names) % 2 == 0 or any(
        (n == "res_x") != (i % 2 == 0) for i, n in enumerate(names)
    ) or not all(n.startswith("compress_") and not n.endswith("_res") for n in names[1::2]):
        raise VaeLayoutError(f"video VAE decoder_blocks {names[::-1]} do not alternate res_x / compress_* blocks")
    paths = ["mid_block"]
    for i in range(1, len(names)):
        stage = (i - 1) // 2
        paths.append(f"up_blocks.{stage}.upsamplers.0" if i % 2 == 1 else f"up_blocks.{stage}")
    return tuple(paths)


class KeyMap:
    """Original single-file names <-> (component, diffusers name) for one file's layout."""

    def __init__(self, vae_blocks: VaeBlocks, bwe_vocoder: bool):
        self.vae_blocks = vae_blocks
        self.bwe_vocoder = bwe_vocoder  # LTX-2.3 nests vocoder.vocoder.* / vocoder.bwe_generator.* / vocoder.mel_stft.*
        self._vae_original = {
            "encoder": {path: i for i, path in enumerate(vae_blocks.encoder)},
            "decoder": {path: i for i, path in enumerate(vae_blocks.decoder)},
        }

    # ----- original -> diffusers -----
    def to_diffusers(self, key: str) -> tuple[str, str]:
        """(component, diffusers key) for an original key; raises UnknownKey."""
        if key.startswith(DIT_PREFIX):
            segments = key[len(DIT_PREFIX):].split(".")
            if segments[0] in CONNECTOR_NAMES:
                segments = [CONNECTOR_NAMES[segments[0]], *_rename(segments[1:], _BLOCK_SEGMENTS)]
                return "connectors", ".".join(segments)
            segments = [_DIT_TOP.get(segments[0], segments[0]), *_rename(segments[1:], _BLOCK_SEGMENTS)]
            return "transformer", ".".join(segments)
        if key.startswith(TEXT_PROJECTION_PREFIX):
            segments = key[len(TEXT_PROJECTION_PREFIX):].split(".")
            if segments[0] in _TEXT_PROJECTION and len(segments) == 2:
                return "connectors", f"{_TEXT_PROJECTION[segments[0]]}.{segments[1]}"
        elif key.startswith("vae."):
            return "vae", self._vae_to_diffusers(key[len("vae."):], key)
        elif key.startswith("audio_vae."):
            return "audio_vae", _stats_to_diffusers(key[len("audio_vae."):])
        elif key.startswith("vocoder."):
            return "vocoder", self._vocoder_to_diffusers(key[len("vocoder."):], key)
        raise UnknownKey(key)

    def _vae_to_diffusers(self, rest: str, key: str) -> str:
        segments = rest.split(".")
        if segments[0] == "per_channel_statistics":
            return _stats_to_diffusers(rest)
        part = segments[0]
        blocks_name = {"encoder": "down_blocks", "decoder": "up_blocks"}.get(part)
        if blocks_name and len(segments) > 3 and segments[1] == blocks_name:
            paths = self.vae_blocks.encoder if part == "encoder" else self.vae_blocks.decoder
            index = int(segments[2])
            if index >= len(paths):
                raise UnknownKey(key)
            tail = _rename(segments[3:], {"res_blocks": "resnets"})
            return ".".join([part, paths[index], *tail])
        return rest

    def _vocoder_to_diffusers(self, rest: str, key: str) -> str:
        segments = rest.split(".")
        if not self.bwe_vocoder:
            return ".".join(_rename(segments, _VOCODER_SEGMENTS))
        if segments[0] == "mel_stft":
            return rest
        if segments[0] in ("vocoder", "bwe_generator"):
            tail = _rename(segments[1:], _VOCODER_SEGMENTS)
            # diffusers' anti-aliasing downsampler holds its filter directly (no `lowpass` submodule).
            if "lowpass" in tail:
                tail.remove("lowpass")
            return ".".join([segments[0], *tail])
        raise UnknownKey(key)

    # ----- diffusers -> original -----
    def to_original(self, component: str, key: str) -> str:
        segments = key.split(".")
        if component == "transformer":
            top = _DIT_TOP_BACK.get(segments[0], segments[0])
            return DIT_PREFIX + ".".join([top, *_rename(segments[1:], _BLOCK_SEGMENTS_BACK)])
        if component == "connectors":
            if segments[0] in _TEXT_PROJECTION_BACK:
                return TEXT_PROJECTION_PREFIX + ".".join([_TEXT_PROJECTION_BACK[segments[0]], *segments[1:]])
            connector = _CONNECTOR_NAMES_BACK[segments[0]]
            return DIT_PREFIX + ".".join([connector, *_rename(segments[1:], _BLOCK_SEGMENTS_BACK)])
        if component == "vae":
            if segments[0] in _LATENT_STATS_BACK:
                return "vae.per_channel_statistics." + _LATENT_STATS_BACK[segments[0]]
            part = segments[0]
            if part in ("encoder", "decoder"):
                lookup = self._vae_original[part]
                # Longest block path first: `down_blocks.0.downsamplers.0`, then `down_blocks.0`, `mid_block`.
                for width in (4, 2, 1):
                    path = ".".join(segments[1:1 + width])
                    if path in lookup:
                        blocks_name = "down_blocks" if part == "encoder" else "up_blocks"
                        tail = _rename(segments[1 + width:], {"resnets": "res_blocks"})
                        return "vae." + ".".join([part, blocks_name, str(lookup[path]), *tail])
            return "vae." + key
        if component == "audio_vae":
            if segments[0] in _LATENT_STATS_BACK:
                return "audio_vae.per_channel_statistics." + _LATENT_STATS_BACK[segments[0]]
            return "audio_vae." + key
        if component == "vocoder":
            if not self.bwe_vocoder:
                return "vocoder." + ".".join(_rename(segments, _VOCODER_SEGMENTS_BACK))
            if segments[0] == "mel_stft":
                return "vocoder." + key
            tail = _rename(segments[1:], _VOCODER_SEGMENTS_BACK)
            if "downsample" in tail and tail[tail.index("downsample") + 1] == "filter":
                tail.insert(tail.index("downsample") + 1, "lowpass")
            return "vocoder." + ".".join([segments[0], *tail])
        raise ValueError(f"unknown component {component!r}")


def _stats_to_diffusers(rest: str) -> str:
    segments = rest.split(".")
    if segments[0] == "per_channel_statistics" and len(segments) == 2 and segments[1] in _LATENT_STATS:
        return _LATENT_STATS[segments[1]]
    return rest
