"""APP_SIMULATOR_PUBLIC_URL: where browsers reach the simulator's pages in offline mode."""

from __future__ import annotations

import pytest

from config import ConfigurationError, Settings


def test_unset_means_the_simulators_own_loopback_address() -> None:
    assert Settings.from_env({}).simulator_public_url is None
    assert Settings.from_env({"APP_SIMULATOR_PUBLIC_URL": "  "}).simulator_public_url is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "http://localhost:8000/_amazon-pay-simulator",
            "http://localhost:8000/_amazon-pay-simulator",
        ),
        (
            "https://Shop.Example/_amazon-pay-simulator/",
            "https://shop.example/_amazon-pay-simulator",
        ),
        ("http://127.0.0.1:8001", "http://127.0.0.1:8001"),
    ],
)
def test_a_url_is_kept_without_its_trailing_slash(value: str, expected: str) -> None:
    settings = Settings.from_env({"APP_SIMULATOR_PUBLIC_URL": value})
    assert settings.simulator_public_url == expected


@pytest.mark.parametrize(
    "value",
    [
        "localhost:8000/_amazon-pay-simulator",
        "ftp://localhost/x",
        "http://localhost:8000/x?y=1",
        "http://localhost:8000/x#top",
        "http://user@localhost:8000/x",
        "http://localhost:0/x",
    ],
)
def test_anything_else_stops_start_up_with_one_line(value: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({"APP_SIMULATOR_PUBLIC_URL": value})
    message = str(raised.value)
    assert message.startswith("APP_SIMULATOR_PUBLIC_URL: ")
    assert "\n" not in message
