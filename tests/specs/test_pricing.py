import pytest

from ltxtune.protocols import build_plan
from ltxtune.protocols.civitai.plan import civitai_price
from ltxtune.protocols.fal.plan import fal_price
from ltxtune.specs.pricing import PriceTable, unbilled

TABLE = PriceTable()


@pytest.mark.parametrize(
    "endpoint, steps, usd",
    [
        ("fal-ai/ltx23-trainer-v2/t2v", 1000, 6.00),
        ("fal-ai/ltx23-trainer-v2/i2v", 1000, 2.40),
        ("fal-ai/ltx23-video-trainer", 2000, 9.60),
        ("fal-ai/ltx23-v2v-trainer", 2000, 9.60),
        ("fal-ai/ltx23-trainer-v2/t2v", 100, 0.60),
        ("fal-ai/ltx23-video-trainer", 20000, 96.00),
    ],
)
def test_fal_prices_exact(endpoint, steps, usd):
    price = fal_price(endpoint, steps, TABLE)
    assert price.amount == usd and price.currency == "USD" and price.billed_units == steps


def test_fal_bills_at_least_100_units():
    price = fal_price("fal-ai/ltx23-trainer-v2/t2v", 40, TABLE)
    assert (price.billed_units, price.amount) == (100, 0.6)


def test_failed_run_bills_nothing():
    price = unbilled(fal_price("fal-ai/ltx23-trainer-v2/t2v", 1000, TABLE))
    assert (price.amount, price.billed_units) == (0.0, 0)


@pytest.mark.parametrize(
    "steps, epochs, buzz, floored",
    [(3000, 10, 2750, False), (3000, 20, 3250, False), (2000, 10, 2200, True), (100, 1, 2200, True), (10000, 20, 8500, False),
     (2935, 1, 2251, False)],  # 2201.25 + 50 = 2251.25 -> 2251
)
def test_civitai_prices(steps, epochs, buzz, floored):
    price = civitai_price(steps, epochs, TABLE)
    assert (price.amount, price.currency, price.billed_units) == (buzz, "Buzz", buzz)
    assert (price.note == "floor applied") is floored


def test_civitai_rounds_half_up():
    assert civitai_price(2934, 1, TABLE).amount == 2251  # 2200.5 + 50 = 2250.5 -> 2251


def test_whatif_cost_of_page_examples_is_2750():
    body = {"steps": [{"$type": "training", "input": {"engine": "ai-toolkit", "ecosystem": "ltx2",
            "trainingData": {"type": "zip", "sourceUrl": "https://e/d.zip", "count": 4}}}]}
    assert build_plan("civitai", body).price.amount == 2750


def test_table_override_merges():
    table = TABLE.overridden({"fal_usd_per_unit": {"fal-ai/ltx23-trainer-v2/t2v": 0.001}, "civitai_buzz_per_epoch": 0})
    assert fal_price("fal-ai/ltx23-trainer-v2/t2v", 1000, table).amount == 1.0
    assert fal_price("fal-ai/ltx23-trainer-v2/i2v", 1000, table).amount == 2.4
    assert civitai_price(3000, 10, table).amount == 2250
    with pytest.raises(ValueError):
        TABLE.overridden({"no_such_price": 1})
