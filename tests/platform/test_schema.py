"""/api/schema/ answers every request, also when a worker's threads build it at once."""

import threading

import pytest
from django.test import Client


@pytest.mark.django_db(transaction=True)
def test_concurrent_schema_requests_all_answer_200():
    statuses: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def fetch() -> None:
        start.wait()
        try:
            statuses.append(Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").status_code)
        except BaseException as exc:  # the test client re-raises the view's exception
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert statuses == [200] * 4
