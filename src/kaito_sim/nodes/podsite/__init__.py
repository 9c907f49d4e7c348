"""Imported by no one: this directory goes on process pods' PYTHONPATH for its `sitecustomize` (see clusterdns)."""
