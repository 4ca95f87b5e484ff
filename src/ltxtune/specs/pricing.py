"""Prices: the `Price` a plan carries, and the table of numbers prices are made of, which a
self-hoster can override (`--prices FILE`). Each protocol's formula lives with it
(`ltxtune.protocols.*.plan`); a run that fails before training completes bills nothing.

The table's keys are the price file's format, so they carry the names of the APIs whose prices
they set; its arithmetic (in the protocols) is decimal so that 0.0048 x 2000 is exactly 9.60.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Price(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount: float = Field(description="What the run costs, in `currency`.")
    currency: Literal["USD", "Buzz"]
    billed_units: int = Field(description="fal: billable units (steps, at least 100). Civitai: Buzz.")
    unit_price: float = Field(description="fal: USD per unit. Civitai: Buzz per step.")
    formula: str
    note: str = ""


class PriceTable(BaseModel):
    """Every number prices are made of. Override with a JSON file (`ltxtune price --prices FILE`,
    or the server's `--prices`): only the keys given change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fal_usd_per_unit: dict[str, float] = Field(
        default_factory=lambda: {
            "fal-ai/ltx23-trainer-v2/t2v": 0.006,
            "fal-ai/ltx23-trainer-v2/i2v": 0.0024,
            "fal-ai/ltx23-video-trainer": 0.0048,
            "fal-ai/ltx23-v2v-trainer": 0.0048,
        }
    )
    fal_minimum_units: int = 100
    civitai_buzz_per_step: float = 0.75
    civitai_buzz_per_epoch: float = 50
    civitai_default_steps: int = 3000
    civitai_default_epochs: int = 10
    civitai_floor_fraction: float = 0.8

    def overridden(self, overrides: dict) -> "PriceTable":
        """A table with `overrides` applied; per-endpoint fal prices merge into the defaults."""
        merged = self.model_dump()
        for key, value in overrides.items():
            if key == "fal_usd_per_unit" and isinstance(value, dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return PriceTable.model_validate(merged)


def unbilled(price: Price) -> Price:
    """The charge of a run that failed before training completed: nothing."""
    return price.model_copy(update={"amount": 0.0, "billed_units": 0, "note": "failed before training completed: not billed"})
