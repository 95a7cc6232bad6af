from decimal import Decimal

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.api.conftest import client_with, make_key
from tests.loyalty.factories import ProgramFactory

from .factories import TierFactory

URL = "/api/v1/tiers"


@pytest.fixture
def client(program):
    return client_with(make_key(program, scopes=["read"])[1])


def test_the_tier_list_is_in_order_with_thresholds_multipliers_and_benefits(client, program, gold, silver):
    TierFactory(program=program, name="Hidden", position=9, is_active=False)
    response = client.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert [t["name"] for t in body["results"]] == ["Silver", "Gold"]
    assert body["next"] is None
    gold_row = body["results"][1]
    assert gold_row["threshold"] == "500.00"
    assert gold_row["multiplier"] == "2.000"
    assert gold_row["retention_days"] == 60
    assert gold_row["metric"] == "points_earned"
    assert "benefits" in gold_row


def test_the_tier_list_never_shows_another_programs_tiers(client, tiers):
    other = ProgramFactory()
    TierFactory(program=other, name="Elsewhere", position=1, threshold=Decimal("1"))
    names = [t["name"] for t in client.get(URL).json()["results"]]
    assert "Elsewhere" not in names
    other_client = client_with(make_key(other, scopes=["read"])[1])
    assert [t["name"] for t in other_client.get(URL).json()["results"]] == ["Elsewhere"]


def test_the_tier_list_needs_an_api_key(db):
    response = APIClient().get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"]


def test_the_schema_documents_the_tier_list(db):
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert "get" in schema["paths"]["/api/v1/tiers"]
