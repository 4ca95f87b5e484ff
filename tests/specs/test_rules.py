"""Each page's own rules, and each documented range and enum at both edges and just outside."""

import pytest

from ltxtune.protocols import build_plan, render_errors
from ltxtune.specs import RequestInvalid

T2V = "fal-ai/ltx23-trainer-v2/t2v"
I2V = "fal-ai/ltx23-trainer-v2/i2v"
V1 = "fal-ai/ltx23-video-trainer"
V2V = "fal-ai/ltx23-v2v-trainer"
FAL = [T2V, I2V, V1, V2V]
URL = "https://example.com/d.zip"


def fal_body(**fields):
    return {"training_data_url": URL, **fields}


def civitai_body(step=None, **inputs):
    base = {"engine": "ai-toolkit", "ecosystem": "ltx23",
            "trainingData": {"type": "zip", "sourceUrl": URL, "count": 4}}
    return {"steps": [{"$type": "training", **(step or {}), "input": {**base, **inputs}}]}


def issues(endpoint, body):
    with pytest.raises(RequestInvalid) as caught:
        build_plan(endpoint, body)
    return {(issue.path, issue.msg) for issue in caught.value.issues}


def paths(endpoint, body):
    return {path for path, _ in issues(endpoint, body)}


FAL_RANGES = [
    ("number_of_steps", 100, 20000, 0, 20100),
    ("learning_rate", 0.000001, 1, 0.0000009, 1.01),
    ("number_of_frames", 9, 121, 8, 122),
    ("frame_rate", 8, 60, 7, 61),
    ("split_input_duration_threshold", 1.0, 60.0, 0.99, 60.01),
    ("validation_number_of_frames", 9, 121, 8, 122),
    ("validation_frame_rate", 8, 60, 7, 61),
    ("stg_scale", 0.0, 3.0, -0.01, 3.01),
]


@pytest.mark.parametrize("endpoint", FAL)
@pytest.mark.parametrize("field, low, high, below, above", FAL_RANGES)
def test_fal_ranges(endpoint, field, low, high, below, above):
    if endpoint in (V1, V2V) and field == "number_of_frames":
        low, high, below, above = 9, 121, 1, 129  # must be 8k+1 on the first-version pages
    build_plan(endpoint, fal_body(**{field: low}))
    build_plan(endpoint, fal_body(**{field: high}))
    low_issues = issues(endpoint, fal_body(**{field: below}))
    high_issues = issues(endpoint, fal_body(**{field: above}))
    assert {path for path, _ in low_issues} == {field}
    assert {path for path, _ in high_issues} == {field}
    assert any(str(low) in msg or "greater" in msg for _, msg in low_issues)


@pytest.mark.parametrize("endpoint", [I2V, V1, V2V])
def test_first_frame_conditioning_range(endpoint):
    assert build_plan(endpoint, fal_body(first_frame_conditioning_p=0)).optimisation.first_frame_p == 0
    assert build_plan(endpoint, fal_body(first_frame_conditioning_p=1)).optimisation.first_frame_p == 1
    assert issues(endpoint, fal_body(first_frame_conditioning_p=-0.01)) == {
        ("first_frame_conditioning_p", "Input should be greater than or equal to 0")}
    assert issues(endpoint, fal_body(first_frame_conditioning_p=1.01)) == {
        ("first_frame_conditioning_p", "Input should be less than or equal to 1")}


def test_first_frame_conditioning_defaults_differ_per_page():
    assert build_plan(T2V, fal_body()).optimisation.first_frame_p == 0.0
    assert build_plan(I2V, fal_body()).optimisation.first_frame_p == 0.5
    assert build_plan(V1, fal_body()).optimisation.first_frame_p == 0.5
    assert build_plan(V2V, fal_body()).optimisation.first_frame_p == 0.1


def test_t2v_has_no_first_frame_conditioning_field():
    plan = build_plan(T2V, fal_body(first_frame_conditioning_p=0.9))
    assert plan.optimisation.first_frame_p == 0.0
    assert plan.warnings == ["unknown field 'first_frame_conditioning_p' ignored"]


