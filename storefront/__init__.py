"""The shop's web layer (blueprints under views/) and its use cases (checkout, store)."""
