"""ltxtune: self-hosted LoRA training for LTX-2 and LTX-2.3."""
__version__ = "0.1.0"
