"""Property-based: requests generated from the app's own OpenAPI schema never get a 5xx.

(Schemathesis's pytest plugin does not run under pytest 9 here, so the operations are walked
with its Python API and Hypothesis directly.)
"""

from __future__ import annotations

from collections import Counter

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from service.app import create_app
from tests.service.conftest import settings_for


def test_no_generated_request_gets_a_server_error(served, engine) -> None:
    app = create_app(settings_for(served), engine=engine)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    with TestClient(app):  # runs the lifespan: model and index are live while the cases run
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 12
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=20,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case) -> None:
                response = case.call()
                statuses[response.status_code] += 1
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: "
                        f"{response.text[:200]}"
                    )

            run()
    assert not failures, failures[:5]
    assert sum(statuses.values()) > 100 and statuses[200] > 0, statuses  # it really ran
