"""Property-based fuzz of the live server's OpenAPI schema (schemathesis): no input may cause a 5xx."""

import schemathesis
from hypothesis import HealthCheck, given, settings

from server_helpers import API_KEY

EXAMPLES_PER_OPERATION = 12


def test_no_generated_request_makes_the_server_fail(shared_server):
    schema = schemathesis.openapi.from_url(f"{shared_server.url}/openapi.json")
    failures, calls = [], []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case):
            response = case.call(headers={"X-API-Key": API_KEY}, timeout=60)
            calls.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.body!r:.200} -> "
                                f"{response.status_code} {response.text[:300]}")

        call()

    assert failures == [], "\n".join(failures) + "\n" + shared_server.log_tail(4000)
    assert len(calls) >= len(operations) * 3
    assert shared_server.process.poll() is None
