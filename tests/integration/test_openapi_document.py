"""The OpenAPI document says what the API does: security, problems, idempotency, ids; /docs works offline."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest

from tests.bookings import hold_body, seed_room_type
from tests.conftest import bearer


def _operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


async def test_document_is_complete(sqlite_settings, client_for):
    async with client_for(sqlite_settings) as client:
        spec = (await client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": spec["components"]["securitySchemes"]["bearer"]["description"],
    }  # fmt: skip
    text = str(spec)
    assert "HTTPValidationError" not in text and "'ValidationError'" not in text
    tags = {tag["name"]: tag["description"] for tag in spec["tags"]}
    ids = []
    for path, method, operation in _operations(spec):
        ids.append(operation["operationId"])
        assert re.fullmatch(r"[a-z]+\.[a-z][a-z0-9_]*", operation["operationId"]), operation["operationId"]
        assert "_api_v1_" not in operation["operationId"]
        assert operation["operationId"].split(".")[0] == operation["tags"][0]
        assert all(tags.get(tag) for tag in operation["tags"]), (path, operation["tags"])
        responses = operation["responses"]
        assert "429" in responses and "default" in responses, (method, path)
        for status, response in responses.items():
            if status == "default" or status[0] in "45":
                assert list(response["content"]) == ["application/problem+json"], (method, path, status)
        if "422" in responses:
            assert responses["422"]["content"]["application/problem+json"]["schema"] == {
                "$ref": "#/components/schemas/ValidationProblem"
            }
        if operation["security"] == [{"bearer": []}]:
            assert {"401", "403"} <= set(responses), (method, path)
    assert len(ids) == len(set(ids))
    operations = {operation["operationId"]: operation for _, _, operation in _operations(spec)}
    hold = operations["booking.hold"]
    assert hold["security"] == [{"bearer": []}]
    assert {"name": "Idempotency-Key", "in": "header", "required": True}.items() <= hold["parameters"][0].items()
    for created in ("booking.hold", "catalog.create_property", "catalog.create_room_type"):
        assert "Location" in operations[created]["responses"]["201"]["headers"], created
    assert operations["booking.pay"]["parameters"][-1]["name"] == "Idempotency-Key"
    assert operations["search.search"]["security"] == [] and operations["operations.live"]["security"] == []
    # PATCH fields that refuse null are not declared nullable.
    for name in ("PropertyUpdate", "RoomTypeUpdate"):
        for field, schema in spec["components"]["schemas"][name]["properties"].items():
            assert "null" not in str(schema), (name, field, schema)


async def test_operation_ids_are_stable(sqlite_settings, client_for):
    """An SDK's method names are the operation ids: one that changes, or moves to another path,
    breaks every generated client. The pinned list is in openapi_operations.txt."""
    async with client_for(sqlite_settings) as client:
        spec = (await client.get("/openapi.json")).json()
    current = {operation["operationId"]: f"{method.upper()} {path}" for path, method, operation in _operations(spec)}
    lines = (Path(__file__).parent / "openapi_operations.txt").read_text().splitlines()
    pinned = dict(line.split(" ", 1) for line in lines if line and not line.startswith("#"))
    changed = {name: (where, current.get(name)) for name, where in pinned.items() if current.get(name) != where}
    assert not changed, f"operation ids changed or gone (pinned, now): {changed}"
    assert len(pinned) >= 60


async def test_swagger_ui_is_served_locally(sqlite_settings, client_for):
    async with client_for(sqlite_settings) as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assert assets and all(asset.startswith("/docs/assets/") for asset in assets), assets
        for asset in assets:
            answer = await client.get(asset)
            assert answer.status_code == 200 and len(answer.content) > 500, asset
        assert "https://" not in page.text.replace("https://staybook.dev", "")


async def test_allow_names_every_method_of_the_path(sqlite_settings, client_for):
    async with client_for(sqlite_settings) as client:
        answer = await client.put(f"/api/v1/properties/{uuid.uuid4()}")
        assert answer.status_code == 405
        assert answer.headers["content-type"] == "application/problem+json"
        assert set(answer.headers["allow"].split(", ")) == {"GET", "PATCH", "DELETE"}
        answer = await client.delete("/api/v1/bookings")
        assert set(answer.headers["allow"].split(", ")) == {"POST"}


async def test_hold_answers_with_its_location(sqlite_settings, client_for):
    settings = sqlite_settings.model_copy(
        update={"payments": sqlite_settings.payments.model_copy(update={"sandbox_instant": True})}
    )
    headers = bearer(settings, "guest") | {"Idempotency-Key": uuid.uuid4().hex}
    async with client_for(settings) as client:
        room = await seed_room_type(client.app.state.runtime, total=1)
        held = await client.post("/api/v1/bookings", json=hold_body(room["room_type_id"]), headers=headers)
        assert held.status_code == 201, held.text
        assert held.headers["location"] == f"/api/v1/bookings/{held.json()['id']}"
        replay = await client.post("/api/v1/bookings", json=hold_body(room["room_type_id"]), headers=headers)
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.headers["location"] == held.headers["location"]
        fetched = await client.get(held.headers["location"], headers=headers)
        assert fetched.status_code == 200


async def test_patch_refuses_null_as_documented(sqlite_settings, client_for):
    async with client_for(sqlite_settings) as client:
        room = await seed_room_type(client.app.state.runtime, total=1)
        host = bearer(sqlite_settings, "host", room["host_id"])
        answer = await client.patch(f"/api/v1/room-types/{room['room_type_id']}", json={"name": None}, headers=host)
        assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "body.name"


async def test_the_contract_check_refuses_an_undocumented_answer(sqlite_settings):
    """The check every in-process client runs (tests/contract.py) fails on what the document does not say."""
    from staybook.app import create_app
    from tests.contract import ContractCheck, ContractViolation

    check = ContractCheck(create_app(sqlite_settings).openapi())
    url = f"http://staybook.test/api/v1/properties/{uuid.uuid4()}"

    def answer(status: int, body: dict, content_type: str = "application/json") -> httpx.Response:
        return httpx.Response(
            status, json=body, headers={"content-type": content_type}, request=httpx.Request("GET", url)
        )

    problem = {"type": "https://staybook.dev/problems/not-found", "title": "Not found", "status": 404}
    check.check(answer(404, problem, "application/problem+json"))
    with pytest.raises(ContractViolation):
        check.check(answer(200, {"name": "no id, no address"}))
    with pytest.raises(ContractViolation):
        check.check(answer(404, problem))  # problems are application/problem+json
    with pytest.raises(ContractViolation):
        check.check(answer(404, {"type": problem["type"], "status": 404}, "application/problem+json"))  # no title
    # Paths the document does not describe (pages, media) are not its business.
    check.check(httpx.Response(200, text="<html>", request=httpx.Request("GET", "http://staybook.test/en/")))


async def test_main_request_bodies_have_examples_the_api_accepts(sqlite_settings, client_for):
    """Swagger UI fills these in: each must be a body the route's model accepts."""
    from staybook.booking.schemas import CancelRequest, HoldRequest, PaymentRequest
    from staybook.catalog.schemas import PropertyCreate, RoomTypeCreate
    from staybook.identity.schemas import LoginRequest, RegisterRequest
    from staybook.inventory.schemas import CalendarUpdate

    models = {
        "booking.hold": HoldRequest,
        "booking.pay": PaymentRequest,
        "booking.cancel": CancelRequest,
        "identity.register": RegisterRequest,
        "identity.login": LoginRequest,
        "catalog.create_property": PropertyCreate,
        "catalog.create_room_type": RoomTypeCreate,
        "inventory.update_calendar": CalendarUpdate,
    }
    async with client_for(sqlite_settings) as client:
        spec = (await client.get("/openapi.json")).json()
        operations = {operation["operationId"]: operation for _, _, operation in _operations(spec)}
        for operation_id, model in models.items():
            body = operations[operation_id]["requestBody"]["content"]["application/json"]["schema"]
            examples = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]["examples"]
            assert examples, operation_id
            for example in examples:
                model.model_validate(example)
        # The demo's published guest account signs in with the login example, on a seeded database.
        from staybook.identity.seed import seed_demo

        await seed_demo(client.app.state.runtime, properties=0, seed=7)
        login = spec["components"]["schemas"]["LoginRequest"]["examples"][0]
        assert (await client.post("/api/v1/auth/login", json=login)).status_code == 200
    search = {p["name"]: p for p in operations["search.search"]["parameters"]}
    assert search["check_in"]["schema"]["examples"] and search["city"]["schema"]["examples"] == ["Paris"]


