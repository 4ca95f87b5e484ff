"""Captions: read from the matching .txt, trigger phrase prepended, optional tag shuffling.

- A caption file is read as UTF-8 (a BOM is fine; other bytes fall back to Latin-1), its lines
  joined by spaces and runs of whitespace collapsed.
- `[trigger]` in a caption is replaced by the trigger phrase. The phrase is prepended unless the
  caption already starts with it (so captions written as "TOK a red car" do not become
  "TOK TOK a red car"). Prose captions get "TOK a red car"; with tag shuffling on, captions are
  comma-separated tags and get "TOK, tag, tag".
- Civitai's `shuffleTokens` / `keepTokens`: each sample gets a fixed list of caption variants
  (`CaptionRules.variants`, the first in the written order, the others shuffled with a seed
  made of the plan seed and the sample id), so every variant can be encoded once and cached.
  The first `keepTokens` tags stay in place; the trigger is never shuffled.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from ltxtune.specs.plan import CaptionRules

PLACEHOLDER = "[trigger]"


MAX_CAPTION_BYTES = 64 * 1024  # longer files are cut: no text encoder reads that far


def read_caption(path: Path | None) -> str:
    if path is None:
        return ""
    with open(path, "rb") as handle:
        raw = handle.read(MAX_CAPTION_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return " ".join(text.split())


def with_trigger(caption: str, trigger: str, separator: str = " ") -> str:
    trigger = trigger.strip()
    if not trigger:
        return caption.replace(PLACEHOLDER, "").strip()
    if PLACEHOLDER in caption:
        return " ".join(caption.replace(PLACEHOLDER, trigger).split())
    if not caption:
        return trigger
    if re.match(re.escape(trigger) + r"(\W|$)", caption):
        return caption
    return f"{trigger}{separator}{caption}"


def caption_variants(caption: str, rules: CaptionRules, *, seed: int, key: str) -> list[str]:
    """The sample's captions: one, or up to `rules.variants` distinct tag orders."""
    if not rules.shuffle_tokens or rules.variants <= 1:
        return [with_trigger(caption, rules.trigger_phrase)]
    trigger = rules.trigger_phrase.strip()
    tags = [tag.strip() for tag in caption.split(",") if tag.strip()]
    tags = [tag for tag in tags if tag != PLACEHOLDER and not (trigger and tag == trigger)]
    kept, loose = tags[: rules.keep_tokens], tags[rules.keep_tokens :]
    rng = random.Random(f"{seed}:{key}")
    variants: list[str] = []
    orders = [loose]
    for _ in range(rules.variants * 8):
        if len(orders) >= rules.variants:
            break
        shuffled = loose[:]
        rng.shuffle(shuffled)
        if shuffled not in orders:
            orders.append(shuffled)
    for order in orders:
        parts = ([trigger] if trigger else []) + kept + order
        variants.append(", ".join(parts))
    return variants
