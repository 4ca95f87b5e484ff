"""Diffusers configs of the five components, derived from an original checkpoint's own metadata.

An original LTX-2.x single file carries its architecture in `__metadata__["config"]` (a JSON
string with sections `transformer`, `vae`, `audio_vae`, `vocoder`), the way ltx-core's
configurators and ComfyUI read it. `diffusers_configs` turns those sections (plus a few tensor
shapes the metadata does not state, such as the text projection's input width) into the configs of
`LTX2VideoTransformer3DModel`, `LTX2TextConnectors`, `AutoencoderKLLTX2Video`,
`AutoencoderKLLTX2Audio` and `LTX2Vocoder` / `LTX2VocoderWithBWE`. Nothing is hard-coded per
release, so a checkpoint of any size converts.

`original_metadata` is the inverse (diffusers configs -> metadata sections), used to write
original-layout files from diffusers components (`ltxtune.models.single_file_write`).
"""

from __future__ import annotations

import math
from typing import Any

Shapes = dict[str, list[int]]

_DOWNSAMPLE = {"compress_space_res": "spatial", "compress_time_res": "temporal", "compress_all_res": "spatiotemporal"}
_UPSAMPLE = {"compress_space": "spatial", "compress_time": "temporal", "compress_all": "spatiotemporal"}
_STRIDE = {"spatial": (1, 2), "temporal": (2, 1), "spatiotemporal": (2, 2)}  # (time, space) factors


class ArchitectureError(ValueError):
    """Metadata that describes something the diffusers classes cannot represent (or no LTX-2 model)."""


def _require(section: dict, name: str, key: str) -> Any:
    if key not in section:
        raise ArchitectureError(f"the metadata's {name} section has no {key!r}")
    return section[key]


def is_ltx23(transformer: dict) -> bool:
    """LTX-2.3 markers: gated attention and the prompt AdaLN (cross-attention AdaLN)."""
    return bool(transformer.get("apply_gated_attention") or transformer.get("cross_attention_adaln"))


def diffusers_configs(config: dict, shapes: Shapes) -> dict[str, tuple[str, dict[str, Any]]]:
    """component -> (diffusers class name, config) for `config` = the decoded `__metadata__["config"]`."""
    for section in ("transformer", "vae", "audio_vae", "vocoder"):
        if not isinstance(config.get(section), dict):
            raise ArchitectureError(f"the metadata's config has no {section!r} section")
    vae = video_vae_config(config["vae"])
    audio_vae = audio_vae_config(config["audio_vae"])
    vocoder_class, vocoder = vocoder_config(config["vocoder"], audio_vae)
    transformer = transformer_config(config["transformer"], vae, audio_vae, shapes)
    connectors = connectors_config(config["transformer"], shapes)
    return {
        "transformer": ("LTX2VideoTransformer3DModel", transformer),
        "connectors": ("LTX2TextConnectors", connectors),
        "vae": ("AutoencoderKLLTX2Video", vae),
        "audio_vae": ("AutoencoderKLLTX2Audio", audio_vae),
        "vocoder": (vocoder_class, vocoder),
    }


