"""Settings from the environment: defaults, normalisation, and one clear line per bad variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from amazonpay.signing import Algorithm
from config import ConfigurationError, Settings


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("keys")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files = {}
    for name, fmt in (
        ("pkcs1", serialization.PrivateFormat.TraditionalOpenSSL),
        ("pkcs8", serialization.PrivateFormat.PKCS8),
    ):
        path = directory / f"{name}.pem"
        path.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        )
        files[name] = path
    ec_key = ec.generate_private_key(ec.SECP256R1())
    files["ec"] = directory / "ec.pem"
    files["ec"].write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files["garbage"] = directory / "garbage.pem"
    files["garbage"].write_text("not a key")
    return files


def credentials(key_files: dict[str, Path], **extra: str) -> dict[str, str]:
    return {
        "AMAZON_PAY_PUBLIC_KEY_ID": "SANDBOX-AGH2Y6VC2VAUJ27GG6VDFOTD",
        "AMAZON_PAY_PRIVATE_KEY": str(key_files["pkcs8"]),
        "SECRET_KEY": "f3c1a9e07b5d42c8a6e1f0b9d37c5a2e",
        "PUBLIC_URL": "https://shop.example",
        **extra,
    }


def test_no_credentials_means_simulator_mode_with_defaults() -> None:
    settings = Settings.from_env({})

    assert settings.simulator_mode
    assert (settings.region, settings.sandbox, settings.algorithm) == ("na", True, Algorithm.PSS_V2)
    assert (settings.endpoint, settings.database_url, settings.secret_key) == (None, None, None)
    assert settings.ledger_currency == "USD"


@pytest.mark.parametrize("fmt", ["pkcs1", "pkcs8"])
def test_credentials_parse_the_key_once(key_files: dict[str, Path], fmt: str) -> None:
    settings = Settings.from_env(credentials(key_files, AMAZON_PAY_PRIVATE_KEY=str(key_files[fmt])))

    assert not settings.simulator_mode
    assert isinstance(settings.private_key, rsa.RSAPrivateKey)


@pytest.mark.parametrize(
    ("raw", "region", "currency"),
    [
        ("na", "na", "USD"),
        ("US", "na", "USD"),
        ("de", "eu", "EUR"),
        ("uk", "uk", "GBP"),
        ("JP", "jp", "JPY"),
        (" eu ", "eu", "EUR"),
    ],
)
def test_region_aliases(raw: str, region: str, currency: str) -> None:
    settings = Settings.from_env({"AMAZON_PAY_REGION": raw})
    assert (settings.region, settings.ledger_currency) == (region, currency)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://shop:pw@db:5432/shop", "postgresql+psycopg://shop:pw@db:5432/shop"),
        ("postgres://shop@db/shop", "postgresql+psycopg://shop@db/shop"),
        ("sqlite:////tmp/shop.db", "sqlite:////tmp/shop.db"),
    ],
)
def test_database_urls(raw: str, expected: str) -> None:
    assert Settings.from_env({"DATABASE_URL": raw}).database_url == expected


def test_endpoint_and_checkout_js_overrides() -> None:
    settings = Settings.from_env(
        {
            "AMAZON_PAY_ENDPOINT": "http://127.0.0.1:8443/",
            "AMAZON_PAY_CHECKOUT_JS_URL": "http://127.0.0.1:8443/checkout.js",
            "AMAZON_PAY_SANDBOX": "False",
            "AMAZON_PAY_ALGORITHM": "AMZN-PAY-RSASSA-PSS",
        }
    )
    assert settings.endpoint == "http://127.0.0.1:8443"
    assert settings.checkout_js_url == "http://127.0.0.1:8443/checkout.js"
    assert settings.sandbox is False
    assert settings.algorithm is Algorithm.PSS


def test_empty_values_count_as_unset() -> None:
    settings = Settings.from_env({"AMAZON_PAY_PUBLIC_KEY_ID": "", "DATABASE_URL": " "})
    assert settings.simulator_mode
    assert settings.database_url is None


@pytest.mark.parametrize(
    ("variable", "env"),
    [
        ("AMAZON_PAY_REGION", {"AMAZON_PAY_REGION": "xx"}),
        ("AMAZON_PAY_SANDBOX", {"AMAZON_PAY_SANDBOX": "maybe"}),
        ("AMAZON_PAY_ENDPOINT", {"AMAZON_PAY_ENDPOINT": "ftp://example.com"}),
        ("AMAZON_PAY_ENDPOINT", {"AMAZON_PAY_ENDPOINT": "https://example.com/v2"}),
        ("AMAZON_PAY_ENDPOINT", {"AMAZON_PAY_ENDPOINT": "https://example.com:99999"}),
        ("AMAZON_PAY_ENDPOINT", {"AMAZON_PAY_ENDPOINT": "example.com"}),
        ("AMAZON_PAY_ENDPOINT", {"AMAZON_PAY_ENDPOINT": "https://user:pw@example.com"}),
        ("AMAZON_PAY_CHECKOUT_JS_URL", {"AMAZON_PAY_CHECKOUT_JS_URL": "javascript:alert(1)"}),
        ("AMAZON_PAY_CHECKOUT_JS_URL", {"AMAZON_PAY_CHECKOUT_JS_URL": "//cdn/checkout.js"}),
        ("AMAZON_PAY_ALGORITHM", {"AMAZON_PAY_ALGORITHM": "RSA-SHA1"}),
        ("DATABASE_URL", {"DATABASE_URL": "mysql://u@h/db"}),
        ("DATABASE_URL", {"DATABASE_URL": "not a url"}),
        ("DATABASE_URL", {"DATABASE_URL": "postgresql://u@h"}),
        ("AMAZON_PAY_MERCHANT_ID", {"AMAZON_PAY_MERCHANT_ID": "A1 B2"}),
        ("AMAZON_PAY_STORE_ID", {"AMAZON_PAY_STORE_ID": "amzn1 store"}),
        ("AMAZON_PAY_PUBLIC_KEY_ID", {"AMAZON_PAY_PUBLIC_KEY_ID": "KEY ID,=x"}),
        ("AMAZON_PAY_REGION", {"AMAZON_PAY_REGION": "na\nX"}),
        ("APP_TRUST_PROXY", {"APP_TRUST_PROXY": "sometimes"}),
        ("APP_SIMULATOR_PORT", {"APP_SIMULATOR_PORT": "70000"}),
    ],
)
def test_bad_variable_is_named_in_one_line(variable: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(env)

    message = str(raised.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("variable", "overrides"),
    [
        ("AMAZON_PAY_PRIVATE_KEY", {"AMAZON_PAY_PRIVATE_KEY": ""}),
        ("AMAZON_PAY_PRIVATE_KEY", {"AMAZON_PAY_PRIVATE_KEY": "/nonexistent/key.pem"}),
        ("AMAZON_PAY_PRIVATE_KEY", {"AMAZON_PAY_PRIVATE_KEY": "garbage"}),
        ("AMAZON_PAY_PRIVATE_KEY", {"AMAZON_PAY_PRIVATE_KEY": "ec"}),
        ("AMAZON_PAY_PRIVATE_KEY", {"AMAZON_PAY_PRIVATE_KEY": "directory"}),
        ("SECRET_KEY", {"SECRET_KEY": ""}),
        ("SECRET_KEY", {"SECRET_KEY": "   "}),
        ("SECRET_KEY", {"SECRET_KEY": "a"}),
        ("SECRET_KEY", {"SECRET_KEY": "dev"}),
        ("SECRET_KEY", {"SECRET_KEY": "s" * 64}),
        ("SECRET_KEY", {"SECRET_KEY": "0123456789abcdef0123456789abcde"}),  # 31 characters
        ("PUBLIC_URL", {"PUBLIC_URL": ""}),
        ("PUBLIC_URL", {"PUBLIC_URL": "shop.example"}),
        ("PUBLIC_URL", {"PUBLIC_URL": "ftp://shop.example"}),
        ("PUBLIC_URL", {"PUBLIC_URL": "https://shop.example/shop"}),
        ("PUBLIC_URL", {"PUBLIC_URL": "https://shop.example/?a=b"}),
        ("PUBLIC_URL", {"PUBLIC_URL": "https://user@shop.example"}),
    ],
)
def test_bad_credentials_are_named_in_one_line(
    key_files: dict[str, Path], variable: str, overrides: dict[str, str]
) -> None:
    resolved = {
        k: str(key_files[v])
        if v in key_files
        else (str(key_files["ec"].parent) if v == "directory" else v)
        for k, v in overrides.items()
    }
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(credentials(key_files, **resolved))

    message = str(raised.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message
    assert "BEGIN" not in message  # never echo key material


@pytest.mark.parametrize(
    ("key_id", "flag", "expected"),
    [
        ("LIVE-AGH2Y6VC2VAUJ27GG6VDFOTD", "true", False),
        ("SANDBOX-AGH2Y6VC2VAUJ27GG6VDFOTD", "false", True),
        ("AGH2Y6VC2VAUJ27GG6VDFOTD", "false", False),
        ("AGH2Y6VC2VAUJ27GG6VDFOTD", "true", True),
    ],
)
def test_a_prefixed_key_names_its_environment(
    key_files: dict[str, Path], key_id: str, flag: str, expected: bool
) -> None:
    env = credentials(key_files, AMAZON_PAY_PUBLIC_KEY_ID=key_id, AMAZON_PAY_SANDBOX=flag)

    assert Settings.from_env(env).sandbox is expected


def test_a_weak_secret_key_is_accepted_only_in_simulator_mode(key_files: dict[str, Path]) -> None:
    assert Settings.from_env({"SECRET_KEY": "dev"}).secret_key == "dev"
    strong = "0123456789abcdef0123456789abcdef"
    assert Settings.from_env(credentials(key_files, SECRET_KEY=strong)).secret_key == strong


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://shop.example", "https://shop.example"),
        ("https://Shop.Example:8443/", "https://shop.example:8443"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_public_url_is_the_shops_origin(
    key_files: dict[str, Path], given: str, expected: str
) -> None:
    assert Settings.from_env(credentials(key_files, PUBLIC_URL=given)).public_url == expected
    assert Settings.from_env({"PUBLIC_URL": given}).public_url == expected
    assert Settings.from_env({}).public_url is None
