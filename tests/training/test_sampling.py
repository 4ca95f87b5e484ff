"""Validation previews with the tiny family: prompt caching, t2v / i2v / v2v rendering, LoRA strength,
restored training state, and the labelled reel. Media are made with PIL / PyAV at test time."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from ltxtune.models import load, tiny
from ltxtune.models.families import get_family
from ltxtune.models.lora import inject_lora, lora_layers
from ltxtune.specs.common import Bucket
from ltxtune.specs.plan import ValidationPrompt, ValidationRules
from ltxtune.media.encode import H264Writer as Mp4Writer
from ltxtune.training.reel import make_reel, preview_label
from ltxtune.training.sampling import (
    PreviewComponents,
    PreviewError,
    PreviewPrompts,
    encode_preview_prompts,
    render_previews,
)

FAMILY = get_family("tiny")
WIDTH, HEIGHT, FRAMES, FPS = 96, 64, 9, 24  # not square, so a width/height swap shows
AUDIO_RATE = 48000  # the tiny (LTX-2.3) vocoder's output rate


def rules_for(prompts: list[str], **changes) -> ValidationRules:
    return ValidationRules(
        prompts=[ValidationPrompt(prompt=p) for p in prompts],
        negative_prompt="blurry, low quality",
        frames=FRAMES,
        fps=FPS,
        bucket=Bucket(width=WIDTH, height=HEIGHT),
        **changes,
    )


RULES = rules_for(["a red ball bouncing on a wooden floor", "a cat"])


@pytest.fixture(scope="module")
def text_encoder():
    return load.load_text_encoder(FAMILY)


@pytest.fixture(scope="module")
def prompts(text_encoder) -> PreviewPrompts:
    return encode_preview_prompts(text_encoder, RULES)


@pytest.fixture(scope="module")
def components() -> PreviewComponents:
    return PreviewComponents.load(FAMILY)


@pytest.fixture(scope="module")
def transformer():
    """The tiny transformer with a LoRA whose lora_B is non-zero (so it changes the output), in train mode."""
    model = load.load_transformer(FAMILY)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # lora_A's Kaiming init draws from the global RNG
        inject_lora(model, rank=4, alpha=4.0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model.train()


def render(out_dir: Path, transformer, components, prompts, rules=RULES, **changes) -> list[Path]:
    args = dict(
        family=FAMILY, transformer=transformer, rules=rules, prompts=prompts, images=[], references=[], step=10,
        out_dir=out_dir, device="cpu", dtype=torch.float32, with_audio=True, seed=7, components=components,
    )
    args.update(changes)
    return render_previews(**args)


@dataclass
class Clip:
    frames: np.ndarray  # (F, H, W, 3) uint8
    fps: Fraction
    duration: float
    audio: np.ndarray | None  # (channels, samples)
    audio_rate: int


def read_clip(path: Path) -> Clip:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = stream.average_rate
        duration = container.duration / av.time_base
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    audio, rate = None, 0
    with av.open(str(path)) as container:
        if container.streams.audio:
            rate = container.streams.audio[0].codec_context.sample_rate
            audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return Clip(frames=frames, fps=fps, duration=duration, audio=audio, audio_rate=rate)


def write_clip(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    height, width = frames[0].shape[:2]
    with Mp4Writer(path, width, height, fps) as writer:
        for rgb in frames:
            writer.add(rgb)
    return path


def moving_square(width: int, height: int, count: int, *, colour=(255, 255, 255), background=0) -> list[np.ndarray]:
    frames = []
    for i in range(count):
        rgb = np.full((height, width, 3), background, np.uint8)
        x = (i * 4) % (width - 16)
        rgb[height // 4 : height // 4 + 16, x : x + 16] = colour
        frames.append(rgb)
    return frames


@pytest.fixture(scope="module")
def t2v_previews(tmp_path_factory, transformer, components, prompts) -> list[Path]:
    return render(tmp_path_factory.mktemp("t2v"), transformer, components, prompts)


# --------------------------------------------------------------------------------------------------


def test_prompt_embeddings_are_what_the_pipeline_would_encode_and_survive_a_save(text_encoder, prompts, tmp_path):
    loaded = PreviewPrompts.load(prompts.save(tmp_path / "prompts.safetensors"))
    assert loaded.prompts == tuple(p.prompt for p in RULES.prompts)
    assert loaded.negative_prompt == RULES.negative_prompt
    assert loaded.max_sequence_length == text_encoder.max_sequence_length
    for saved, original in zip((*loaded.states, loaded.negative_states), (*prompts.states, prompts.negative_states)):
        assert saved.device.type == "cpu" and torch.equal(saved, original)
        assert saved.shape[0] < text_encoder.max_sequence_length  # only the real tokens are kept

    texts = [p.prompt for p in RULES.prompts]
    for index, text in enumerate(texts):
        kwargs = loaded.pipeline_kwargs(index, device="cpu", dtype=torch.float32)
        assert kwargs["prompt_embeds"].shape == kwargs["negative_prompt_embeds"].shape  # the pipelines require it
        video, audio, mask = text_encoder.connectors(kwargs["prompt_embeds"], kwargs["prompt_attention_mask"])
        expected = text_encoder.encode(text)
        assert torch.equal(video, expected.video)  # bit-identical: the padding's content never matters
        assert torch.equal(audio, expected.audio)
        assert torch.equal(mask, expected.mask)

    # The LTX-2.0 connectors (masked mean/range normalisation) also ignore what the padding held.
    connectors = tiny.build_tiny_connectors("ltx2")
    full_states, full_mask = text_encoder.gemma_states([texts[0]])
    kwargs = loaded.pipeline_kwargs(0, device="cpu")
    with torch.no_grad():
        want = connectors(full_states, full_mask)
        got = connectors(kwargs["prompt_embeds"], kwargs["prompt_attention_mask"])
    for a, b in zip(got, want):
        assert torch.equal(a, b)

    assert loaded.matches(RULES)
    assert not loaded.matches(rules_for(["another prompt", "a cat"]))
    assert not loaded.matches(RULES, negative_prompt="something else")


def test_t2v_preview_is_a_playable_mp4_of_the_requested_size_with_audio(t2v_previews):
    assert [p.name for p in t2v_previews] == ["step000010_prompt1.mp4", "step000010_prompt2.mp4"]
    for path in t2v_previews:
        clip = read_clip(path)
        assert clip.frames.shape == (FRAMES, HEIGHT, WIDTH, 3)
        assert clip.fps == FPS
        assert clip.duration == pytest.approx(FRAMES / FPS, abs=0.02)
        assert clip.audio_rate == AUDIO_RATE and clip.audio.shape[0] == 2
        assert clip.audio.shape[1] / AUDIO_RATE == pytest.approx(FRAMES / FPS, abs=0.01)
        assert np.abs(clip.audio).max() > 0  # generated sound, not padding
    first, second = (read_clip(p).frames.astype(int) for p in t2v_previews)
    assert np.abs(first - second).mean() > 1  # different prompts, different previews


@pytest.mark.parametrize("with_audio, rules_audio", [(False, True), (True, False)])
def test_audio_track_only_when_the_run_and_the_plan_both_ask(tmp_path, transformer, components, text_encoder,
                                                             with_audio, rules_audio):
    rules = rules_for(["a cat"], audio=rules_audio)
    prompts = encode_preview_prompts(text_encoder, rules)
    (path,) = render(tmp_path, transformer, components, prompts, rules=rules, with_audio=with_audio)
    clip = read_clip(path)
    assert clip.audio is None
    assert clip.frames.shape == (FRAMES, HEIGHT, WIDTH, 3)


def test_lora_strength_is_applied_in_eval_mode_and_everything_is_restored(tmp_path, transformer, components, text_encoder):
    rules = rules_for(["a cat"], lora_strength=1.0)
    prompts = encode_preview_prompts(text_encoder, rules)
    layers = lora_layers(transformer)
    first_layer = next(iter(layers.values()))
    scales = {name: layer.scaling["default"] for name, layer in layers.items()}
    seen: list[tuple[bool, float, bool]] = []

    def spy(module, args, kwargs):
        seen.append((module.training, first_layer.scaling["default"], torch.is_grad_enabled()))

    hook = transformer.register_forward_pre_hook(spy, with_kwargs=True)
    rng = torch.get_rng_state()
    try:
        (full,) = render(tmp_path / "full", transformer, components, prompts, rules=rules)
        (again,) = render(tmp_path / "again", transformer, components, prompts, rules=rules)
        rules_off = rules.model_copy(update={"lora_strength": 0.0})
        (off,) = render(tmp_path / "off", transformer, components, prompts, rules=rules_off)
        rules_half = rules.model_copy(update={"lora_strength": 0.5})
        (half,) = render(tmp_path / "half", transformer, components, prompts, rules=rules_half)
    finally:
        hook.remove()

    full, again, off, half = (read_clip(p).frames.astype(int) for p in (full, again, off, half))
    # Same seed, same output (H.264 may round a few pixels differently between encodes), and the LoRA
    # visibly changes the result at strength 1 and 0.5 compared with 0.
    assert np.abs(full - again).mean() < 1.5
    assert np.abs(full - off).mean() > 5
    assert np.abs(half - off).mean() > 3 and np.abs(half - full).mean() > 3

    base = scales[next(iter(layers))]
    assert {s for _, s, _ in seen} == {base * 1.0, base * 0.0, base * 0.5}
    assert not any(training for training, _, _ in seen)  # eval mode while rendering
    assert not any(grad for _, _, grad in seen)  # no autograd graph

    assert all(module.training for module in transformer.modules())  # train mode is back
    assert {name: layer.scaling["default"] for name, layer in layers.items()} == scales
    lora_params = [p for n, p in transformer.named_parameters() if "lora_" in n]
    assert lora_params and all(p.requires_grad and p.grad is None for p in lora_params)
    assert torch.equal(torch.get_rng_state(), rng)  # the training RNG stream is untouched


def test_i2v_preview_starts_from_the_image(tmp_path, transformer, components, text_encoder, monkeypatch):
    rules = rules_for(["the ball rolls away"])
    prompts = encode_preview_prompts(text_encoder, rules)
    red_blue = np.zeros((96, 128, 3), np.uint8)  # another aspect than the bucket: fitted, not stretched
    red_blue[:, :64], red_blue[:, 64:] = (230, 40, 40), (40, 40, 230)
    image_a = tmp_path / "a.png"
    Image.fromarray(red_blue).save(image_a)
    image_b = tmp_path / "b.png"
    green_yellow = np.zeros((96, 128, 3), np.uint8)
    green_yellow[:48], green_yellow[48:] = (40, 200, 40), (230, 230, 40)
    Image.fromarray(green_yellow).save(image_b)

    decoded: list[torch.Tensor] = []
    original_decode = components.vae.decode

    def capture(latents, *args, **kwargs):
        decoded.append(latents.detach().clone())
        return original_decode(latents, *args, **kwargs)

    monkeypatch.setattr(components.vae, "decode", capture)

    def first_latent_frame(**changes) -> torch.Tensor:
        (path,) = render(tmp_path / f"out{len(decoded)}", transformer, components, prompts, rules=rules, **changes)
        assert read_clip(path).frames.shape == (FRAMES, HEIGHT, WIDTH, 3)
        return decoded[-1][:, :, 0]

    a_seed1 = first_latent_frame(images=[image_a], seed=1)
    a_seed2 = first_latent_frame(images=[image_a], seed=2)
    b_seed1 = first_latent_frame(images=[image_b], seed=1)
    t2v_seed1 = first_latent_frame(seed=1)
    # The first frame is the image's (clean, whatever the noise), and it is this image's.
    torch.testing.assert_close(a_seed1, a_seed2)
    assert (a_seed1 - b_seed1).abs().mean() > 1e-2
    assert (a_seed1 - t2v_seed1).abs().mean() > 1e-2
    assert (decoded[0][:, :, 1:] - decoded[1][:, :, 1:]).abs().mean() > 1e-2  # the rest is generated


def test_v2v_preview_is_conditioned_on_the_reference(tmp_path, transformer, components, text_encoder, monkeypatch):
    import diffusers

    rules = rules_for(["the same motion, in watercolour"])
    prompts = encode_preview_prompts(text_encoder, rules)
    # 30 fps, 20 frames (0.67 s), 80x60: resampled to 24 fps and fitted to 96x64 like a training reference.
    ref_a = write_clip(tmp_path / "a.mp4", moving_square(80, 60, 20), fps=30)
    ref_b = write_clip(tmp_path / "b.mp4", moving_square(80, 60, 20, colour=(255, 0, 0), background=200), fps=30)

    calls = []
    original_call = diffusers.LTX2InContextPipeline.__call__

    def spy(self, *args, **kwargs):
        calls.append(kwargs["reference_conditions"])
        return original_call(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.LTX2InContextPipeline, "__call__", spy)
    (out_a,) = render(tmp_path / "a", transformer, components, prompts, rules=rules, references=[ref_a])
    (out_b,) = render(tmp_path / "b", transformer, components, prompts, rules=rules, references=[ref_b])

    assert len(calls) == 2
    (condition,) = calls[0]
    assert condition.strength == 1.0
    assert len(condition.frames) == FRAMES and condition.frames[0].size == (WIDTH, HEIGHT)
    clip_a, clip_b = read_clip(out_a), read_clip(out_b)
    assert clip_a.frames.shape == (FRAMES, HEIGHT, WIDTH, 3) and clip_a.audio is not None
    assert np.abs(clip_a.frames.astype(int) - clip_b.frames.astype(int)).mean() > 1  # the reference matters


def test_a_failing_preview_names_its_prompt_and_leaves_the_transformer_training(tmp_path, transformer, components,
                                                                                 text_encoder):
    rules = rules_for(["a cat"])
    prompts = encode_preview_prompts(text_encoder, rules)
    with pytest.raises(PreviewError, match=r"prompt 1 \(v2v"):
        render(tmp_path, transformer, components, prompts, rules=rules, references=[tmp_path / "missing.mp4"])
    assert transformer.training
    with pytest.raises(ValueError, match="re-encode"):
        render(tmp_path, transformer, components, prompts, rules=rules_for(["a dog"]))


def test_reel_concatenates_labelled_previews_in_sync(tmp_path, t2v_previews):
    # A third, silent clip of another size: scaled/padded to the common size, silence on the audio track.
    gray = write_clip(tmp_path / "gray.mp4", [np.full((64, 64, 3), 128, np.uint8)] * 5, fps=FPS)
    entries = [(preview_label(10, i, p.prompt), path) for i, (p, path) in enumerate(zip(RULES.prompts, t2v_previews))]
    entries.append(("step 10 · prompt 3: gray", gray))
    reel = make_reel(entries, tmp_path / "out" / "reel.mp4")

    clip = read_clip(reel)
    total = FRAMES + FRAMES + 5
    assert clip.frames.shape == (total, HEIGHT, WIDTH, 3)
    assert clip.fps == FPS
    assert clip.duration == pytest.approx(total / FPS, abs=0.02)
    assert clip.audio_rate == AUDIO_RATE
    assert clip.audio.shape[1] / AUDIO_RATE == pytest.approx(total / FPS, abs=0.01)
    start_gray = round(2 * FRAMES / FPS * AUDIO_RATE)
    sound, silence = clip.audio[:, 2048:start_gray - 2048], clip.audio[:, start_gray + 2048:]
    assert np.abs(sound).max() > 10 * max(np.abs(silence).max(), 1e-4)

    # The gray segment: centred with black bars, and a banner (dark, with white text) across the top.
    frame = clip.frames[-1].astype(int)
    body = frame[HEIGHT // 2 :]
    assert np.abs(body[:, WIDTH // 2] - 128).max() <= 3
    assert body[:, :8].max() <= 20 and body[:, -8:].max() <= 20
    banner = frame[:6, 16:80]
    assert banner.max() >= 200 and banner.min() <= 60

    # The second segment is the second preview, in order (H.264 twice over noise-like frames is lossy).
    first, second = (read_clip(p).frames[4, 20:].astype(int) for p in t2v_previews)
    shown = clip.frames[FRAMES + 4, 20:].astype(int)
    assert np.abs(shown - second).mean() < 0.5 * np.abs(shown - first).mean()


def test_reel_retimes_segments_to_a_common_frame_rate(tmp_path):
    slow = write_clip(tmp_path / "slow.mp4", moving_square(64, 64, 6), fps=12)  # 0.5 s
    fast = write_clip(tmp_path / "fast.mp4", moving_square(64, 64, 9), fps=24)  # 0.375 s
    clip = read_clip(make_reel([("slow", slow), ("fast", fast)], tmp_path / "reel.mp4"))
    assert clip.fps == 24 and len(clip.frames) == 12 + 9
    assert clip.audio is None
    with pytest.raises(ValueError):
        make_reel([], tmp_path / "empty.mp4")


def test_components_of_a_real_family_load_from_its_directory_and_render(tmp_path, monkeypatch, transformer,
                                                                        text_encoder):
    """The ltx23 loading path (diffusers-format directory, connectors without Gemma), on the tiny weights."""
    from ltxtune.models.tiny import export_tiny

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LTXTUNE_LTX23_MODEL", str(export_tiny(tmp_path / "ltx23")))
    family = get_family("ltx23")
    components = PreviewComponents.load(family)
    assert type(components.connectors).__name__ == "LTX2TextConnectors"
    assert type(components.vocoder).__name__ == "LTX2VocoderWithBWE"
    assert components.vae.use_tiling  # full-size previews decode in tiles next to the training state
    assert not any(p.requires_grad for p in components.connectors.parameters())

    rules = rules_for(["a cat"], stg_scale=0.0)  # ltx23's STG block 28 does not exist in 2 tiny blocks
    prompts = encode_preview_prompts(text_encoder, rules)
    (path,) = render(tmp_path / "out", transformer, components, prompts, rules=rules, family=family,
                     num_inference_steps=2)
    assert read_clip(path).frames.shape == (FRAMES, HEIGHT, WIDTH, 3)