@pytest.mark.parametrize("endpoint, default_fps", [(T2V, 24), (I2V, 24), (V1, 25), (V2V, 25)])
def test_frame_rate_defaults(endpoint, default_fps):
    plan = build_plan(endpoint, fal_body())
    assert (plan.dataset.fps, plan.validation.fps) == (default_fps, default_fps)


@pytest.mark.parametrize("endpoint", [T2V, I2V])
@pytest.mark.parametrize("asked, snapped", [(9, 9), (10, 9), (96, 89), (97, 97), (120, 113), (121, 121)])
def test_v2_snaps_frames_down(endpoint, asked, snapped):
    plan = build_plan(endpoint, fal_body(number_of_frames=asked, validation_number_of_frames=asked))
    assert (plan.dataset.frames, plan.validation.frames) == (snapped, snapped)


@pytest.mark.parametrize("endpoint", [V1, V2V])
def test_first_version_requires_8k_plus_1(endpoint):
    assert build_plan(endpoint, fal_body(number_of_frames=97)).dataset.frames == 97
    ((path, msg),) = issues(endpoint, fal_body(number_of_frames=96))
    assert path == "number_of_frames"
    assert msg.startswith("must satisfy frames % 8 == 1") and "89 and 97" in msg
    # validation frames are not documented as a hard rule there: snapped
    assert build_plan(endpoint, fal_body(validation_number_of_frames=96)).validation.frames == 89


@pytest.mark.parametrize("endpoint", [T2V, I2V])
def test_v2_steps_in_steps_of_100(endpoint):
    assert build_plan(endpoint, fal_body(number_of_steps=1200)).optimisation.steps == 1200
    assert issues(endpoint, fal_body(number_of_steps=1250)) == {("number_of_steps", "Input should be a multiple of 100")}


@pytest.mark.parametrize("endpoint", [V1, V2V])
def test_first_version_steps_any_integer(endpoint):
    assert build_plan(endpoint, fal_body(number_of_steps=1250)).optimisation.steps == 1250


@pytest.mark.parametrize("endpoint", FAL)
def test_enums(endpoint):
    for rank in (8, 16, 32, 64, 128, "32"):
        assert build_plan(endpoint, fal_body(rank=rank)).lora.rank == int(rank)
    assert issues(endpoint, fal_body(rank=24)) == {("rank", "Input should be 8, 16, 32, 64 or 128")}
    for resolution, ratio, size in [("low", "16:9", (512, 288)), ("medium", "9:16", (448, 768)), ("high", "1:1", (960, 960))]:
        bucket = build_plan(endpoint, fal_body(resolution=resolution, aspect_ratio=ratio)).dataset.bucket
        assert (bucket.width, bucket.height) == size
    assert issues(endpoint, fal_body(resolution="ultra", aspect_ratio="4:3", validation_resolution="x")) == {
        ("resolution", "Input should be 'low', 'medium' or 'high'"),
        ("aspect_ratio", "Input should be '16:9', '1:1' or '9:16'"),
        ("validation_resolution", "Input should be 'low', 'medium' or 'high'"),
    }


@pytest.mark.parametrize("endpoint", FAL)
@pytest.mark.parametrize("value", [True, False, None])
def test_with_audio_true_false_null(endpoint, value):
    assert build_plan(endpoint, fal_body(with_audio=value)).dataset.audio.use is value


def test_required_training_data_url():
    assert issues(T2V, {}) == {("training_data_url", "Field required")}


def test_t2v_validation_entries():
    plan = build_plan(T2V, fal_body(validation=[{"prompt": "a"}, {"prompt": "b"}]))
    assert [p.prompt for p in plan.validation.prompts] == ["a", "b"]
    assert plan.validation.at_steps == [500, 1000, 1500, 2000]
    assert paths(T2V, fal_body(validation=[{"prompt": "a"}] * 3)) == {"validation"}
    assert paths(T2V, fal_body(validation=[{}])) == {"validation[0].prompt"}


