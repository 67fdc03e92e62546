"""The demo catalog and the cart arithmetic: prices live here, never in the browser."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = ["CURRENCY", "PRODUCTS", "CartLine", "Product", "cart_lines", "cart_total"]

CURRENCY = "USD"
MAX_QUANTITY = 10  # per product; keeps totals far below Amazon's per-charge limits


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    description: str
    price: Decimal


PRODUCTS: dict[str, Product] = {
    p.id: p
    for p in (
        Product(
            "coffee-beans", "Single-origin coffee beans", "250 g, medium roast.", Decimal("14.00")
        ),
        Product("pour-over", "Ceramic pour-over dripper", "Fits most mugs.", Decimal("24.50")),
        Product("mug", "Stoneware mug", "350 ml, dishwasher safe.", Decimal("9.99")),
        Product("grinder", "Hand burr grinder", "Adjustable, stainless steel.", Decimal("49.00")),
    )
}


@dataclass(frozen=True)
class CartLine:
    product: Product
    quantity: int

    @property
    def subtotal(self) -> Decimal:
        return self.product.price * self.quantity


def cart_lines(cart: Mapping[str, Any]) -> list[CartLine]:
    """Known products with sane quantities; anything else in the (signed) cookie is ignored."""
    lines = []
    for product_id, product in PRODUCTS.items():
        quantity = cart.get(product_id)
        if isinstance(quantity, int) and not isinstance(quantity, bool) and quantity > 0:
            lines.append(CartLine(product, min(quantity, MAX_QUANTITY)))
    return lines


def cart_total(lines: list[CartLine]) -> Decimal:
    return sum((line.subtotal for line in lines), Decimal("0.00")).quantize(Decimal("0.01"))


def cart_snapshot(lines: list[CartLine]) -> list[dict[str, Any]]:
    """What the pending checkout and the order remember about the cart."""
    return [
        {
            "id": line.product.id,
            "name": line.product.name,
            "quantity": line.quantity,
            "price": str(line.product.price),
        }
        for line in lines
    ]
