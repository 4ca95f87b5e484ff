"""TextEncoder.encode produces exactly what LTX2Pipeline feeds the transformer."""

from __future__ import annotations

import torch

from ltxtune.models import tiny
from ltxtune.models.load import load_text_encoder


def test_encode_matches_the_pipeline_prompt_path():
    pipe = tiny.build_tiny_pipeline()
    encoder = load_text_encoder("tiny")
    prompts = ["  a robot dancing in the rain ", "Cat!"]
    embeds, mask, _, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, max_sequence_length=64)
    video, audio, connector_mask = pipe.connectors(embeds, mask, padding_side=pipe.tokenizer.padding_side)

    ours = encoder.encode(prompts)
    assert ours.video.shape == (2, 64, 64) and ours.audio.shape == (2, 64, 32) and ours.mask.shape == (2, 64)
    torch.testing.assert_close(ours.video, video, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.audio, audio, atol=1e-6, rtol=0)
    assert torch.equal(ours.mask, connector_mask)
    # learnable registers replace padding, so the connector mask is all ones
    assert bool(ours.mask.all())


def test_tokenizer_pads_left_and_starts_with_bos():
    encoder = load_text_encoder("tiny")
    states, mask = encoder.gemma_states(["hi"])
    assert states.shape == (1, 64, 32 * 3)  # hidden 32 x (2 layers + embeddings)
    assert mask[0, :-3].sum() == 0 and mask[0, -3:].tolist() == [1, 1, 1]  # <bos> h i, left padded
    ids = encoder.tokenizer(["hi"]).input_ids[0]
    assert ids[0] == encoder.tokenizer.bos_token_id


def test_a_prompt_encodes_the_same_alone_or_in_a_batch():
    encoder = load_text_encoder("tiny", max_sequence_length=32)
    batch = encoder.encode(["first prompt", "second, longer prompt with more words"])
    alone = encoder.encode("second, longer prompt with more words")
    assert torch.equal(batch[1].video, alone.video)
    assert torch.equal(batch[1].audio, alone.audio)
    assert not torch.equal(batch[0].video, batch[1].video)
