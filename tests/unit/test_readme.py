"""The README documents every setting."""

from pathlib import Path

from shared.config import Settings


def test_every_setting_is_in_the_configuration_table() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`AGENTID_{name.upper()}`" in readme, name
