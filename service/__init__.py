"""Service side of trimodal: the FastAPI app and the `trimodal` command-line root."""
