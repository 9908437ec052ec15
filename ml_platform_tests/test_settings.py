"""Where the platform's state and services are, from the environment."""

from __future__ import annotations

import pytest

from ml_platform import settings


def test_endpoint_services_are_named_per_model(monkeypatch):
    monkeypatch.delenv(settings.ENDPOINTS_ENV, raising=False)
    assert settings.endpoint_service("flight_delay") is None
    monkeypatch.setenv(settings.ENDPOINTS_ENV, "")
    assert settings.endpoint_service("flight_delay") is None
    monkeypatch.setenv(
        settings.ENDPOINTS_ENV, " flight_delay = http://127.0.0.1:8080/ , churn=https://churn.internal:8443,"
    )
    assert settings.endpoint_service("flight_delay") == "http://127.0.0.1:8080"
    assert settings.endpoint_service("churn") == "https://churn.internal:8443"
    assert settings.endpoint_service("other") is None


@pytest.mark.parametrize(
    "value",
    [
        "flight_delay",
        "flight_delay=127.0.0.1:8080",
        "=http://h:1",
        "flight_delay=ftp://h:1",
        "flight_delay=http://h:1;churn=http://h:2",
    ],
)
def test_a_malformed_endpoint_list_names_the_variable_and_the_pair(monkeypatch, value):
    monkeypatch.setenv(settings.ENDPOINTS_ENV, value)
    with pytest.raises(ValueError) as error:
        settings.endpoint_service("flight_delay")
    assert settings.ENDPOINTS_ENV in str(error.value) and "model=http(s)://host:port" in str(error.value)
