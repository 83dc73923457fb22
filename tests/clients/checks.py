"""importops driven by Rocket.Chat's Python client libraries.

- rocketchat_API (``RocketChat(user, password, server_url=...)``, ``.me()``, ``.logout()``,
  ``.call_api_get(...)``, ``.call_api_post(...)``, ``.permissions_*``, ``.users_*``);
- rocket-python (``rocketchat.calls.*``: ``GetMe``, ``Logout``, and its own password login).

Answers are validated with jsonschema against the JSON Schemas @rocket.chat/core-typings ships
(written to $CLIENTS_WORK by checks.mjs). Environment: as checks.mjs (set by ./run).
"""

import json
import os
import sys
import time
import traceback

import jsonschema
import requests
from rocketchat.calls.auth.get_me import GetMe
from rocketchat.calls.auth.logout import Logout
from rocketchat_API.APIExceptions.RocketExceptions import (
    RocketApiException,
    RocketAuthenticationException,
)
from rocketchat_API.rocketchat import RocketChat

BASE = os.environ["IMPORTOPS_BASE_URL"]
ADMIN = os.environ["IMPORTOPS_ADMIN_USER"]
ADMIN_PASSWORD = os.environ["IMPORTOPS_ADMIN_PASSWORD"]
VIEWER = os.environ["IMPORTOPS_VIEWER_USER"]
VIEWER_PASSWORD = os.environ["IMPORTOPS_VIEWER_PASSWORD"]
WORK = os.environ["CLIENTS_WORK"]
RESULTS = os.environ.get("CLIENTS_RESULTS")
SUFFIX = format(int(time.time() * 1000), "x")

with open(os.path.join(WORK, "core-typings.components.json"), encoding="utf-8") as f:
    COMPONENTS = json.load(f)


def conforms(type_name, value, what):
    """Raise unless value conforms to core-typings' schema of type_name (formats not checked)."""
    schema = {"components": COMPONENTS, "$ref": f"#/components/schemas/{type_name}"}
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(value), key=lambda e: list(e.path)
    )
    if errors:
        listed = "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors)
        raise AssertionError(f"{what} does not conform to {type_name}: {listed}")


def null_paths(value, path="$"):
    if value is None:
        return [path]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in null_paths(v, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in null_paths(v, f"{path}.{k}")]
    return []


def no_nulls(value, what):
    paths = null_paths(value)
    assert not paths, f"{what} has null where the type has no null: {', '.join(paths)}"


def equal(actual, expected, what):
    assert actual == expected, f"{what}: expected {expected!r}, got {actual!r}"


def api_error(call):
    """Run call, which must fail with a Rocket.Chat error body; return (status, body)."""
    try:
        value = call()
    except RocketApiException as e:
        return e.status_code, e.response_json
    raise AssertionError(f"expected an error answer, got {value!r}")


PASSED = []
FAILED = []


