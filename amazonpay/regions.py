"""Amazon Pay's regions: the aliases merchants use, API hosts, checkout.js and ledger currency.

The one home of these tables (docs/amazon-pay-api.md section 2). A *marketplace* keeps the
name the merchant configured (`uk` stays `uk`, for its GBP ledger); its *API region* is what
the host and the `x-amz-pay-region` header use (UK is served by the EU endpoint in every SDK).
"""

from __future__ import annotations

from amazonpay.errors import ConfigurationError

__all__ = [
    "MARKETPLACES",
    "api_host",
    "api_region",
    "checkout_js_url",
    "ledger_currency",
    "marketplace",
    "normalize_region",
]

# Alias (any case) -> marketplace.
_MARKETPLACE_ALIASES = {"na": "na", "us": "na", "eu": "eu", "de": "eu", "uk": "uk", "jp": "jp"}
MARKETPLACES = frozenset(_MARKETPLACE_ALIASES.values())
# Marketplace -> API region.
_API_REGION = {"na": "na", "eu": "eu", "uk": "eu", "jp": "jp"}
_API_HOSTS = {"na": "pay-api.amazon.com", "eu": "pay-api.amazon.eu", "jp": "pay-api.amazon.jp"}
_CHECKOUT_JS = {
    "na": "https://static-na.payments-amazon.com/checkout.js",
    "eu": "https://static-eu.payments-amazon.com/checkout.js",
    "jp": "https://static-fe.payments-amazon.com/checkout.js",
}
_LEDGER_CURRENCY = {"na": "USD", "eu": "EUR", "uk": "GBP", "jp": "JPY"}


def marketplace(region: str) -> str:
    """`na`, `eu`, `uk` or `jp` for a region or alias (any case); ConfigurationError otherwise."""
    try:
        return _MARKETPLACE_ALIASES[region.strip().lower()]
    except (KeyError, AttributeError):
        raise ConfigurationError(
            f"unknown Amazon Pay region {region!r}; use one of na, us, eu, de, uk, jp"
        ) from None


def api_region(region: str) -> str:
    """`na`, `eu` or `jp`: the region the API host and the region header use."""
    return _API_REGION[marketplace(region)]


normalize_region = api_region


def api_host(region: str) -> str:
    """The API host for a region (section 2)."""
    return _API_HOSTS[api_region(region)]


def checkout_js_url(region: str) -> str:
    """The checkout.js URL the storefront loads for a region (section 2)."""
    return _CHECKOUT_JS[api_region(region)]


def ledger_currency(region: str) -> str:
    """The currency the merchant's Amazon Pay account settles in for a marketplace."""
    return _LEDGER_CURRENCY[marketplace(region)]
