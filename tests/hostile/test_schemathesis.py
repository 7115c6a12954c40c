"""Schemathesis against the app's own OpenAPI document, in process, on both backends.

Every operation gets schema-valid and schema-violating requests (a fixed number, a fixed
seed), then the stateful phase follows the links schemathesis infers (append, then read
what it wrote; create a subscription, then read and move it). Every response must:

- not be a server error (503 `unavailable` is allowed: it is a documented answer);
- have a status code, content type, headers and body that the document declares;
- be an RFC 9457 problem (`application/problem+json`, `type`, `title`, `status`,
  `detail`) when it is an error.

The app runs in schemathesis' own event loop thread (its ASGI client drives the lifespan),
so the test builds the app from the `settings` fixture rather than using `app`, whose
lifespan belongs to the test's loop.
"""

from __future__ import annotations

import json
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from app.settings import Settings

EXAMPLES_PER_OPERATION = 25
STATEFUL_SCENARIOS = 10
STATEFUL_STEPS = 10
SEED = 20261126
# An SSE response never ends: stop reading after its first message (the backlog's first
# event or `caught-up`, which is sent even when there is nothing to replay).
CONFIG = {"seed": SEED, "max-stream-events": 1}
LONG_POLL_SECONDS = 0.01


def no_server_error(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """No 5xx, except the documented 503 `unavailable`."""
    status = response.status_code
    assert status < 500 or status == 503, f"server error {status}: {response.text[:500]}"
    return True


def errors_are_problems(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A 4xx or 5xx is RFC 9457 problem details with the members the contract names."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/problem+json"), (
        f"{response.status_code} with Content-Type {content_type!r}"
    )
    if case.method.upper() == "HEAD":
        return True
    body: Any = json.loads(response.content)
    assert isinstance(body, dict), body
    assert str(body.get("type", "")).startswith("/problems/"), body
    assert isinstance(body.get("title"), str), body
    assert body.get("status") == response.status_code, body
    assert isinstance(body.get("detail"), str), body
    return True


CHECKS = [
    no_server_error,
    errors_are_problems,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def bounded(case: Case) -> None:
    """Long polls (`wait`, up to 60 s) would only slow the run; they end at once here."""
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > LONG_POLL_SECONDS:
        case.query["wait"] = LONG_POLL_SECONDS


def hypothesis_settings(**extra: Any) -> hypothesis.settings:
    return hypothesis.settings(
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        **extra,
    )


def fuzz_operation(operation: Any, mode: GenerationMode) -> None:
    @hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION)
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        bounded(case)
        response = case.call()
        case.validate_response(response, checks=CHECKS)

    run()


@pytest.fixture
def schema(settings: Settings) -> Any:
    app = create_app(settings)
    loaded = schemathesis.openapi.from_asgi(
        "/openapi.json", app, config=schemathesis.Config.from_dict(CONFIG)
    )
    try:
        yield loaded
    finally:
        shutdown_lifespans()  # the lifespan schemathesis started: writer, engine, notifier


def test_every_operation_answers_as_documented(schema: Any) -> None:
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz_operation(operation, mode)
            except hypothesis.errors.Unsatisfiable:
                continue  # nothing to negate: the operation has no parameters or body
            except BaseException as e:  # FailureGroup is an exception group
                if not isinstance(e, Exception | BaseExceptionGroup):
                    raise
                failures.append(f"{operation.label} ({mode.value}):\n{e}")
    assert not failures, "\n\n".join(failures)


def test_stateful_workflows_answer_as_documented(schema: Any) -> None:
    base = schema.as_state_machine()

    class Workflow(base):  # type: ignore[misc, valid-type]
        def before_call(self, case: Case) -> None:
            bounded(case)

        def validate_response(
            self, response: Response, case: Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None)

    Workflow.run(
        settings=hypothesis_settings(
            max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS
        )
    )
