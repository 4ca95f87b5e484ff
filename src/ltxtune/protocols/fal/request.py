"""Request models of the fal LTX-2.3 trainer endpoints, field for field from the spec pages.

Each page is honoured as written, and the pages differ:

| endpoint | page | frame rate default | frame counts | first_frame_conditioning_p | validation entries |
|---|---|---|---|---|---|
| fal-ai/ltx23-trainer-v2/t2v | 001 | 24 | snapped down to 8k+1 | none (text only) | `{prompt}`, at most 2 |
| fal-ai/ltx23-trainer-v2/i2v | 004 | 24 | snapped down to 8k+1 | 0.5 | `{prompt, image_url}` (image required), at most 2 |
| fal-ai/ltx23-video-trainer | 002 | 25 | must satisfy 8k+1 | 0.5 | `{prompt, image_url?}`, all or none with an image |
| fal-ai/ltx23-v2v-trainer | 003 | 25 | must satisfy 8k+1 | 0.1 | `{prompt, reference_video_url}` |

Decisions where the pages are silent (each repeated on the field it concerns):
- Unknown fields are ignored, as fal's own endpoints ignore them, but each is named in the
  plan's warnings so a typo (`number_of_step`) does not pass unnoticed.
- The v2 pages give no `learning_rate` range; the first-version range (1e-6 to 1) applies.
- `number_of_steps` "in steps of 100" on the v2 pages: other values are refused (422), not rounded,
  so the user is never billed for a number of steps they did not ask for.
- Validation frame counts that are not 8k+1 are snapped down on every page (only the training
  frame count of the first-version pages is documented as a hard rule).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from ltxtune.specs.common import LONG_NEGATIVE_PROMPT, AspectRatio, Resolution, is_valid_frame_count, snap_frames_down

SHORT_NEGATIVE_PROMPT = "worst quality, inconsistent motion, blurry, jittery, distorted"


def _int_from_numeric_string(value: Any) -> Any:
    """fal documents `rank` as an enum whose default is written "32": accept 32 and "32" alike."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


Rank = Annotated[Literal[8, 16, 32, 64, 128], BeforeValidator(_int_from_numeric_string)]
ReferenceTransform = Literal["canny", "grayscale", "blur"]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PromptValidation(_Entry):
    prompt: str


class ImageValidation(_Entry):
    prompt: str
    image_url: str = Field(min_length=1, description="The first-frame image to animate.")


class OptionalImageValidation(_Entry):
    prompt: str
    image_url: str | None = None


class ReferenceVideoValidation(_Entry):
    """The v2v page says only "validation inputs with prompts and reference videos": the reference
    is `reference_video_url` (`video_url` is accepted too)."""

    prompt: str
    reference_video_url: str = Field(
        min_length=1, validation_alias=AliasChoices("reference_video_url", "video_url")
    )


class FalTrainerRequest(BaseModel):
    """Fields common to every fal LTX trainer page, with the v2 pages' defaults."""

    model_config = ConfigDict(extra="allow")

    training_data_url: str = Field(
        description="URL of the .zip of clips or images, with optional .txt captions. Like fal's schema, any "
        "string passes validation (the page's own example sends \"\"); an empty or unreachable URL fails at "
        "fetch, before training, and is billed nothing."
    )
    trigger_phrase: str = ""
    rank: Rank = 32
    number_of_steps: int = Field(2000, ge=100, le=20000)
    learning_rate: float = Field(0.0002, ge=0.000001, le=1)
    number_of_frames: int = Field(89, ge=9, le=121)
    frame_rate: int = Field(24, ge=8, le=60)
    resolution: Resolution = "medium"
    aspect_ratio: AspectRatio = "1:1"
    auto_scale_input: bool = False
    split_input_into_scenes: bool = True
    split_input_duration_threshold: float = Field(30.0, ge=1.0, le=60.0)
    with_audio: bool | None = None
    audio_normalize: bool = True
    audio_preserve_pitch: bool = True
    validation_negative_prompt: str = LONG_NEGATIVE_PROMPT
    validation_number_of_frames: int = Field(89, ge=9, le=121)
    validation_frame_rate: int = Field(24, ge=8, le=60)
    validation_resolution: Resolution = "high"
    validation_aspect_ratio: AspectRatio = "1:1"
    stg_scale: float = Field(1.0, ge=0.0, le=3.0)
    debug_dataset: bool = False

    @field_validator("validation_number_of_frames")
    @classmethod
    def _snap_validation_frames(cls, frames: int) -> int:
        return snap_frames_down(frames)

    @property
    def ignored_fields(self) -> list[str]:
        return sorted(self.model_extra or {})