def test_i2v_validation_needs_image():
    assert paths(I2V, fal_body(validation=[{"prompt": "a"}])) == {"validation[0].image_url"}
    assert paths(I2V, fal_body(validation=[{"prompt": "a", "image_url": "u"}] * 3)) == {"validation"}


def test_video_trainer_images_all_or_none():
    build_plan(V1, fal_body(validation=[{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}]))
    build_plan(V1, fal_body(validation=[{"prompt": "a", "image_url": "u"}, {"prompt": "b", "image_url": "v"}]))
    assert issues(V1, fal_body(validation=[{"prompt": "a", "image_url": "u"}, {"prompt": "b"}])) == {
        ("validation", "when one validation entry has an image_url, all must have one; entries [1] have none")}


def test_v2v_validation_reference_videos():
    plan = build_plan(V2V, fal_body(validation=[{"prompt": "a", "reference_video_url": "r1"}, {"prompt": "b", "video_url": "r2"}]))
    assert [p.reference_video_url for p in plan.validation.prompts] == ["r1", "r2"]
    assert paths(V2V, fal_body(validation=[{"prompt": "a"}])) == {"validation[0].reference_video_url"}
    assert build_plan(V2V, fal_body(reference_transform="canny")).dataset.reference_transform == "canny"
    assert paths(V2V, fal_body(reference_transform="sepia")) == {"reference_transform"}


def test_every_error_at_once():
    found = paths(T2V, {"rank": 7, "number_of_frames": 200, "frame_rate": 1, "stg_scale": 9})
    assert found == {"training_data_url", "rank", "number_of_frames", "frame_rate", "stg_scale"}


def test_fal_error_rendering():
    with pytest.raises(RequestInvalid) as caught:
        build_plan(I2V, fal_body(rank=7, validation=[{"prompt": "a"}]))
    detail = render_errors(I2V, caught.value)["detail"]
    assert {"loc": ["body", "rank"], "msg": "Input should be 8, 16, 32, 64 or 128", "type": "literal_error"} in detail
    assert {"loc": ["body", "validation", 0, "image_url"], "msg": "Field required", "type": "missing"} in detail


CIVITAI_RANGES = [
    ("steps", 1, 10000, 0, 10001),
    ("epochs", 1, 20, 0, 21),
    ("networkDim", 1, 256, 0, 257),
    ("networkAlpha", 1, 256, 0, 257),
    ("noiseOffset", 0, 1, -0.1, 1.1),
    ("resolution", 256, 1536, 255, 1537),
]


@pytest.mark.parametrize("field, low, high, below, above", CIVITAI_RANGES)
def test_civitai_ranges(field, low, high, below, above):
    build_plan("civitai", civitai_body(**{field: low}))
    build_plan("civitai", civitai_body(**{field: high}))
    assert paths("civitai", civitai_body(**{field: below})) == {f"steps[0].input.{field}"}
    assert paths("civitai", civitai_body(**{field: above})) == {f"steps[0].input.{field}"}


def test_civitai_alpha_defaults_to_dim():
    plan = build_plan("civitai", civitai_body(networkDim=64))
    assert (plan.lora.rank, plan.lora.alpha) == (64, 64)
    plan = build_plan("civitai", civitai_body(networkDim=64, networkAlpha=16))
    assert (plan.lora.rank, plan.lora.alpha) == (64, 16)


def test_civitai_batch_size_fixed_at_one():
    build_plan("civitai", civitai_body(batchSize=1))
    assert issues("civitai", civitai_body(batchSize=2)) == {("steps[0].input.batchSize", "Input should be 1")}


def test_civitai_text_encoder_training_refused_with_reason():
    ((path, msg),) = issues("civitai", civitai_body(trainTextEncoder=True))
    assert path == "steps[0].input.trainTextEncoder"
    assert "not retrained" in msg


