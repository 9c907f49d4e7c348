"""Engines behind `kaito serve`: vLLM on GPUs, transformers anywhere."""
