"""Prices, from the spec pages, in a table a self-hoster can override.

- fal: `unit price x billed units` USD, a successful run bills `max(100, number_of_steps)` units;
  a run that fails before training completes bills 0.
- Civitai: `steps x 0.75 + epochs x 50` Buzz, rounded half up, never below 80% of the default
  configuration's price (3000 steps, 10 epochs: 2750 Buzz, so the floor is 2200).

Arithmetic is decimal so that 0.0048 x 2000 is exactly 9.60.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

V2V_PRICE_NOTE = "the v2v page gives no price; ltxtune bills it like fal-ai/ltx23-video-trainer"


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


def fal_price(endpoint: str, steps: int, table: PriceTable) -> Price:
    unit_price = Decimal(str(table.fal_usd_per_unit[endpoint]))
    units = max(table.fal_minimum_units, steps)
    amount = (unit_price * units).quantize(Decimal("0.000001"))
    return Price(
        amount=float(amount),
        currency="USD",
        billed_units=units,
        unit_price=float(unit_price),
        formula=f"{unit_price} USD x max({table.fal_minimum_units}, {steps} steps)",
        note=V2V_PRICE_NOTE if endpoint == "fal-ai/ltx23-v2v-trainer" else "",
    )


def _civitai_raw(steps: int, epochs: int, table: PriceTable) -> Decimal:
    return Decimal(str(table.civitai_buzz_per_step)) * steps + Decimal(str(table.civitai_buzz_per_epoch)) * epochs


def civitai_price(steps: int, epochs: int, table: PriceTable) -> Price:
    default = _civitai_raw(table.civitai_default_steps, table.civitai_default_epochs, table)
    floor = (default * Decimal(str(table.civitai_floor_fraction))).quantize(Decimal(1), ROUND_HALF_UP)
    raw = _civitai_raw(steps, epochs, table).quantize(Decimal(1), ROUND_HALF_UP)
    buzz = max(raw, floor)
    return Price(
        amount=float(buzz),
        currency="Buzz",
        billed_units=int(buzz),
        unit_price=table.civitai_buzz_per_step,
        formula=(
            f"max(round({steps} steps x {table.civitai_buzz_per_step} + {epochs} epochs x "
            f"{table.civitai_buzz_per_epoch}), floor {floor})"
        ),
        note="floor applied" if buzz > raw else "",
    )


def unbilled(price: Price) -> Price:
    """The charge of a run that failed before training completed: nothing."""
    return price.model_copy(update={"amount": 0.0, "billed_units": 0, "note": "failed before training completed: not billed"})