def transformer_config(t: dict, vae: dict, audio_vae: dict, shapes: Shapes) -> dict[str, Any]:
    name = "transformer"
    v23 = is_ltx23(t)
    max_pos = _require(t, name, "positional_embedding_max_pos")
    audio_in = shapes.get("model.diffusion_model.audio_patchify_proj.weight")
    if audio_in is None:
        raise ArchitectureError("the file has no model.diffusion_model.audio_patchify_proj.weight (not an LTX-2 audio-video model)")
    qk_norm = t.get("qk_norm", "rms_norm")
    if qk_norm != "rms_norm":
        raise ArchitectureError(f"transformer qk_norm {qk_norm!r} is not supported (only rms_norm)")
    return dict(
        in_channels=_require(t, name, "in_channels"), out_channels=_require(t, name, "out_channels"),
        patch_size=1, patch_size_t=1,
        num_attention_heads=_require(t, name, "num_attention_heads"),
        attention_head_dim=_require(t, name, "attention_head_dim"),
        cross_attention_dim=_require(t, name, "cross_attention_dim"),
        vae_scale_factors=[vae["temporal_compression_ratio"], vae["spatial_compression_ratio"], vae["spatial_compression_ratio"]],
        pos_embed_max_pos=max_pos[0], base_height=max_pos[1], base_width=max_pos[2],
        gated_attn=bool(t.get("apply_gated_attention", False)), cross_attn_mod=bool(t.get("cross_attention_adaln", False)),
        audio_in_channels=audio_in[1], audio_out_channels=_require(t, name, "audio_out_channels"),
        audio_patch_size=1, audio_patch_size_t=1,
        audio_num_attention_heads=_require(t, name, "audio_num_attention_heads"),
        audio_attention_head_dim=_require(t, name, "audio_attention_head_dim"),
        audio_cross_attention_dim=_require(t, name, "audio_cross_attention_dim"),
        audio_scale_factor=2 ** (len(audio_vae["ch_mult"]) - 1),
        audio_pos_embed_max_pos=t.get("audio_positional_embedding_max_pos", [20])[0],
        audio_sampling_rate=audio_vae["sample_rate"], audio_hop_length=audio_vae["mel_hop_length"],
        audio_gated_attn=bool(t.get("apply_gated_attention", False)),
        audio_cross_attn_mod=bool(t.get("cross_attention_adaln", False)),
        num_layers=_require(t, name, "num_layers"),
        activation_fn=t.get("activation_fn", "gelu-approximate"),
        qk_norm="rms_norm_across_heads",
        norm_elementwise_affine=bool(t.get("norm_elementwise_affine", False)),
        norm_eps=t.get("norm_eps", 1e-6),
        caption_channels=_require(t, name, "caption_channels"),
        attention_bias=bool(t.get("attention_bias", True)), attention_out_bias=bool(t.get("attention_bias", True)),
        rope_theta=float(t.get("positional_embedding_theta", 10000.0)),
        rope_double_precision=t.get("frequencies_precision", "float32") == "float64",
        causal_offset=1 if t.get("causal_temporal_positioning", False) else 0,
        timestep_scale_multiplier=t.get("timestep_scale_multiplier", 1000),
        cross_attn_timestep_scale_multiplier=t.get("av_ca_timestep_scale_multiplier", 1),
        rope_type=t.get("rope_type", "interleaved"),
        # LTX-2.0 projects captions inside the DiT; LTX-2.3 before the connectors.
        use_prompt_embeddings=not t.get("caption_proj_before_connector", False),
        perturbed_attn=v23,
    )


def connectors_config(t: dict, shapes: Shapes) -> dict[str, Any]:
    name = "transformer"
    caption_channels = _require(t, name, "caption_channels")
    per_modality = bool(t.get("caption_proj_before_connector", False))
    if per_modality:
        video = shapes.get("text_embedding_projection.video_aggregate_embed.weight")
        audio = shapes.get("text_embedding_projection.audio_aggregate_embed.weight")
        if video is None or audio is None:
            raise ArchitectureError("the metadata says caption_proj_before_connector but the file has no "
                                    "text_embedding_projection.{video,audio}_aggregate_embed.weight")
        in_features = video[1]
        proj_bias = "text_embedding_projection.video_aggregate_embed.bias" in shapes
    else:
        shared = shapes.get("text_embedding_projection.aggregate_embed.weight")
        if shared is None:
            raise ArchitectureError("the file has no text_embedding_projection.aggregate_embed.weight")
        video = audio = None
        in_features = shared[1]
        proj_bias = "text_embedding_projection.aggregate_embed.bias" in shapes
    if in_features % caption_channels:
        raise ArchitectureError(f"text projection input width {in_features} is not a multiple of caption_channels {caption_channels}")
    config = dict(
        caption_channels=caption_channels, text_proj_in_factor=in_features // caption_channels,
        video_connector_num_attention_heads=_require(t, name, "connector_num_attention_heads"),
        video_connector_attention_head_dim=_require(t, name, "connector_attention_head_dim"),
        video_connector_num_layers=_require(t, name, "connector_num_layers"),
        video_connector_num_learnable_registers=t.get("connector_num_learnable_registers", 128),
        video_gated_attn=bool(t.get("connector_apply_gated_attention", False)),
        audio_connector_num_attention_heads=t.get("audio_connector_num_attention_heads", t["connector_num_attention_heads"]),
        audio_connector_attention_head_dim=t.get("audio_connector_attention_head_dim", t["connector_attention_head_dim"]),
        audio_connector_num_layers=t["connector_num_layers"],
        audio_connector_num_learnable_registers=t.get("connector_num_learnable_registers", 128),
        audio_gated_attn=bool(t.get("connector_apply_gated_attention", False)),
        connector_rope_base_seq_len=t.get("connector_positional_embedding_max_pos", [1])[0],
        rope_theta=float(t.get("positional_embedding_theta", 10000.0)),
        rope_double_precision=t.get("frequencies_precision", "float32") == "float64",
        causal_temporal_positioning=False, rope_type=t.get("rope_type", "interleaved"),
        per_modality_projections=per_modality, proj_bias=proj_bias,
    )
    if per_modality:
        config.update(video_hidden_dim=video[0], audio_hidden_dim=audio[0])
    return config


