"""kaito: turns a Workspace manifest into a right-sized LLM service on GPU nodes it provisions."""

__version__ = "0.1.0"
