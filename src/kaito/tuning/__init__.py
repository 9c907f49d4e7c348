"""Fine-tuning: the tuning pod's steps (fetch data, train a LoRA adapter, push it) and pulling adapters for serving."""
