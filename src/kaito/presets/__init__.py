"""Model presets and GPU instance types (the catalog) and how a model is sized onto them (the planner)."""
