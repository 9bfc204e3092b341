import re

import pytest

from gateway.openapi import operation_of

pytestmark = pytest.mark.integration


async def test_every_route_is_documented(gateway):
    document = await (await gateway.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    for route in gateway.app.router.routes():
        if route.method == "HEAD":
            continue
        assert operation_of(route.handler) is not None, (
            f"{route.method} {route.resource.canonical} has no operation"
        )
        assert route.method.lower() in document["paths"][route.resource.canonical]


async def test_schemas_come_from_the_models(gateway):
    document = await (await gateway.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    ready = document["paths"]["/readyz"]["get"]["responses"]
    assert ready["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Readiness"
    }
    assert schemas["Readiness"]["properties"]["status"]["enum"] == ["ok", "unavailable"]
    assert "ErrorBody" in schemas
    refs = re.findall(r'"#/components/schemas/(\w+)"', str(document).replace("'", '"'))
    assert set(refs) <= set(schemas)


async def test_docs_page_works_offline(gateway):
    response = await gateway.get("/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert "/openapi.json" in page
    assert not re.search(r"(src|href)=\"https?://", page), "the docs page must not load from a CDN"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
