"""Tiers files for tests: small, explicit tiers written to a temporary directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_tiers(path: Path, tiers: dict[str, dict[str, Any]], models: dict[str, str]) -> Path:
    """Write a tiers file: ``tiers`` maps a tier name to its settings, ``models`` a model to its tier
    (each model gets generous limits). Returns the file's path."""
    lines: list[str] = []
    for name, values in tiers.items():
        lines.append(f"[tiers.{name}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in values.items())
        for model, tier in models.items():
            if tier == name:
                lines.append(f'[tiers.{name}.models."{model}"]')
                lines.append("rpm = 100000")
                lines.append("tpm = 100000000")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)
