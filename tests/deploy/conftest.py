from tests.service.conftest import engine, served  # noqa: F401  (the same tiny served index)