def test_every_problem_type_is_listed_in_docs():
    """Clients branch on `type`: each one the code can send is in docs/problems.md's table."""
    import importlib
    import pkgutil

    import staybook
    from staybook.kernel import errors

    for module in pkgutil.walk_packages(staybook.__path__, "staybook."):
        importlib.import_module(module.name)
    codes = {code for code, _ in errors._HTTP_TITLES.values()}
    pending = [errors.StaybookError]
    while pending:
        error = pending.pop()
        codes.add(error.code)
        pending.extend(error.__subclasses__())
    source = Path(staybook.__file__).parent
    for path in source.rglob("*.py"):
        text = path.read_text()
        # problem_response(503, "not-ready", ...), problem_body(...), PROBLEM_BASE + "bad-request"
        codes |= set(re.findall(r"problem_(?:response|body)\(\s*\d+,\s*\"([a-z-]+)\"", text))
        codes |= set(re.findall(r"PROBLEM_BASE \+ \"([a-z-]+)\"", text))
    docs = (Path(__file__).parents[2] / "docs" / "problems.md").read_text()
    listed = set(re.findall(r"^\| `([a-z-]+)` \|", docs, flags=re.MULTILINE))
    assert len(codes) > 20
    assert codes <= listed, f"problem types missing from docs/problems.md: {sorted(codes - listed)}"


