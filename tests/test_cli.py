import json
from pathlib import Path

from typer.testing import CliRunner

from ltxtune.cli import app

EXAMPLES = Path(__file__).parents[1] / "examples"
runner = CliRunner()


def test_validate_prints_plan():
    result = runner.invoke(app, ["validate", "fal-ai/ltx23-trainer-v2/t2v", str(EXAMPLES / "fal-t2v.json")])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["mode"] == "t2v" and plan["dataset"]["captions"]["trigger_phrase"] == "tronlog0"


def test_validate_prints_every_error_and_exits_2(tmp_path):
    request = tmp_path / "r.json"
    request.write_text(json.dumps({"rank": 7, "number_of_steps": 150}))
    result = runner.invoke(app, ["validate", "fal-ai/ltx23-trainer-v2/t2v", str(request)])
    assert result.exit_code == 2
    assert "training_data_url: Field required" in result.stderr
    assert "rank: Input should be 8, 16, 32, 64 or 128" in result.stderr
    assert "number_of_steps: Input should be a multiple of 100" in result.stderr


def test_validate_civitai_errors_use_field_paths(tmp_path):
    request = tmp_path / "r.json"
    body = json.loads((EXAMPLES / "civitai-ltx2.json").read_text())
    body["steps"][0]["input"]["networkDim"] = 300
    request.write_text(json.dumps(body))
    result = runner.invoke(app, ["validate", "civitai", str(request)])
    assert result.exit_code == 2
    assert "steps[0].input.networkDim: Input should be less than or equal to 256" in result.stderr


def test_unknown_endpoint_and_bad_files(tmp_path):
    result = runner.invoke(app, ["validate", "fal-ai/flux-lora", str(EXAMPLES / "fal-t2v.json")])
    assert result.exit_code == 2 and "unknown endpoint 'fal-ai/flux-lora'" in result.stderr
    result = runner.invoke(app, ["validate", "civitai", str(tmp_path / "missing.json")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    result = runner.invoke(app, ["validate", "civitai", str(broken)])
    assert result.exit_code == 2 and "is not valid JSON" in result.stderr


def test_price(tmp_path):
    result = runner.invoke(app, ["price", "civitai", str(EXAMPLES / "civitai-ltx23.json")])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["amount"] == 2750
    result = runner.invoke(app, ["price", "fal-ai/ltx23-trainer-v2/i2v", str(EXAMPLES / "fal-i2v.json")])
    assert json.loads(result.stdout) | {"formula": ""} == {
        "amount": 4.8, "currency": "USD", "billed_units": 2000, "unit_price": 0.0024, "formula": "", "note": ""}


def test_price_with_overrides(tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"civitai_buzz_per_step": 1.0}))
    result = runner.invoke(app, ["price", "civitai", str(EXAMPLES / "civitai-ltx23.json"), "--prices", str(prices)])
    assert json.loads(result.stdout)["amount"] == 3500
    prices.write_text(json.dumps({"typo": 1.0}))
    result = runner.invoke(app, ["price", "civitai", str(EXAMPLES / "civitai-ltx23.json"), "--prices", str(prices)])
    assert result.exit_code == 2 and "price table" in result.stderr


def _request(tmp_path, **fields) -> Path:
    from tests.data.media import make_video, make_zip

    clip = make_video(tmp_path / "a.mp4", 128, 96, frames=17, fps=24)
    make_zip(tmp_path / "clips.zip", {"a.mp4": clip, "a.txt": b"a square"})
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"training_data_url": "clips.zip", "number_of_frames": 17, "resolution": "low",
                                   "aspect_ratio": "16:9", **fields}))
    return request


def test_prepare_summarises_a_local_zip(tmp_path):
    result = runner.invoke(app, ["prepare", "fal-ai/ltx23-trainer-v2/t2v", str(_request(tmp_path)), "--out", str(tmp_path / "work")])
    assert result.exit_code == 0, result.output
    assert "512x288" in result.stdout
    assert (tmp_path / "work" / "prepared" / "manifest.json").exists()


def test_prepare_refuses_what_is_not_a_zip(tmp_path):
    request = _request(tmp_path)
    (tmp_path / "clips.zip").write_text("not a zip")
    result = runner.invoke(app, ["prepare", "fal-ai/ltx23-trainer-v2/t2v", str(request), "--out", str(tmp_path / "work")])
    assert result.exit_code == 1
    assert "training_data_url is not a zip archive" in result.stderr