def test_civitai_continue_from_same_ecosystem():
    assert build_plan("civitai", civitai_body(continueFrom="urn:air:ltx23:lora:civitai:1@2")).lora.init_from
    assert issues("civitai", civitai_body(continueFrom="urn:air:ltx2:lora:civitai:1@2")) == {
        ("steps[0].input.continueFrom",
         "must be a LoRA of the same ecosystem (ltx23); 'urn:air:ltx2:lora:civitai:1@2' is a ltx2 LoRA")}
    assert paths("civitai", civitai_body(continueFrom="urn:air:ltx23:checkpoint:civitai:1@2")) == {"steps[0].input.continueFrom"}
    assert paths("civitai", civitai_body(continueFrom="my-lora.safetensors")) == {"steps[0].input.continueFrom"}


def test_civitai_scheduler_and_optimizer_enums():
    for scheduler in ("constant", "constant_with_warmup", "cosine", "linear", "step"):
        assert build_plan("civitai", civitai_body(lrScheduler=scheduler)).optimisation.scheduler == scheduler
    assert build_plan("civitai", civitai_body(lrScheduler="constant_with_warmup")).optimisation.warmup_steps == 150
    for optimizer in ("adamw8bit", "AdamW8Bit", "adamw", "adafactor", "Prodigy"):
        assert build_plan("civitai", civitai_body(optimizerType=optimizer)).optimisation.optimizer == optimizer.lower()
    assert paths("civitai", civitai_body(lrScheduler="cosine_with_restarts", optimizerType="sgd")) == {
        "steps[0].input.lrScheduler", "steps[0].input.optimizerType"}


def test_civitai_training_data_and_samples():
    assert paths("civitai", civitai_body(trainingData={"type": "tar", "sourceUrl": URL})) == {
        "steps[0].input.trainingData.type", "steps[0].input.trainingData.count"}
    plan = build_plan("civitai", civitai_body(samples={"prompts": ["p"], "negativePrompt": "n", "cfgScale": 3.5, "strength": 0.8}))
    assert (plan.validation.negative_prompt, plan.validation.guidance_scale, plan.validation.lora_strength) == ("n", 3.5, 0.8)


def test_civitai_captions_and_flips():
    plan = build_plan("civitai", civitai_body(triggerWord="TOK", shuffleTokens=True, keepTokens=1, flipAugmentation=True))
    captions = plan.dataset.captions
    assert (captions.trigger_phrase, captions.shuffle_tokens, captions.keep_tokens, captions.variants) == ("TOK", True, 1, 4)
    assert plan.dataset.flip is True


def test_civitai_envelope():
    body = civitai_body(step={"name": "train", "priority": "high", "retries": 3, "timeout": "02:00:00"})
    body.update(tags=["a"], metadata={"k": 1}, externalId="x-1",
                callbacks=[{"url": "https://example.com/cb", "type": ["workflow:*", "step:succeeded"], "detailed": True}])
    build_plan("civitai", body)
    bad = civitai_body(step={"priority": "urgent", "retries": 11, "timeout": "2 hours"})
    bad.update(callbacks=[{"url": "https://example.com/cb", "type": ["workflow:done"]}])
    assert paths("civitai", bad) == {"steps[0].priority", "steps[0].retries", "steps[0].timeout", "callbacks[0].type"}


def test_civitai_workflow_shape():
    assert paths("civitai", {"steps": []}) == {"steps"}
    two = civitai_body()
    two["steps"] = two["steps"] * 2
    assert paths("civitai", two) == {"steps"}
    other = civitai_body()
    other["steps"][0]["$type"] = "imageGen"
    assert paths("civitai", other) == {"steps[0].$type"}
    assert paths("civitai", {"steps": [{"$type": "training", "input": {}}]}) == {
        "steps[0].input.engine", "steps[0].input.ecosystem", "steps[0].input.trainingData"}


def test_civitai_problem_details():
    with pytest.raises(RequestInvalid) as caught:
        build_plan("civitai", civitai_body(lr=2, networkDim=0))
    problem = render_errors("civitai", caught.value)
    assert problem["status"] == 400 and problem["title"] == "One or more validation errors occurred."
    assert problem["errors"] == {
        "steps[0].input.lr": ["Input should be less than or equal to 1"],
        "steps[0].input.networkDim": ["Input should be greater than or equal to 1"],
    }


def test_body_must_be_an_object():
    assert paths(T2V, [1, 2]) == {"body"}