def check(name):
    def run(fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, whatever its kind
            message = str(e) or traceback.format_exc(limit=2)
            if not isinstance(e, AssertionError):
                message = f"{type(e).__name__}: {message}"
            FAILED.append(name)
            print(f"FAIL  {name}\n      " + message.replace("\n", "\n      "), flush=True)
            outcome = {"suite": "python", "name": name, "ok": False, "message": message}
        else:
            PASSED.append(name)
            print(f"PASS  {name}", flush=True)
            outcome = {"suite": "python", "name": name, "ok": True}
        if RESULTS:
            with open(RESULTS, "a", encoding="utf-8") as f:
                f.write(json.dumps(outcome) + "\n")
        return fn

    return run


STATE = {}


# === rocketchat_API =========================================================================
@check("rocketchat_API: RocketChat(user, password) logs in (password, by username)")
def _():
    rocket = RocketChat(ADMIN, ADMIN_PASSWORD, server_url=BASE)
    assert rocket.headers.get("X-Auth-Token"), "no token after login"
    STATE["rocket"] = rocket


@check("rocketchat_API: login by the username in upper case (usernames ignore case)")
def _():
    try:
        rocket = RocketChat(ADMIN.upper(), ADMIN_PASSWORD, server_url=BASE)
    except RocketAuthenticationException as e:
        raise AssertionError("login refused (401) for the username in upper case") from e
    assert rocket.headers.get("X-Auth-Token"), "no token after login"


def rocket():
    if "rocket" not in STATE:
        STATE["rocket"] = RocketChat(ADMIN, ADMIN_PASSWORD, server_url=BASE)
    return STATE["rocket"]


@check("rocketchat_API: me() conforms to core-typings IMeApiUser")
def _():
    me = rocket().me()
    conforms("IMeApiUser", me, "me")
    no_nulls(me, "me")
    equal(me.get("success"), True, "success")
    equal(me.get("username"), ADMIN, "username")
    equal(me.get("services", {}).get("password", {}).get("exists"), True, "services.password.exists")


@check("rocketchat_API: me(fields=...) (no query schema: the parameter is ignored)")
def _():
    try:
        me = rocket().me(fields='{"username":1}')
    except RocketApiException as e:
        raise AssertionError(f"me?fields= answered {e.status_code} {e.response_json}") from e
    conforms("IMeApiUser", me, "me")


@check("rocketchat_API: info() answers a Rocket.Chat 8.x version")
def _():
    info = rocket().info()
    version = str(info.get("version"))
    assert version.split(".")[0] == "8", f"version should be 8.x.y, got {version!r}"


@check("rocketchat_API: getLatestImportOperations, each an IImport")
def _():
    ops = rocket().call_api_get("getLatestImportOperations")
    assert isinstance(ops, list) and 0 < len(ops) <= 20, f"expected 1 to 20 operations, got {ops!r}"
    for i, op in enumerate(ops):
        # Numeric ts (Rocket.Chat's documented example, older servers) is read as a date.
        if isinstance(op.get("ts"), (int, float)):
            op = {**op, "ts": "1970-01-01T00:00:00.000Z"}
        conforms("IImport", op, f"operation {i}")
        no_nulls(op, f"operation {i}")


@check("rocketchat_API: import.new, getCurrentImportOperation, import.status, getImportProgress")
def _():
    r = rocket()
    new = r.call_api_post("import.new")
    op = new["operation"]
    conforms("IImport", op, "import.new operation")
    assert len(op["_id"]) == 24 and all(c in "0123456789abcdef" for c in op["_id"]), (
        f"_id should be a 24-hex ObjectId, got {op['_id']!r}"
    )
    current = r.call_api_get("getCurrentImportOperation")
    equal(current["operation"]["_id"], op["_id"], "getCurrentImportOperation operation._id")
    status = r.call_api_get("import.status")
    equal(status["state"], "new", "import.status state")
    conforms("IImport", status["operation"], "import.status operation")
    progress = r.call_api_get("getImportProgress")
    equal(
        [progress.get("key"), progress.get("name"), progress.get("step")],
        ["api", "API", "importer_new"],
        "getImportProgress [key, name, step]",
    )
    STATE["op"] = op


@check("rocketchat_API: import.clear invalidates; importers.list")
def _():
    r = rocket()
    equal(r.call_api_post("import.clear"), {"success": True}, "import.clear answer")
    equal(r.call_api_get("import.status")["state"], "error", "import.status state after import.clear")
    equal(
        r.call_api_get("importers.list"),
        [
            {"key": "csv", "name": "CSV"},
            {"key": "slack", "name": "Slack"},
            {"key": "slack-users", "name": "Slack_Users"},
        ],
        "importers.list",
    )


@check("rocketchat_API: permissions_list_all(), each an IPermission")
def _():
    answer = rocket().permissions_list_all()
    equal(answer.get("remove"), [], "remove")
    for i, p in enumerate(answer["update"]):
        conforms("IPermission", p, f"update[{i}]")
        no_nulls(p, f"update[{i}]")
    ids = {p["_id"] for p in answer["update"]}
    assert {"view-import-operations", "run-import", "create-c", "edit-message"} <= ids, (
        f"default permissions missing ({len(ids)} listed)"
    )


@check("rocketchat_API: permissions_update() with an unknown permission: 400 'Invalid permission'")
def _():
    status, body = api_error(
        lambda: rocket().permissions_update([{"_id": "no-such-permission", "roles": ["admin"]}])
    )
    equal(status, 400, "status")
    equal(body.get("error"), "Invalid permission", "error")


@check("rocketchat_API: users_create() answers an IUser; users_delete() answers deletedRooms")
def _():
    r = rocket()
    username = f"py-user-{SUFFIX}"
    created = r.users_create(f"{username}@example.com", "Py User", "py-user-password-1", username)
    conforms("IUser", created["user"], "users.create user")
    no_nulls(created["user"], "users.create user")
    deleted = r.users_delete(created["user"]["_id"])
    equal(deleted, {"deletedRooms": [], "success": True}, "users.delete answer")


@check("rocketchat_API: a user without the permission gets 403 with Rocket.Chat's text")
def _():
    viewer = RocketChat(VIEWER, VIEWER_PASSWORD, server_url=BASE)
    status, body = api_error(lambda: viewer.call_api_get("getLatestImportOperations"))
    equal(status, 403, "status")
    equal(
        body,
        {
            "success": False,
            "error": "User does not have the permissions required for this action [error-unauthorized]",
        },
        "403 body",
    )


@check("rocketchat_API: a body-schema error is a 400 with errorType 'invalid-params'")
def _():
    status, body = api_error(
        lambda: rocket().call_api_post("users.create", username=f"py-bad-{SUFFIX}")
    )
    equal(status, 400, "status")
    equal(body.get("errorType"), "invalid-params", "errorType")


@check("rocketchat_API: logout() (POST) revokes the token; the next call gets the 401 body")
def _():
    r = RocketChat(ADMIN, ADMIN_PASSWORD, server_url=BASE)
    answer = r.logout()
    equal(
        answer,
        {"status": "success", "data": {"message": "You've been logged out!"}, "success": True},
        "logout answer",
    )
    status, body = api_error(r.me)
    equal(status, 401, "status after logout")
    assert body.get("success") is False and isinstance(body.get("error"), str), f"401 body: {body!r}"


# === rocket-python ==========================================================================
def fresh_token():
    data = requests.post(
        f"{BASE}/api/v1/login", json={"user": ADMIN, "password": ADMIN_PASSWORD}, timeout=10
    ).json()["data"]
    return {"domain": BASE, "token": data["authToken"], "user_id": data["userId"]}


@check("rocket-python: GetMe with a token conforms to IMeApiUser")
def _():
    me = GetMe(settings=fresh_token()).call()
    conforms("IMeApiUser", me, "me")
    no_nulls(me, "me")


@check("rocket-python: Logout (POST) revokes the token")
def _():
    settings = fresh_token()
    Logout(settings=settings).call()
    r = requests.get(
        f"{BASE}/api/v1/me",
        headers={"X-User-Id": settings["user_id"], "X-Auth-Token": settings["token"]},
        timeout=10,
    )
    equal(r.status_code, 401, "GET me after Logout: status")


@check("rocket-python: its password login (a form-encoded body, which Rocket.Chat's router parses)")
def _():
    try:
        me = GetMe(settings={"domain": BASE, "username": ADMIN, "password": ADMIN_PASSWORD}).call()
    except requests.HTTPError as e:
        raise AssertionError(
            f"login with user/password as application/x-www-form-urlencoded answered "
            f"{e.response.status_code} {e.response.text}"
        ) from e
    equal(me.get("username"), ADMIN, "me.username")


print(f"python checks: {len(PASSED)} passed, {len(FAILED)} failed", flush=True)
sys.exit(1 if FAILED else 0)
