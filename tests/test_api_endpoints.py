"""The REST twin of the endpoint registry, through httpx's ASGI transport."""

from __future__ import annotations

import httpx

from tests.conftest import bearer

H100 = {
    "name": "h100-llama70b",
    "base_url": "http://10.0.0.5:8000/v1/",
    "model": "meta-llama/Llama-3.3-70B-Instruct",
    "api_flavor": "chat",
    "gpu_model": "H100 SXM",
    "gpu_count": 8,
    "price_per_gpu_hour": 2.49,
    "watts_per_gpu": 700,
    "engine": "vllm",
    "quantization": "fp8",
    "tags": ["prod", "us-east", "prod"],
}


def assert_error_shape(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


async def test_crud_round_trip(client: httpx.AsyncClient, people) -> None:
    auth = await bearer(client, "editor")
    created = await client.post("/api/v1/endpoints", json=H100, headers=auth)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["base_url"] == "http://10.0.0.5:8000/v1"  # normalised
    assert body["tags"] == ["prod", "us-east"]
    assert body["pricing"] == "gpu_hour"
    assert body["api_key_set"] is False and "api_key" not in body

    got = await client.get(f"/api/v1/endpoints/{body['id']}", headers=auth)
    assert got.json() == body

    patched = await client.patch(
        f"/api/v1/endpoints/{body['id']}", json={"price_per_gpu_hour": 1.99, "tags": []}, headers=auth
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["price_per_gpu_hour"] == 1.99 and patched.json()["tags"] == []
    assert patched.json()["gpu_count"] == 8  # untouched

    deleted = await client.delete(f"/api/v1/endpoints/{body['id']}", headers=auth)
    assert deleted.status_code == 204
    assert_error_shape(await client.get(f"/api/v1/endpoints/{body['id']}", headers=auth), 404, "not_found")


async def test_list_is_paged(client: httpx.AsyncClient, people) -> None:
    auth = await bearer(client, "editor")
    for i in range(7):
        response = await client.post(
            "/api/v1/endpoints",
            json={"name": f"ep-{i}", "base_url": f"http://127.0.0.1:{9000 + i}/v1", "model": "m"},
            headers=auth,
        )
        assert response.status_code == 201
    first = (await client.get("/api/v1/endpoints?limit=3", headers=auth)).json()
    assert [e["name"] for e in first["items"]] == ["ep-0", "ep-1", "ep-2"]
    assert first["total"] == 7 and first["next"]
    second_page = (await client.get(f"/api/v1/endpoints?limit=3&cursor={first['next']}", headers=auth)).json()
    assert [e["name"] for e in second_page["items"]] == ["ep-3", "ep-4", "ep-5"]
    last = (await client.get(f"/api/v1/endpoints?limit=3&cursor={second_page['next']}", headers=auth)).json()
    assert [e["name"] for e in last["items"]] == ["ep-6"] and last["next"] is None
    foreign = await client.get("/api/v1/endpoints?cursor=x1", headers=auth)
    assert foreign.status_code == 422 and "cursor" in foreign.json()["error"]["fields"]
    bad = await client.get("/api/v1/endpoints?limit=0", headers=auth)
    error = assert_error_shape(bad, 422, "validation_failed")
    assert "limit" in error["fields"]


async def test_list_filters_by_tag_and_text_in_sql(client: httpx.AsyncClient, people) -> None:
    auth = await bearer(client, "editor")
    tags = [["prod"], ["prod-eu"], ["staging", "prod"], ["a_b"], []]
    for i, tag_list in enumerate(tags):
        body = {
            "name": f"t{i}_x",
            "base_url": f"http://127.0.0.1:{9100 + i}/v1",
            "model": f"m{i}",
            "tags": tag_list,
        }
        assert (await client.post("/api/v1/endpoints", json=body, headers=auth)).status_code == 201
    prod = (await client.get("/api/v1/endpoints?tag=prod&limit=1", headers=auth)).json()
    assert prod["total"] == 2 and [e["name"] for e in prod["items"]] == ["t0_x"]  # not "prod-eu"
    odd = (await client.get("/api/v1/endpoints", params={"tag": "a_b"}, headers=auth)).json()
    assert [e["name"] for e in odd["items"]] == ["t3_x"]
    # `_` in a tag is literal, not a LIKE wildcard.
    assert (await client.get("/api/v1/endpoints", params={"tag": "a%b"}, headers=auth)).json()["total"] == 0
    assert (await client.get("/api/v1/endpoints", params={"tag": "aXb"}, headers=auth)).json()["total"] == 0
    # `_` and `%` in the text are literal, not wildcards.
    assert (await client.get("/api/v1/endpoints", params={"q": "t_"}, headers=auth)).json()["total"] == 0
    assert (await client.get("/api/v1/endpoints", params={"q": "2_x"}, headers=auth)).json()["total"] == 1


async def test_validation_errors_name_the_field(client: httpx.AsyncClient, people) -> None:
    auth = await bearer(client, "editor")
    bad_url = await client.post("/api/v1/endpoints", json={**H100, "base_url": "ftp://x"}, headers=auth)
    assert "base_url" in assert_error_shape(bad_url, 422, "validation_failed")["fields"]

    unknown = await client.post("/api/v1/endpoints", json={**H100, "colour": "red"}, headers=auth)
    assert assert_error_shape(unknown, 422, "validation_failed")["fields"]["colour"] == "unknown field"

    both = await client.post(
        "/api/v1/endpoints",
        json={**H100, "input_price_per_million": 1, "output_price_per_million": 2},
        headers=auth,
    )
    assert "price_per_gpu_hour" in assert_error_shape(both, 422, "validation_failed")["fields"]

    no_count = await client.post("/api/v1/endpoints", json={**H100, "gpu_count": None}, headers=auth)
    assert "gpu_count" in assert_error_shape(no_count, 422, "validation_failed")["fields"]

    half_token_price = await client.post(
        "/api/v1/endpoints",
        json={
            "name": "hosted",
            "base_url": "https://api.example.com/v1",
            "model": "m",
            "input_price_per_million": 1,
        },
        headers=auth,
    )
    assert (
        "output_price_per_million" in assert_error_shape(half_token_price, 422, "validation_failed")["fields"]
    )

    assert (await client.post("/api/v1/endpoints", json=H100, headers=auth)).status_code == 201
    duplicate = await client.post("/api/v1/endpoints", json={**H100, "name": "H100-LLAMA70B"}, headers=auth)
    assert "name" in assert_error_shape(duplicate, 422, "validation_failed")["fields"]

    not_json = await client.post(
        "/api/v1/endpoints", content=b"{", headers={**auth, "content-type": "application/json"}
    )
    assert_error_shape(not_json, 422, "validation_failed")


async def test_writes_need_authentication_and_role(client: httpx.AsyncClient, people) -> None:
    assert_error_shape(await client.post("/api/v1/endpoints", json=H100), 401, "unauthorized")
    assert_error_shape(await client.get("/api/v1/endpoints"), 401, "unauthorized")  # reads private by default
    bogus = {"Authorization": "Bearer sbt_not-a-real-token"}
    assert_error_shape(await client.get("/api/v1/endpoints", headers=bogus), 401, "unauthorized")

    viewer = await bearer(client, "viewer")
    assert (await client.get("/api/v1/endpoints", headers=viewer)).status_code == 200
    assert_error_shape(await client.post("/api/v1/endpoints", json=H100, headers=viewer), 403, "forbidden")

    read_only = await bearer(client, "admin", read_only=True)
    assert (await client.get("/api/v1/endpoints", headers=read_only)).status_code == 200
    assert_error_shape(await client.post("/api/v1/endpoints", json=H100, headers=read_only), 403, "forbidden")
    assert_error_shape(
        await client.post("/api/v1/tokens", json={"name": "x"}, headers=read_only), 403, "forbidden"
    )

    editor = await bearer(client, "editor")
    created = await client.post("/api/v1/endpoints", json=H100, headers=editor)
    assert created.status_code == 201
    assert_error_shape(
        await client.delete(f"/api/v1/endpoints/{created.json()['id']}", headers=viewer), 403, "forbidden"
    )


async def test_revoking_a_token_takes_effect_at_once(client: httpx.AsyncClient, people) -> None:
    auth = await bearer(client, "editor")
    second = await bearer(client, "editor")
    assert (await client.get("/api/v1/endpoints", headers=second)).status_code == 200
    listed = (await client.get("/api/v1/tokens", headers=auth)).json()["items"]
    assert all("token" not in t for t in listed)
    prefix = second["Authorization"].removeprefix("Bearer ")[:10]
    made = next(t for t in listed if t["prefix"] == prefix)
    revoked = await client.delete(f"/api/v1/tokens/{made['id']}", headers=auth)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert_error_shape(await client.get("/api/v1/endpoints", headers=second), 401, "unauthorized")


async def test_public_read_opens_reads_only(app, client: httpx.AsyncClient, people) -> None:
    closed = app.state.settings
    app.state.settings = closed.but(public_read=True)  # settings are values: a changed copy
    try:
        assert (await client.get("/api/v1/endpoints")).status_code == 200
        assert_error_shape(await client.post("/api/v1/endpoints", json=H100), 401, "unauthorized")
    finally:
        app.state.settings = closed


async def test_api_key_is_write_only_and_dropped_on_host_change(client: httpx.AsyncClient, people) -> None:
    auth = await bearer(client, "editor")
    created = await client.post(
        "/api/v1/endpoints", json={**H100, "api_key": "sk-live-0123456789abcd"}, headers=auth
    )
    body = created.json()
    assert body["api_key_set"] is True and body["api_key_last4"] == "abcd"
    assert "0123456789" not in created.text

    # Another path on the same server asks for the key again; the same URL keeps it.
    other_path = await client.patch(
        f"/api/v1/endpoints/{body['id']}", json={"base_url": "http://10.0.0.5:8000/v2"}, headers=auth
    )
    assert_error_shape(other_path, 422, "validation_failed")
    assert "api_key" in other_path.json()["error"]["fields"]
    same_url = await client.patch(
        f"/api/v1/endpoints/{body['id']}", json={"base_url": H100["base_url"], "model": "m2"}, headers=auth
    )
    assert same_url.json()["api_key_set"] is True

    moved = await client.patch(
        f"/api/v1/endpoints/{body['id']}", json={"base_url": "http://evil.example/v1"}, headers=auth
    )
    assert moved.json()["api_key_set"] is False and moved.json()["api_key_last4"] is None

    with_key = await client.patch(
        f"/api/v1/endpoints/{body['id']}",
        json={"base_url": "http://10.0.0.9:8000/v1", "api_key": "sk-new-key-0000000000wxyz"},
        headers=auth,
    )
    assert with_key.json()["api_key_set"] is True and with_key.json()["api_key_last4"] == "wxyz"

    cleared = await client.patch(f"/api/v1/endpoints/{body['id']}", json={"api_key": None}, headers=auth)
    assert cleared.json()["api_key_set"] is False


async def test_health_checks_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


async def test_unknown_api_route_uses_the_error_shape(client: httpx.AsyncClient) -> None:
    assert_error_shape(await client.get("/api/v1/nope"), 404, "not_found")


async def test_openapi_documents_the_endpoints(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/v1/openapi.json")).json()
    assert "/api/v1/endpoints" in spec["paths"] and "/api/v1/endpoints/{endpoint_id}" in spec["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text.lower()


async def test_prometheus_metrics(client: httpx.AsyncClient, people) -> None:
    assert (await client.get("/metrics")).status_code == 401
    auth = await bearer(client, "viewer")
    response = await client.get("/metrics", headers=auth)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert "smartbench_endpoints 0" in response.text and "smartbench_runs_executing_here" in response.text


async def test_ids_past_the_id_range_are_refused_not_500(client: httpx.AsyncClient, people) -> None:
    """Ids are the databases' signed 32-bit integer columns: one past the range (or 2^63, which
    overflowed SQLite's driver) is a 422 in the error shape, never a 500 (issue #10.6)."""
    auth = await bearer(client, "editor")
    assert_error_shape(await client.get(f"/api/v1/runs/{2**63}", headers=auth), 422, "validation_failed")
    big = 2**31
    for path in (f"/api/v1/endpoints/{big}", f"/api/v1/runs/{big}", f"/api/v1/runs?endpoint_id={big}",
                 f"/api/v1/trends/cost?endpoint={big}", f"/api/v1/endpoints/{big}/overview"):  # fmt: skip
        assert_error_shape(await client.get(path, headers=auth), 422, "validation_failed")
    assert (await client.get(f"/api/v1/endpoints/{big - 1}", headers=auth)).status_code == 404
    for path in (f"/endpoints/{big}", f"/runs/{big}", f"/trends?endpoint={big}"):
        response = await client.get(path, headers=auth)
        assert 400 <= response.status_code < 500, (path, response.status_code)


async def test_every_list_answers_one_page_shape(app) -> None:  # type: ignore[no-untyped-def]
    """Every list in the API is a Page (`items` and `next`), never a bare array: OpenAPI says so."""
    spec = app.openapi()
    schemas = spec["components"]["schemas"]
    lists = []
    for path, methods in spec["paths"].items():
        get = methods.get("get")
        if get is None:
            continue
        body = (
            get["responses"].get("200", {}).get("content", {}).get("application/json", {}).get("schema", {})
        )
        assert body.get("type") != "array", f"{path} answers a bare array"
        ref = body.get("$ref", "").rsplit("/", 1)[-1]
        props = schemas.get(ref, {}).get("properties", {})
        if "items" in props:
            lists.append(path)
            assert "next" in props, f"{path} answers items without next"
    assert len(lists) >= 12, lists