def video_vae_config(v: dict) -> dict[str, Any]:
    name = "vae"
    for flag, wanted in (("timestep_conditioning", False), ("latent_log_var", "uniform"), ("use_quant_conv", False),
                         ("normalize_latent_channels", False)):
        if v.get(flag, wanted) != wanted:
            raise ArchitectureError(f"video VAE {flag}={v[flag]!r} is not supported (expected {wanted!r})")
    latent = _require(v, name, "latent_channels")
    encoder_blocks, decoder_blocks = _require(v, name, "encoder_blocks"), _require(v, name, "decoder_blocks")
    encoder_base = v.get("encoder_base_channels", 128)
    if encoder_base != latent:
        raise ArchitectureError(f"video VAE encoder_base_channels {encoder_base} != latent_channels {latent}: "
                                "diffusers' AutoencoderKLLTX2Video cannot represent it")
    # Encoder: res_x, compress, res_x, ..., res_x (the last one is diffusers' mid block).
    layers, block_out, downsample_type = [], [], []
    channels, time_factor, space_factor = encoder_base, 1, 1
    for i, (kind, params) in enumerate(encoder_blocks):
        if i % 2 == 0:
            if kind != "res_x":
                raise ArchitectureError(f"video VAE encoder block {i} is {kind!r}, expected res_x")
            layers.append(params["num_layers"])
            continue
        if kind not in _DOWNSAMPLE:
            raise ArchitectureError(f"video VAE encoder block {i} {kind!r} is not supported")
        channels *= params.get("multiplier", 2)
        block_out.append(channels)
        downsample_type.append(_DOWNSAMPLE[kind])
        t_factor, s_factor = _STRIDE[_DOWNSAMPLE[kind]]
        time_factor, space_factor = time_factor * t_factor, space_factor * s_factor
    # Decoder, from the latent side: res_x (mid), compress, res_x, ...
    reversed_blocks = list(reversed(decoder_blocks))
    decoder_layers, decoder_in, upsample_type, upsample_factor, upsample_residual, inject_noise = [], [], [], [], [], []
    for i, (kind, params) in enumerate(reversed_blocks):
        if i % 2 == 0:
            if kind != "res_x":
                raise ArchitectureError(f"video VAE decoder block {kind!r} where res_x was expected")
            decoder_layers.append(params["num_layers"])
            inject_noise.append(bool(params.get("inject_noise", False)))
            continue
        if kind not in _UPSAMPLE:
            raise ArchitectureError(f"video VAE decoder block {kind!r} is not supported")
        upsample_type.append(_UPSAMPLE[kind])
        upsample_factor.append(params.get("multiplier", 1))
        upsample_residual.append(bool(params.get("residual", False)))
    decoder_base = v.get("decoder_base_channels", 128)
    mid = decoder_base * math.prod(upsample_factor)
    channels = mid
    for factor in upsample_factor:  # diffusers: up block i takes reversed(block_out)[i] and yields that // factor
        decoder_in.append(channels)
        channels //= factor
    padding = v.get("spatial_padding_mode", "zeros")
    patch = v.get("patch_size", 4)
    return dict(
        in_channels=v.get("in_channels", 3), out_channels=v.get("out_channels", 3), latent_channels=latent,
        block_out_channels=block_out, down_block_types=["LTX2VideoDownBlock3D"] * len(block_out),
        decoder_block_out_channels=list(reversed(decoder_in)),
        layers_per_block=layers, decoder_layers_per_block=list(reversed(decoder_layers)),
        spatio_temporal_scaling=[True] * len(block_out), decoder_spatio_temporal_scaling=[True] * len(upsample_type),
        decoder_inject_noise=list(reversed(inject_noise)),
        downsample_type=downsample_type, upsample_type=upsample_type,
        upsample_residual=list(reversed(upsample_residual)), upsample_factor=list(reversed(upsample_factor)),
        timestep_conditioning=False, patch_size=patch, patch_size_t=1, resnet_norm_eps=1e-6,
        encoder_causal=True, decoder_causal=bool(v.get("causal_decoder", False)),
        encoder_spatial_padding_mode=v.get("encoder_spatial_padding_mode", padding),
        decoder_spatial_padding_mode=v.get("decoder_spatial_padding_mode", padding),
        spatial_compression_ratio=patch * space_factor, temporal_compression_ratio=time_factor,
    )


