"""A Flask-free Amazon Pay API v2 client: signing, a pooled HTTP client, typed models and errors."""
