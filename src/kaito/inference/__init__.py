"""What runs in the inference pod: `kaito serve`, an OpenAI-compatible server over vLLM or transformers."""
