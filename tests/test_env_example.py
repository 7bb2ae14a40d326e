"""``.env.example`` documents every setting, and the values it shows are the real defaults."""

from __future__ import annotations

import re
from pathlib import Path

from authsvc.config import ENV_PREFIX, Settings

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"
_ASSIGNMENT = re.compile(r"^#?\s*(AUTHSVC_[A-Z_]+)=(.*)$")


def _documented() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ASSIGNMENT.match(line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def test_every_setting_is_documented_in_env_example() -> None:
    expected = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert set(_documented()) == expected


def test_env_example_values_are_the_defaults() -> None:
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line.startswith(ENV_PREFIX)]
    example = Settings(_env_file=None)  # type: ignore[call-arg]
    for line in lines:
        name, value = line.split("=", 1)
        parsed = Settings.model_validate({name.removeprefix(ENV_PREFIX).lower(): value})
        field = name.removeprefix(ENV_PREFIX).lower()
        assert getattr(parsed, field) == getattr(example, field), name
