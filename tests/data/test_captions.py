from ltxtune.data.captions import caption_variants, read_caption, with_trigger
from ltxtune.specs.plan import CaptionRules


def test_trigger_is_prepended_once():
    assert with_trigger("a red car", "TOK") == "TOK a red car"
    assert with_trigger("", "TOK") == "TOK"
    assert with_trigger("", "") == ""
    assert with_trigger("TOK a red car", "TOK") == "TOK a red car"
    assert with_trigger("TOKYO at night", "TOK") == "TOK TOKYO at night"
    assert with_trigger("a photo of [trigger] at night", "TOK") == "a photo of TOK at night"
    assert with_trigger("a photo of [trigger]", "") == "a photo of"


def test_read_caption_encodings_and_whitespace(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffa  café\r\nat   night\n".encode("utf-8"))
    assert read_caption(path) == "a café at night"
    path.write_bytes("caf\xe9".encode("latin-1"))
    assert read_caption(path) == "café"
    assert read_caption(None) == ""


def test_one_variant_without_shuffling():
    rules = CaptionRules(trigger_phrase="TOK")
    assert caption_variants("a red car", rules, seed=42, key="0001_a") == ["TOK a red car"]


def test_shuffled_variants_are_fixed_keep_tokens_and_trigger_first():
    rules = CaptionRules(trigger_phrase="TOK", shuffle_tokens=True, keep_tokens=1, variants=4)
    caption = "red car, coastal road, sunset, wide shot, film grain"
    variants = caption_variants(caption, rules, seed=42, key="0001_a")
    assert variants == caption_variants(caption, rules, seed=42, key="0001_a")  # reproducible
    assert len(variants) == 4 and len(set(variants)) == 4
    assert variants[0] == "TOK, red car, coastal road, sunset, wide shot, film grain"
    for variant in variants:
        tags = variant.split(", ")
        assert tags[:2] == ["TOK", "red car"]
        assert sorted(tags[2:]) == sorted(["coastal road", "sunset", "wide shot", "film grain"])
    assert caption_variants(caption, rules, seed=42, key="0002_b") != variants


def test_shuffle_with_too_few_tags_gives_fewer_variants():
    rules = CaptionRules(trigger_phrase="TOK", shuffle_tokens=True, keep_tokens=0, variants=4)
    assert caption_variants("TOK, one tag", rules, seed=1, key="x") == ["TOK, one tag"]
    assert caption_variants("", rules, seed=1, key="x") == ["TOK"]
    assert sorted(caption_variants("a, b", rules, seed=1, key="x")) == ["TOK, a, b", "TOK, b, a"]
