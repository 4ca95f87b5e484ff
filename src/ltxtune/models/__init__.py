"""Model families, component loading, latents and LoRA for LTX-2 / LTX-2.3.

Import the submodules directly (`ltxtune.models.families` is torch-free; the others import torch):
families, tiny, load, text, latents, audio, forward, lora; original single-file checkpoints: sources,
single_file, keymap, checkpoint_config, single_file_write, family_check, inspect.
"""