def test_train_tiny_lists_the_files_it_wrote(tmp_path):
    request = _request(tmp_path, number_of_steps=100, trigger_phrase="TOK")
    result = runner.invoke(app, ["train", "fal-ai/ltx23-trainer-v2/t2v", str(request), "--out", str(tmp_path / "run"),
                                 "--model", "tiny", "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert f"lora_file      {tmp_path / 'run' / 'outputs' / 'lora.safetensors'}" in result.stdout
    assert "config_file" in result.stdout and "video" not in result.stdout.split("Files written:")[1].split("price")[0]
    again = runner.invoke(app, ["train", "fal-ai/ltx23-trainer-v2/t2v", str(request), "--out", str(tmp_path / "run"),
                                "--model", "tiny", "--cache-dir", str(tmp_path / "cache"), "--threads", "1"])
    assert again.exit_code == 0 and "resuming from step 100" in again.stderr
    assert "using 1 CPU thread(s) (set by --threads" in again.stderr


def test_models_export_tiny_and_refuse_real(tmp_path):
    result = runner.invoke(app, ["models", "export", "tiny", str(tmp_path / "tiny")])
    assert result.exit_code == 0 and (tmp_path / "tiny" / "model_index.json").exists()
    result = runner.invoke(app, ["models", "export", "ltx23", str(tmp_path / "x")])
    assert result.exit_code == 2 and "only the tiny family" in result.stderr


def _single_file(tmp_path, variant="ltx23"):
    from ltxtune.models import tiny

    return tiny.write_tiny_single_file(tmp_path / f"tiny-{variant}.safetensors", variant)


def test_models_inspect_says_what_a_checkpoint_is(tmp_path):
    checkpoint = _single_file(tmp_path)
    result = runner.invoke(app, ["models", "inspect", str(checkpoint)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{checkpoint}: original single file"
    assert f"  family: tiny (ltxtune can train it: --model {checkpoint})" in lines
    assert any(line.split()[:3] == ["transformer", "LTX2VideoTransformer3DModel", "403,160"] for line in lines)
    assert any(line.split()[:2] == ["vocoder", "LTX2VocoderWithBWE"] for line in lines)
    other = runner.invoke(app, ["models", "inspect", str(_single_file(tmp_path, "ltx2"))])
    assert other.exit_code == 0 and "ltxtune cannot train it" in other.stdout and "LTX2Vocoder " in other.stdout
    missing = runner.invoke(app, ["models", "inspect", str(tmp_path / "nothing.safetensors")])
    assert missing.exit_code == 1 and "nothing.safetensors does not exist" in missing.stderr


def test_models_convert_writes_a_pipeline_diffusers_loads(tmp_path, monkeypatch):
    import torch
    from diffusers import LTX2Pipeline

    from ltxtune.models import tiny

    monkeypatch.setenv("LTXTUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    checkpoint = _single_file(tmp_path)
    bare = runner.invoke(app, ["models", "convert", str(checkpoint), str(tmp_path / "bare")])
    assert bare.exit_code == 0 and "missing: text_encoder, tokenizer: Gemma 3 text encoder not found" in bare.stderr
    monkeypatch.setenv("LTXTUNE_GEMMA_MODEL", str(tiny.export_tiny_text_encoder(tmp_path / "gemma")))
    result = runner.invoke(app, ["models", "convert", str(checkpoint), str(tmp_path / "full")])
    assert result.exit_code == 0 and result.stdout.strip() == f"wrote {tmp_path / 'full'}", result.output
    pipe = LTX2Pipeline.from_pretrained(tmp_path / "full")
    reference = tiny.build_tiny_components()
    for name in ("transformer", "connectors", "vae", "audio_vae", "vocoder", "text_encoder"):
        got, want = getattr(pipe, name).state_dict(), reference[name].state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), name
    again = runner.invoke(app, ["models", "convert", str(checkpoint), str(tmp_path / "full")])
    assert again.exit_code == 1 and "already exists and is not empty" in again.stderr


def test_train_model_takes_a_checkpoint_and_reads_its_family(tmp_path, monkeypatch):
    from ltxtune.models import tiny

    monkeypatch.setenv("LTXTUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LTXTUNE_TINY_MODEL", "")  # `--model PATH` sets it; restored after the test
    checkpoint = _single_file(tmp_path)
    request = _request(tmp_path, number_of_steps=100, trigger_phrase="TOK")
    args = ["train", "fal-ai/ltx23-trainer-v2/t2v", str(request), "--out", str(tmp_path / "run"),
            "--model", str(checkpoint), "--cache-dir", str(tmp_path / "latents")]
    monkeypatch.setenv("LTXTUNE_GEMMA_MODEL", str(tmp_path / "no-gemma"))
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "Gemma 3 text encoder not found" in refused.stderr
    assert not (tmp_path / "run" / "prepared").exists()  # stopped before the dataset was prepared
    monkeypatch.setenv("LTXTUNE_GEMMA_MODEL", str(tiny.export_tiny_text_encoder(tmp_path / "gemma")))
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "on tiny random LTX-2.3" in result.stderr
    assert f"converted {checkpoint.name} in " in result.stderr  # before the dataset, as a job log line
    assert (tmp_path / "run" / "outputs" / "lora.safetensors").is_file()
    wrong = runner.invoke(app, [*args[:-4], "--model", str(_single_file(tmp_path, "ltx2"))])
    assert wrong.exit_code == 2 and "which no family ltxtune trains matches" in wrong.stderr


def test_train_memory_presets_are_checked_before_any_work(tmp_path):
    request = _request(tmp_path, number_of_steps=100)
    args = ["train", "fal-ai/ltx23-trainer-v2/t2v", str(request), "--model", "tiny", "--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a"), "--memory", "fp4"])
    assert result.exit_code == 2 and "unknown memory preset 'fp4'" in result.stderr
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--memory", "nf4", "--device", "cpu"])
    assert result.exit_code == 1 and "memory preset nf4 needs a CUDA GPU" in result.stderr, result.output
    assert not (tmp_path / "b" / "prepared").exists()


def test_serve_and_worker_check_the_memory_preset(tmp_path):
    for command in ("serve", "worker"):
        result = runner.invoke(app, [command, "--data-dir", str(tmp_path / command), "--memory", "int4"])
        assert result.exit_code == 2 and "unknown memory preset 'int4'" in result.stderr, result.output


def test_validate_prints_the_memory_estimate_on_stderr():
    result = runner.invoke(app, ["validate", "fal-ai/ltx23-trainer-v2/t2v", str(EXAMPLES / "fal-t2v.json")])
    assert json.loads(result.stdout)["family"] == "ltx23"
    assert "memory: bf16 on ltx23 at " in result.stderr
    assert "auto picks by free GPU memory: 80 GiB: bf16;" in result.stderr
    result = runner.invoke(app, ["validate", "fal-ai/ltx23-trainer-v2/t2v", str(EXAMPLES / "fal-t2v.json"), "--memory", "nf4+offload"])
    assert "memory: nf4+offload, 48 blocks offloaded on ltx23" in result.stderr
    result = runner.invoke(app, ["validate", "fal-ai/ltx23-trainer-v2/t2v", str(EXAMPLES / "fal-t2v.json"), "--memory", "fp4"])
    assert result.exit_code == 2 and "unknown memory preset 'fp4'" in result.stderr


def test_lora_check_exit_codes(tmp_path):
    from ltxtune.models.lora import inject_lora, lora_state_dict_comfy, save_lora
    from ltxtune.models.tiny import build_tiny_transformer

    transformer = build_tiny_transformer()
    inject_lora(transformer, 4, 4.0)
    state = lora_state_dict_comfy(transformer)
    zero = save_lora(tmp_path / "zero.safetensors", state, {"family": "tiny", "rank": "4", "alpha": "4"})
    state = {k: v + 0.01 if "lora_B" in k else v for k, v in state.items()}
    good = save_lora(tmp_path / "good.safetensors", state, {"family": "tiny", "rank": "4", "alpha": "4"})
    result = runner.invoke(app, ["lora", "check", str(good)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("LoRA check of good.safetensors against tiny: OK\n  56 modules (ltxtune trains 56), rank 4, alpha 4.0")
    result = runner.invoke(app, ["lora", "check", str(zero), "--family", "tiny", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["problems"] == ["every adapter is zero (B @ A = 0 for all 56 modules): the LoRA changes nothing"]
    result = runner.invoke(app, ["lora", "check", str(tmp_path / "nope.safetensors")])
    assert result.exit_code == 2 and "nope.safetensors does not exist" in result.stderr
