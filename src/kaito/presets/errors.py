"""Errors the preset catalog raises, so callers can tell bad input from an unknown name.

ValueError
 └── CatalogError        bad catalog data (builtin or a ConfigMap override); names the key and field
      ├── UnknownModel   no preset, alias or HF id matches; carries close matches
      └── UnknownSku     no instance type matches; carries close matches
"""

from __future__ import annotations

from collections.abc import Sequence


class CatalogError(ValueError):
    """Catalog data that cannot be used. `key` is the ConfigMap key (e.g. "models.yaml") when one applies."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


class UnknownModel(CatalogError):
    """A model name that matches no preset name, alias or Hugging Face id."""

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown model {name!r}{hint}")
        self.name = name
        self.suggestions = list(suggestions)


class UnknownSku(CatalogError):
    """An instance type the catalog does not know."""

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown instance type {name!r}{hint}")
        self.name = name
        self.suggestions = list(suggestions)
