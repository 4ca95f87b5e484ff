"""The training loop's parts on their own: schedules, timesteps, optimisers, strategies."""

from __future__ import annotations

import pytest
import torch

from ltxtune.events import LogLine
from ltxtune.models.tiny import build_tiny_transformer
from ltxtune.models.text import PromptEmbeddings
from ltxtune.training.loop import example_for_step
from ltxtune.training.optim import build_optimizer
from ltxtune.training.schedules import lr_multiplier, sample_sigmas, shift_for_tokens
from ltxtune.training.strategies import Batch, strategy_for


@pytest.mark.parametrize(
    "name, expected",
    [
        ("constant", [1.0, 1.0, 1.0, 1.0]),
        ("linear", [1.0, 0.75, 0.5, 0.25]),
        ("cosine", [1.0, 0.8535534, 0.5, 0.1464466]),
        ("step", [1.0, 1.0, 0.5, 0.25]),  # halved at each third of the run
    ],
)
def test_learning_rate_schedules(name, expected):
    assert [lr_multiplier(name, step, 4) for step in range(4)] == pytest.approx(expected)


def test_warmup_then_constant():
    assert [lr_multiplier("constant_with_warmup", step, 10, warmup_steps=4) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_timestep_distribution_follows_the_token_count():
    assert shift_for_tokens(1024) == pytest.approx(0.95) and shift_for_tokens(4096) == pytest.approx(2.05)
    few = sample_sigmas(20000, 256, torch.Generator().manual_seed(0))
    many = sample_sigmas(20000, 6912, torch.Generator().manual_seed(0))
    assert few.min() > 0 and many.max() <= 1
    assert many.mean() > few.mean() + 0.1  # longer sequences train at higher noise
    again = sample_sigmas(5, 256, torch.Generator().manual_seed(3))
    assert torch.equal(again, sample_sigmas(5, 256, torch.Generator().manual_seed(3)))


def test_every_example_once_per_epoch():
    epoch = [example_for_step(42, step, 5) for step in range(5)]
    assert sorted(epoch) == [0, 1, 2, 3, 4]
    assert example_for_step(42, 7, 5) == example_for_step(42, 7, 5)


def test_adamw8bit_falls_back_on_cpu_with_a_warning():
    events = []
    parameter = torch.nn.Parameter(torch.zeros(3))
    optimizer = build_optimizer("adamw8bit", [parameter], 1e-3, torch.device("cpu"), events.append)
    assert type(optimizer) is torch.optim.AdamW
    assert [e.level for e in events if isinstance(e, LogLine)] == ["WARNING"]
    assert "adamw8bit needs CUDA" in events[0].message


@pytest.mark.parametrize("name", ["adamw", "adafactor", "prodigy"])
def test_other_optimisers_step(name):
    parameter = torch.nn.Parameter(torch.ones(4))
    optimizer = build_optimizer(name, [parameter], 1e-2, torch.device("cpu"), lambda e: None)
    parameter.sum().backward()
    optimizer.step()
    assert not torch.equal(parameter.detach(), torch.ones(4))


def _batch(reference: bool = False, audio: bool = False, is_image: bool = False) -> Batch:
    transformer = build_tiny_transformer()
    channels = transformer.config.in_channels
    prompt = PromptEmbeddings(video=torch.zeros(1, 16, transformer.config.caption_channels),
                              audio=torch.zeros(1, 16, transformer.config.caption_channels), mask=torch.ones(1, 16, dtype=torch.long))
    video = torch.randn(1, channels, 3, 2, 2)
    return transformer, Batch(video=video, audio=torch.randn(1, 4, 5, 4) if audio else None,
                              reference=torch.randn(1, channels, 3, 2, 2) if reference else None,
                              prompt=prompt, fps=24.0, is_image=is_image)


def test_image_to_video_holds_the_first_frame_clean_and_out_of_the_loss():
    transformer, batch = _batch()
    inputs = strategy_for("i2v", 1.0, 1.0, 0.0).prepare_inputs(batch, torch.tensor([0.7]), torch.Generator().manual_seed(0), transformer)
    tokens_per_frame = 4
    assert torch.equal(inputs.conditioning_mask[0, :tokens_per_frame], torch.ones(tokens_per_frame))
    assert inputs.conditioning_mask[0, tokens_per_frame:].sum() == 0
    assert torch.equal(inputs.video[0, :tokens_per_frame], batch.video.flatten(2).transpose(1, 2)[0, :tokens_per_frame])
    assert inputs.video_loss_mask[0, :tokens_per_frame].sum() == 0 and inputs.video_loss_mask[0, tokens_per_frame:].all()
    assert inputs.isolate_modalities  # no audio in this batch: the dummy audio token is cut off


def test_image_datasets_skip_first_frame_conditioning():
    transformer, batch = _batch(is_image=True)
    inputs = strategy_for("i2v", 1.0, 1.0, 0.0).prepare_inputs(batch, torch.tensor([0.7]), torch.Generator().manual_seed(0), transformer)
    assert inputs.conditioning_mask is None and inputs.video_loss_mask.all()


def test_video_to_video_appends_clean_reference_tokens_outside_the_loss():
    transformer, batch = _batch(reference=True)
    strategy = strategy_for("v2v", 0.0, 1.0, 0.0)
    inputs = strategy.prepare_inputs(batch, torch.tensor([0.5]), torch.Generator().manual_seed(0), transformer)
    target_tokens = 12
    assert inputs.video.shape[1] == 2 * target_tokens
    assert torch.equal(inputs.video[0, target_tokens:], batch.reference.flatten(2).transpose(1, 2)[0])
    assert inputs.conditioning_mask[0, target_tokens:].all() and inputs.conditioning_mask[0, :target_tokens].sum() == 0
    assert torch.equal(inputs.video_coords[:, :, :target_tokens], inputs.video_coords[:, :, target_tokens:])
    prediction = torch.zeros_like(inputs.video)
    prediction[:, target_tokens:] = 1000.0  # whatever is predicted for the references does not count
    loss, _ = strategy.loss(prediction, torch.zeros(1, 1, 1), inputs)
    assert loss == pytest.approx(inputs.video_target.pow(2).mean().item(), rel=1e-5)


def test_joint_audio_is_noised_with_the_same_sigma_and_weighted():
    transformer, batch = _batch(audio=True)
    sigma = torch.tensor([0.25])
    for weight in (1.0, 0.0):
        strategy = strategy_for("t2v", 0.0, weight, 0.0)
        inputs = strategy.prepare_inputs(batch, sigma, torch.Generator().manual_seed(0), transformer)
        assert not inputs.isolate_modalities and inputs.audio_target is not None
        x0 = batch.audio.transpose(1, 2).flatten(2)
        noise = inputs.audio_target + x0
        assert torch.allclose(inputs.audio, 0.75 * x0 + 0.25 * noise, atol=1e-6)
        loss, parts = strategy.loss(torch.zeros_like(inputs.video), torch.zeros_like(inputs.audio), inputs)
        assert loss == pytest.approx((parts["video"] + weight * parts["audio"]).item(), rel=1e-6)