def audio_vae_config(a: dict) -> dict[str, Any]:
    try:
        params = a["model"]["params"]
        dd = params["ddconfig"]
        stft = a["preprocessing"]["stft"]
    except (KeyError, TypeError):
        raise ArchitectureError("the metadata's audio_vae section lacks model.params.ddconfig or preprocessing.stft") from None
    return dict(
        base_channels=dd["ch"], output_channels=dd["out_ch"], ch_mult=list(dd["ch_mult"]),
        num_res_blocks=dd["num_res_blocks"], attn_resolutions=list(dd["attn_resolutions"]) or None,
        in_channels=dd["in_channels"], resolution=dd["resolution"], latent_channels=dd["z_channels"],
        norm_type=dd.get("norm_type", "pixel"), causality_axis=dd.get("causality_axis", "height"),
        dropout=dd.get("dropout", 0.0), mid_block_add_attention=bool(dd.get("mid_block_add_attention", False)),
        sample_rate=params.get("sampling_rate", 16000), mel_hop_length=stft["hop_length"],
        is_causal=bool(stft.get("causal", True)), mel_bins=dd["mel_bins"], double_z=bool(dd.get("double_z", True)),
    )


def _generator(g: dict, in_channels: int) -> dict[str, Any]:
    """One HiFi-GAN / BigVGAN generator section -> LTX2Vocoder arguments."""
    resblock = g.get("resblock", "1")
    if resblock == "AMP1":
        act_fn, antialias = g.get("activation", "snakebeta"), True
    elif resblock == "1":
        act_fn, antialias = "leaky_relu", False
    else:
        raise ArchitectureError(f"vocoder resblock {resblock!r} is not supported")
    final_act = g.get("use_tanh_at_final", True) and g.get("apply_final_activation", True)
    return dict(
        in_channels=in_channels, hidden_channels=g["upsample_initial_channel"], out_channels=2 if g.get("stereo", True) else 1,
        upsample_kernel_sizes=list(g["upsample_kernel_sizes"]), upsample_factors=list(g["upsample_rates"]),
        resnet_kernel_sizes=list(g["resblock_kernel_sizes"]), resnet_dilations=[list(d) for d in g["resblock_dilation_sizes"]],
        act_fn=act_fn, leaky_relu_negative_slope=0.1, antialias=antialias, antialias_ratio=2, antialias_kernel_size=12,
        final_act_fn="tanh" if final_act else None, final_bias=bool(g.get("use_bias_at_final", True)),
    )


def vocoder_config(voc: dict, audio_vae: dict) -> tuple[str, dict[str, Any]]:
    mel_rate = audio_vae["sample_rate"] / audio_vae["mel_hop_length"]  # mel frames per second
    mel_channels = audio_vae["output_channels"] * audio_vae["mel_bins"]  # stereo mels stacked on channels
    if "vocoder" not in voc:  # LTX-2.0: one generator
        config = _generator(voc, mel_channels)
        config["output_sampling_rate"] = round(mel_rate * math.prod(config["upsample_factors"]))
        return "LTX2Vocoder", config
    base, bwe = voc["vocoder"], voc.get("bwe")
    if not isinstance(bwe, dict):
        raise ArchitectureError("the metadata's vocoder section nests a vocoder but has no bwe section")
    config = _generator(base, mel_channels)
    bwe_config = _generator(bwe, 2 * bwe["num_mels"] if bwe.get("stereo", True) else bwe["num_mels"])
    config.update({f"bwe_{k}": value for k, value in bwe_config.items()})
    config.update(
        filter_length=bwe["n_fft"], hop_length=bwe["hop_length"], window_length=bwe["win_size"],
        num_mel_channels=bwe["num_mels"], input_sampling_rate=bwe["input_sampling_rate"],
        output_sampling_rate=bwe["output_sampling_rate"],
    )
    return "LTX2VocoderWithBWE", config


