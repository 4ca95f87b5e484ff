"""The neutral front door: the one `TrainingPlan` every protocol's requests convert into, prices,
the common field types, and request errors collected all at once (`Issue`, `RequestInvalid`).
The request models of each hosted API live in `ltxtune.protocols`.

Pure data: importing this package never imports torch.
"""

from __future__ import annotations

from ltxtune.specs.errors import Issue, RequestInvalid, issues_from_pydantic
from ltxtune.specs.plan import TrainingPlan
from ltxtune.specs.pricing import Price, PriceTable

__all__ = ["Issue", "Price", "PriceTable", "RequestInvalid", "TrainingPlan", "issues_from_pydantic"]