class _V2Request(FalTrainerRequest):
    number_of_steps: int = Field(2000, ge=100, le=20000, multiple_of=100)

    @field_validator("number_of_frames")
    @classmethod
    def _snap_frames(cls, frames: int) -> int:
        return snap_frames_down(frames)


class _FirstVersionRequest(FalTrainerRequest):
    frame_rate: int = Field(25, ge=8, le=60)
    validation_frame_rate: int = Field(25, ge=8, le=60)
    validation_negative_prompt: str = SHORT_NEGATIVE_PROMPT

    @field_validator("number_of_frames")
    @classmethod
    def _require_8k_plus_1(cls, frames: int) -> int:
        if not is_valid_frame_count(frames):
            raise ValueError(
                f"must satisfy frames % 8 == 1 (e.g. 9, 17, 25, 33, 41, 49, 57, 65, 73, 81, 89, 97, 105, 113, 121); "
                f"got {frames}, the nearest valid counts are {snap_frames_down(frames)} and {snap_frames_down(frames) + 8}"
            )
        return frames


class FalT2VRequest(_V2Request):
    """`fal-ai/ltx23-trainer-v2/t2v` (spec page 001)."""

    validation: list[PromptValidation] = Field(default_factory=list, max_length=2)


class FalI2VRequest(_V2Request):
    """`fal-ai/ltx23-trainer-v2/i2v` (spec page 004)."""

    first_frame_conditioning_p: float = Field(0.5, ge=0.0, le=1.0)
    validation: list[ImageValidation] = Field(default_factory=list, max_length=2)


class FalVideoTrainerRequest(_FirstVersionRequest):
    """`fal-ai/ltx23-video-trainer` (spec page 002).

    The page gives no maximum number of validation entries, so none is imposed.
    """

    first_frame_conditioning_p: float = Field(0.5, ge=0.0, le=1.0)
    validation: list[OptionalImageValidation] = Field(default_factory=list)
    generate_audio_in_validation: bool = True

    @field_validator("validation")
    @classmethod
    def _all_or_none_with_image(cls, entries: list[OptionalImageValidation]) -> list[OptionalImageValidation]:
        with_image = [i for i, entry in enumerate(entries) if entry.image_url]
        if with_image and len(with_image) != len(entries):
            missing = [i for i in range(len(entries)) if i not in with_image]
            raise ValueError(
                "when one validation entry has an image_url, all must have one; "
                f"entries {missing} have none"
            )
        return entries


class FalV2VRequest(_FirstVersionRequest):
    """`fal-ai/ltx23-v2v-trainer` (spec page 003).

    `reference_transform` goes beyond the hosted service: when the archive has no reference
    clips, references are derived from the targets (canny edges, grayscale or blur).
    """

    first_frame_conditioning_p: float = Field(0.1, ge=0.0, le=1.0)
    validation: list[ReferenceVideoValidation] = Field(default_factory=list)
    reference_transform: ReferenceTransform | None = None


FAL_ENDPOINTS: dict[str, type[FalTrainerRequest]] = {
    "fal-ai/ltx23-trainer-v2/t2v": FalT2VRequest,
    "fal-ai/ltx23-trainer-v2/i2v": FalI2VRequest,
    "fal-ai/ltx23-video-trainer": FalVideoTrainerRequest,
    "fal-ai/ltx23-v2v-trainer": FalV2VRequest,
}