# ----- inverse: diffusers configs -> original metadata (for writing original-layout files) -----

def original_metadata(configs: dict[str, dict[str, Any]], vocoder_class: str) -> dict[str, Any]:
    """The `__metadata__["config"]` sections an original file of these diffusers components carries."""
    t, c, v, a, voc = (configs[k] for k in ("transformer", "connectors", "vae", "audio_vae", "vocoder"))
    v23 = bool(t["cross_attn_mod"])
    transformer = dict(
        _class_name="AVTransformer3DModel", activation_fn=t["activation_fn"], attention_bias=t["attention_bias"],
        attention_head_dim=t["attention_head_dim"], caption_channels=c["caption_channels"],
        cross_attention_dim=t["cross_attention_dim"], in_channels=t["in_channels"],
        norm_elementwise_affine=t["norm_elementwise_affine"], norm_eps=t["norm_eps"],
        num_attention_heads=t["num_attention_heads"], num_layers=t["num_layers"], out_channels=t["out_channels"],
        qk_norm="rms_norm", positional_embedding_type="rope", positional_embedding_theta=t["rope_theta"],
        positional_embedding_max_pos=[t["pos_embed_max_pos"], t["base_height"], t["base_width"]],
        timestep_scale_multiplier=t["timestep_scale_multiplier"],
        av_ca_timestep_scale_multiplier=float(t["cross_attn_timestep_scale_multiplier"]),
        causal_temporal_positioning=bool(t["causal_offset"]),
        audio_num_attention_heads=t["audio_num_attention_heads"], audio_attention_head_dim=t["audio_attention_head_dim"],
        audio_out_channels=t["audio_out_channels"], audio_cross_attention_dim=t["audio_cross_attention_dim"],
        audio_positional_embedding_max_pos=[t["audio_pos_embed_max_pos"]],
        use_audio_video_cross_attention=True, av_cross_ada_norm=True, use_embeddings_connector=True,
        connector_attention_head_dim=c["video_connector_attention_head_dim"],
        connector_num_attention_heads=c["video_connector_num_attention_heads"],
        connector_num_layers=c["video_connector_num_layers"],
        connector_positional_embedding_max_pos=[c["connector_rope_base_seq_len"]],
        connector_num_learnable_registers=c["video_connector_num_learnable_registers"],
        connector_norm_output=True, use_middle_indices_grid=True, rope_type=t["rope_type"],
        frequencies_precision="float64" if t["rope_double_precision"] else "float32",
    )
    if v23:
        transformer.update(
            apply_gated_attention=bool(t["gated_attn"]), connector_apply_gated_attention=bool(c["video_gated_attn"]),
            caption_projection_first_linear=False, caption_projection_second_linear=False, caption_proj_input_norm=False,
            caption_proj_before_connector=bool(c["per_modality_projections"]), cross_attention_adaln=True,
            audio_connector_attention_head_dim=c["audio_connector_attention_head_dim"],
            audio_connector_num_attention_heads=c["audio_connector_num_attention_heads"],
            connector_learnable_registers_std=1, text_encoder_norm_type="per_token_rms",
        )
    return dict(transformer=transformer, vae=_original_vae(v), audio_vae=_original_audio_vae(a),
                vocoder=_original_vocoder(voc, vocoder_class))


