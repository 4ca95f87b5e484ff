"""Training: cache latents and text embeddings, train the LoRA, save checkpoints and previews."""
