"""A prepared dataset in a few lines, for the command line and the job log."""

from __future__ import annotations

from collections import Counter

from ltxtune.data.manifest import PreparedDataset


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def summarise(prepared: PreparedDataset) -> str:
    samples = prepared.samples
    sources = Counter(sample.source for sample in samples)
    noun = "clip" if prepared.kind == "video" else "image"
    lines = [
        f"Prepared {_count(len(samples), prepared.kind + ' sample')} from {_count(len(sources), noun)} ({prepared.mode})"
    ]
    if prepared.kind == "video":
        lines.append(f"  frames: {prepared.frames} at {prepared.fps} fps ({prepared.frames / prepared.fps:.2f} s)")
    buckets = ", ".join(f"{label} ({count})" for label, count in sorted(prepared.buckets.items()))
    lines.append(f"  bucket: {buckets}")
    split = {source: count for source, count in sources.items() if any(s.scene for s in samples if s.source == source)}
    if split:
        lines.append(f"  scenes: {sum(split.values())} from {_count(len(split), 'split ' + noun)}")
    else:
        lines.append("  scenes: none split")
    if prepared.kind == "video":
        state = f"on ({prepared.audio_sample_rate} Hz stereo)" if prepared.audio else "off"
        lines.append(f"  audio: {state}")
    captioned = sum(1 for sample in samples if sample.captions[0])
    lines.append(
        f"  captions: {captioned} of {len(samples)} non-empty"
        + (f", {len(samples[0].captions)} variants each" if samples and len(samples[0].captions) > 1 else "")
    )
    if any(sample.reference for sample in samples):
        lines.append(f"  references: {sum(1 for s in samples if s.reference)}")
    if any(len(sample.flips) > 1 for sample in samples):
        lines.append("  flip augmentation: on")
    if prepared.skipped:
        lines.append(f"Skipped {len(prepared.skipped)}:")
        lines += [f"  {item.source}: {item.reason}" for item in prepared.skipped]
    if prepared.warnings:
        lines.append("Warnings:")
        lines += [f"  {warning}" for warning in prepared.warnings]
    return "\n".join(lines)
