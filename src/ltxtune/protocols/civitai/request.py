"""Civitai orchestration v2 workflow bodies with one `training` step (engine `ai-toolkit`,
ecosystems `ltx2` and `ltx23`), field for field from spec page 000 and docs/PROTOCOLS.md.

Decisions where the page is silent (each repeated on the field it concerns):
- Unknown fields are ignored, as the orchestrator ignores them, and named in the plan's warnings.
- A workflow has exactly one step and it is a `training` step: ltxtune runs nothing else.
- `resolution` (not in the parameter table, used in the ltx2 example) defaults to 768 and takes
  256 to 1536; each clip keeps its aspect ratio at about resolution^2 pixels.
- `lr` takes (0, 1]; `samples.cfgScale` 1 to 30; `samples.strength` 0 to 2.
- `optimizerType`'s "full enum" lives on a page not in the spec; ltxtune accepts the optimizers
  it runs: adamw8bit, adamw, adafactor, prodigy (any letter case, e.g. `AdamW8Bit`).
- `retries` takes 0 to 10 and defaults to 0; `timeout` is a .NET TimeSpan string
  (`HH:MM:SS` or `D.HH:MM:SS`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

STATUSES = ("unassigned", "preparing", "scheduled", "processing", "succeeded", "failed", "expired", "canceled")
TERMINAL_STATUSES = ("succeeded", "failed", "expired", "canceled")
CALLBACK_TYPE = re.compile(r"^(workflow|step|job):(\*|" + "|".join(STATUSES) + r")$")
TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?$")
AIR = re.compile(r"^urn:air:(?P<ecosystem>[a-z0-9]+):(?P<type>[a-z]+):(?P<source>[a-z0-9]+):(?P<id>[^@\s]+)(?:@(?P<version>[^\s]+))?$")


def _lowercase(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


Optimizer = Annotated[Literal["adamw8bit", "adamw", "adafactor", "prodigy"], BeforeValidator(_lowercase)]
Scheduler = Literal["constant", "constant_with_warmup", "cosine", "linear", "step"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class TrainingData(_Model):
    type: Literal["zip"]
    sourceUrl: str = Field(min_length=1)
    count: int = Field(ge=1, description="Number of clips in the zip; a mismatch is reported in the job log.")


class Samples(_Model):
    prompts: list[str] = Field(default_factory=list)
    negativePrompt: str | None = None
    cfgScale: float | None = Field(None, ge=1.0, le=30.0)
    strength: float = Field(1.0, ge=0.0, le=2.0)


class TrainingInput(_Model):
    """The `input` of a `training` step (page 000, "Common parameters"). Field order matters:
    `continueFrom` is checked against the `ecosystem` declared before it."""

    engine: Literal["ai-toolkit"]
    ecosystem: Literal["ltx2", "ltx23"]
    steps: int = Field(3000, ge=1, le=10000)
    epochs: int = Field(10, ge=1, le=20)
    batchSize: Literal[1] = Field(1, description="Fixed at 1 for the LTX ecosystems.")
    continueFrom: str | None = None
    resolution: int = Field(768, ge=256, le=1536)
    lr: float = Field(0.0001, gt=0.0, le=1.0)
    trainTextEncoder: bool = False
    lrScheduler: Scheduler = "cosine"
    optimizerType: Optimizer = "adamw8bit"
    networkDim: int = Field(32, ge=1, le=256)
    networkAlpha: int | None = Field(None, ge=1, le=256, description="Defaults to networkDim.")
    noiseOffset: float = Field(0.0, ge=0.0, le=1.0)
    flipAugmentation: bool = False
    shuffleTokens: bool = False
    keepTokens: int = Field(0, ge=0)
    triggerWord: str | None = None
    trainingData: TrainingData
    samples: Samples = Field(default_factory=Samples)

    @field_validator("continueFrom")
    @classmethod
    def _same_ecosystem_lora(cls, air: str | None, info: ValidationInfo) -> str | None:
        if air is None:
            return None
        match = AIR.match(air)
        if not match or match["type"] != "lora":
            raise ValueError(
                f"must be the AIR of a LoRA, like urn:air:ltx23:lora:civitai:<id>@<version>; got {air!r}"
            )
        ecosystem = info.data.get("ecosystem")
        if ecosystem and match["ecosystem"] != ecosystem:
            raise ValueError(
                f"must be a LoRA of the same ecosystem ({ecosystem}); {air!r} is a {match['ecosystem']} LoRA"
            )
        return air

    @field_validator("trainTextEncoder")
    @classmethod
    def _text_encoder_is_frozen(cls, train: bool) -> bool:
        if train:
            raise ValueError("must be false: the LTX text encoder (Gemma 3) is not retrained by ai-toolkit or ltxtune")
        return train

    @model_validator(mode="after")
    def _alpha_defaults_to_dim(self) -> "TrainingInput":
        if self.networkAlpha is None:
            self.networkAlpha = self.networkDim
        return self


class TrainingStep(_Model):
    type: Literal["training"] = Field(alias="$type")
    name: str | None = None
    priority: Literal["high", "normal", "low"] = "normal"
    retries: int = Field(0, ge=0, le=10)
    timeout: str | None = None
    metadata: dict[str, Any] | None = None
    input: TrainingInput

    @field_validator("timeout")
    @classmethod
    def _timespan(cls, timeout: str | None) -> str | None:
        if timeout is not None and timespan_seconds(timeout) is None:
            raise ValueError(f"must be a duration like 02:00:00 or 1.00:00:00; got {timeout!r}")
        return timeout


class Callback(_Model):
    url: str = Field(min_length=1)
    type: list[str] = Field(default_factory=lambda: ["workflow:*"])
    detailed: bool = False

    @field_validator("type")
    @classmethod
    def _known_events(cls, types: list[str]) -> list[str]:
        unknown = [t for t in types if not CALLBACK_TYPE.match(t)]
        if unknown:
            raise ValueError(
                f"unknown event types {unknown}: use workflow|step|job followed by ':' and a status "
                f"({', '.join(STATUSES)}) or '*'"
            )
        return types


class WorkflowRequest(_Model):
    """The body of `POST /v2/consumer/workflows` (docs/PROTOCOLS.md, "Civitai orchestration v2")."""

    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    externalId: str | None = None
    callbacks: list[Callback] = Field(default_factory=list)
    steps: list[TrainingStep] = Field(min_length=1, max_length=1)

    @property
    def step(self) -> TrainingStep:
        return self.steps[0]

    @property
    def ignored_fields(self) -> list[str]:
        found = []
        for prefix, model in (
            ("", self),
            ("steps[0].", self.step),
            ("steps[0].input.", self.step.input),
            ("steps[0].input.trainingData.", self.step.input.trainingData),
            ("steps[0].input.samples.", self.step.input.samples),
        ):
            found += [prefix + name for name in sorted(model.model_extra or {})]
        return found


def timespan_seconds(text: str) -> int | None:
    match = TIMESPAN.match(text)
    if not match:
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    if minutes > 59 or seconds > 59:
        return None
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
