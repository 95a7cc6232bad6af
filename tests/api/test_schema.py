import pytest
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

CARD_PATHS = {"/api/v1/cards/{number}": "get", "/api/v1/cards/{number}/assign": "post"}


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)


def test_the_schema_declares_the_api_key_scheme(schema):
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": schema["components"]["securitySchemes"]["ApiKeyAuth"]["description"],
    }


@pytest.mark.parametrize(("path", "method"), CARD_PATHS.items())
def test_each_card_operation_is_secured_and_documents_its_errors(schema, path, method):
    operation = schema["paths"][path][method]
    assert operation["security"] == [{"ApiKeyAuth": []}]
    expected = {"200", "400", "401", "403", "404", "429"} | ({"409", "422"} if method == "post" else set())
    assert expected <= set(operation["responses"])
    for status, response in operation["responses"].items():
        if status != "200":
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]


def test_posts_document_the_idempotency_key(schema):
    parameters = schema["paths"]["/api/v1/cards/{number}/assign"]["post"]["parameters"]
    header = next(p for p in parameters if p["in"] == "header" and p["name"] == "Idempotency-Key")
    assert header.get("required", False) is False  # not an (I) endpoint


def test_the_error_envelope_is_a_component(schema):
    components = schema["components"]["schemas"]
    assert components["Error"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(components["ErrorBody"]["required"]) == {"code", "message", "details"}


def test_the_card_response_matches_api_md(schema):
    card = schema["components"]["schemas"]["Card"]
    assert set(card["properties"]) == {"number", "status", "kind", "program", "member"}
    assert card["properties"]["member"]["nullable"] is True
    member = schema["components"]["schemas"]["CardMember"]
    assert {"id", "external_id", "email", "first_name", "last_name", "status", "balance"} <= set(member["properties"])
    balance = schema["components"]["schemas"]["Balance"]
    assert set(balance["properties"]) == {"available", "pending", "lifetime_earned", "redeemed", "expired"}
    assign = schema["components"]["schemas"]["CardAssignRequest"]
    assert set(assign["properties"]) == {"member_id", "external_id", "card_number"}


def test_the_schema_and_docs_need_no_key(client):
    assert client.get("/api/schema/").status_code == 200


def test_the_docs_page_is_served_without_a_cdn(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    # The start-up script (with the schema's URL) is a file of its own: the CSP allows no inline script.
    assert "/api/docs/?script" in page
    assert "/api/schema/" in client.get("/api/docs/", {"script": ""}).content.decode()
    assert "cdn." not in page
    assert "unpkg" not in page
    assert "drf_spectacular_sidecar" in page


def test_the_redoc_page_is_served(client):
    response = client.get("/api/redoc/")
    assert response.status_code == 200
    assert "cdn." not in response.content.decode()
    assert "fonts.googleapis.com" not in response.content.decode()