def _original_vae(v: dict[str, Any]) -> dict[str, Any]:
    downsample = {value: key for key, value in _DOWNSAMPLE.items()}
    upsample = {value: key for key, value in _UPSAMPLE.items()}
    encoder, channels = [], v["latent_channels"]
    for layers, out, kind in zip(v["layers_per_block"], v["block_out_channels"], v["downsample_type"]):
        encoder += [["res_x", {"num_layers": layers}], [downsample[kind], {"multiplier": out // channels}]]
        channels = out
    encoder.append(["res_x", {"num_layers": v["layers_per_block"][-1]}])
    # diffusers lists the decoder from the output side; ltx-core's decoder_blocks too (it builds reversed).
    factors = v["upsample_factor"]
    decoder = []
    layers = v["decoder_layers_per_block"]
    for i in range(len(v["upsample_type"])):
        decoder.append(["res_x", {"num_layers": layers[i], "inject_noise": v["decoder_inject_noise"][i]}])
        decoder.append([upsample[v["upsample_type"][::-1][i]],
                        {"residual": v["upsample_residual"][i], "multiplier": factors[i]}])
    decoder.append(["res_x", {"num_layers": layers[-1], "inject_noise": v["decoder_inject_noise"][-1]}])
    final = v["decoder_block_out_channels"][0] // factors[0]
    return dict(
        _class_name="CausalVideoAutoencoder", dims=3, in_channels=v["in_channels"], out_channels=v["out_channels"],
        latent_channels=v["latent_channels"], encoder_blocks=encoder, decoder_blocks=decoder, scaling_factor=1.0,
        norm_layer="pixel_norm", patch_size=v["patch_size"], latent_log_var="uniform", use_quant_conv=False,
        causal_decoder=v["decoder_causal"], timestep_conditioning=False, normalize_latent_channels=False,
        encoder_base_channels=v["latent_channels"], decoder_base_channels=final,
        encoder_spatial_padding_mode=v["encoder_spatial_padding_mode"],
        decoder_spatial_padding_mode=v["decoder_spatial_padding_mode"],
    )


def _original_audio_vae(a: dict[str, Any]) -> dict[str, Any]:
    ddconfig = dict(
        double_z=a["double_z"], mel_bins=a["mel_bins"], z_channels=a["latent_channels"], resolution=a["resolution"],
        downsample_time=False, in_channels=a["in_channels"], out_ch=a["output_channels"], ch=a["base_channels"],
        ch_mult=list(a["ch_mult"]), num_res_blocks=a["num_res_blocks"], attn_resolutions=list(a["attn_resolutions"] or []),
        dropout=a["dropout"], mid_block_add_attention=a["mid_block_add_attention"], norm_type=a["norm_type"],
        causality_axis=a["causality_axis"],
    )
    return dict(
        model=dict(params=dict(ddconfig=ddconfig, sampling_rate=a["sample_rate"])),
        preprocessing=dict(stft=dict(filter_length=1024, hop_length=a["mel_hop_length"], win_length=1024, causal=a["is_causal"]),
                           mel=dict(n_mel_channels=a["mel_bins"], mel_fmin=0, mel_fmax=a["sample_rate"] // 2),
                           audio=dict(sampling_rate=a["sample_rate"], stereo=a["in_channels"] == 2)),
    )


def _original_generator(g: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    amp = g[prefix + "antialias"]
    section = dict(
        upsample_initial_channel=g[prefix + "hidden_channels"], resblock="AMP1" if amp else "1",
        upsample_rates=list(g[prefix + "upsample_factors"]), resblock_kernel_sizes=list(g[prefix + "resnet_kernel_sizes"]),
        upsample_kernel_sizes=list(g[prefix + "upsample_kernel_sizes"]),
        resblock_dilation_sizes=[list(d) for d in g[prefix + "resnet_dilations"]], stereo=g[prefix + "out_channels"] == 2,
        use_tanh_at_final=g[prefix + "final_act_fn"] == "tanh", use_bias_at_final=bool(g[prefix + "final_bias"]),
    )
    if amp:
        section["activation"] = g[prefix + "act_fn"]
    return section


def _original_vocoder(voc: dict[str, Any], vocoder_class: str) -> dict[str, Any]:
    if vocoder_class == "LTX2Vocoder":
        return _original_generator(voc)
    bwe = _original_generator(voc, "bwe_")
    bwe.update(apply_final_activation=voc["bwe_final_act_fn"] is not None, input_sampling_rate=voc["input_sampling_rate"],
               output_sampling_rate=voc["output_sampling_rate"], hop_length=voc["hop_length"], n_fft=voc["filter_length"],
               win_size=voc["window_length"], num_mels=voc["num_mel_channels"])
    return dict(vocoder=_original_generator(voc), bwe=bwe)