async def test_allow_is_right_on_every_path(sqlite_settings, client_for):
    """405 on every documented path, for each method it does not take, names exactly those it does."""
    async with client_for(sqlite_settings) as client:
        spec = (await client.get("/openapi.json")).json()
        for path, item in spec["paths"].items():
            documented = {method.upper() for method in item}
            url = re.sub(r"\{[a-z_]+\}", lambda m: "sandbox" if m[0] == "{provider}" else str(uuid.uuid4()), path)
            for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - documented:
                answer = await client.request(method, url)
                assert answer.status_code == 405, (method, path, answer.status_code)
                assert answer.headers["content-type"] == "application/problem+json"
                assert set(answer.headers["allow"].split(", ")) == documented, (method, path, answer.headers["allow"])


async def test_fields_declared_nullable_accept_null(sqlite_settings, client_for):
    """A body field the document says may be null is accepted as null (PATCH /me, the calendar);
    PATCH bodies that refuse null do not declare it (test_document_is_complete)."""
    from staybook.identity.seed import seed_demo

    async with client_for(sqlite_settings) as client:
        spec = (await client.get("/openapi.json")).json()
        schemas = spec["components"]["schemas"]

        def nullable(operation_id: str) -> list[str]:
            operation = next(op for _, _, op in _operations(spec) if op["operationId"] == operation_id)
            name = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
            return [field for field, schema in schemas[name]["properties"].items() if "null" in str(schema)]

        runtime = client.app.state.runtime
        await seed_demo(runtime, properties=0, seed=7)
        login = {"email": "guest@staybook.demo", "password": "demo-guest-pass-42"}
        tokens = (await client.post("/api/v1/auth/login", json=login)).json()
        guest = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert len(nullable("identity.update_me")) >= 5
        for field in nullable("identity.update_me"):
            answer = await client.patch("/api/v1/me", json={field: None}, headers=guest)
            assert answer.status_code == 200, (field, answer.text)

        room = await seed_room_type(runtime, total=1)
        host = bearer(sqlite_settings, "host", room["host_id"])
        stay = {"from": "2027-03-01", "to": "2027-03-05"}
        assert len(nullable("inventory.update_calendar")) >= 5
        for field in nullable("inventory.update_calendar"):
            url = f"/api/v1/room-types/{room['room_type_id']}/calendar"
            change = {"min_stay": 1} if field != "min_stay" else {"closed": False}  # something to change
            answer = await client.put(url, json=stay | change | {field: None}, headers=host)
            assert answer.status_code == 200, (field, answer.text)
