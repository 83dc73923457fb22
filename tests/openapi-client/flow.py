"""A short flow with the Python client that openapi-python-client generated from the served
document (`tests/openapi-client/run` generates it and puts it on the path as `importops_client`).

Every call goes through the generated modules and models, with `raise_on_unexpected_status`
on: an answer whose status the document does not list fails the flow, and so does a body the
generated model cannot read. Prints one line per check and `N passed, N failed` at the end;
exits non-zero when a check fails.

Environment: IMPORTOPS_BASE_URL, IMPORTOPS_ADMIN_USER / _PASSWORD (holds
view-import-operations), IMPORTOPS_VIEWER_USER / _PASSWORD (role user only),
IMPORTOPS_EXPECTED_IDS (the ids getLatestImportOperations must answer, comma-separated, in
order).
"""

import os
import sys
import traceback

from importops_client import AuthenticatedClient, Client
from importops_client.api.imports import get_latest_import_operations
from importops_client.api.server import info, livez
from importops_client.api.sessions import login, logout, me
from importops_client.models import (
    BadCredentials,
    BadRequest,
    Forbidden,
    Info,
    LoginResponse,
    LoginUserByUsername,
    LoginWithResume,
    LoginWithUser,
    LoginWithUsername,
    Operation,
    PasswordDigest,
    PasswordDigestAlgorithm,
    SessionRequiredDocumented,
)

BASE = os.environ["IMPORTOPS_BASE_URL"]
ADMIN = os.environ["IMPORTOPS_ADMIN_USER"]
ADMIN_PASSWORD = os.environ["IMPORTOPS_ADMIN_PASSWORD"]
VIEWER = os.environ["IMPORTOPS_VIEWER_USER"]
VIEWER_PASSWORD = os.environ["IMPORTOPS_VIEWER_PASSWORD"]
EXPECTED_IDS = os.environ["IMPORTOPS_EXPECTED_IDS"].split(",")

public = Client(base_url=BASE, raise_on_unexpected_status=True)
results = {"passed": 0, "failed": 0}


def check(name):
    def run(fn):
        try:
            fn()
        except Exception:  # noqa: BLE001 - every failure is reported, then counted
            results["failed"] += 1
            print(f"FAIL {name}")
            traceback.print_exc()
        else:
            results["passed"] += 1
            print(f"ok   {name}")
        return fn

    return run


def session(answer: LoginResponse) -> AuthenticatedClient:
    """A client that sends the session's two headers on every call."""
    return AuthenticatedClient(
        base_url=BASE,
        token=answer.data.auth_token,
        auth_header_name="X-Auth-Token",
        prefix="",
        headers={"X-User-Id": answer.data.user_id},
        raise_on_unexpected_status=True,
    )


def logged_in(body) -> LoginResponse:
    answer = login.sync_detailed(client=public, body=body)
    assert answer.status_code == 200, (answer.status_code, answer.content)
    assert isinstance(answer.parsed, LoginResponse), answer.parsed
    return answer.parsed


state = {}


@check("public routes need no session: livez, /api/info")
def _():
    assert livez.sync_detailed(client=public).status_code == 200
    version = info.sync(client=public)
    assert isinstance(version, Info), version
    assert version.success is True
    assert version.version.count(".") == 1, version.version


@check("login {user, password}")
def _():
    answer = logged_in(LoginWithUser(user=ADMIN, password=ADMIN_PASSWORD))
    assert answer.data.me.username == ADMIN, answer.data.me
    assert answer.data.auth_token
    state["admin"] = answer


@check("login {username, password} and {user: {username}, password digest}")
def _():
    import hashlib

    assert logged_in(LoginWithUsername(username=VIEWER, password=VIEWER_PASSWORD))
    digest = PasswordDigest(
        digest=hashlib.sha256(VIEWER_PASSWORD.encode()).hexdigest(),
        algorithm=PasswordDigestAlgorithm.SHA_256,
    )
    state["viewer"] = logged_in(
        LoginWithUser(user=LoginUserByUsername(username=VIEWER), password=digest)
    )


@check("login {resume} with the admin's token")
def _():
    answer = logged_in(LoginWithResume(resume=state["admin"].data.auth_token))
    assert answer.data.user_id == state["admin"].data.user_id


@check("getLatestImportOperations: the seeded operations, newest _updatedAt first, as models")
def _():
    operations = get_latest_import_operations.sync(client=session(state["admin"]))
    assert isinstance(operations, list), operations
    assert all(isinstance(op, Operation) for op in operations), operations
    assert [op.field_id for op in operations] == EXPECTED_IDS, [op.field_id for op in operations]
    first = operations[0]
    assert first.field_updated_at.year >= 2021, first.field_updated_at
    assert first.importer_key and first.type_


@check("me with the session")
def _():
    answer = me.sync(client=session(state["admin"]))
    assert answer.field_id == state["admin"].data.user_id, answer


@check("an error: a wrong password answers 401 BadCredentials")
def _():
    answer = login.sync_detailed(
        client=public, body=LoginWithUser(user=ADMIN, password="not-the-password")
    )
    assert answer.status_code == 401, answer.status_code
    assert isinstance(answer.parsed, BadCredentials), answer.parsed
    assert answer.parsed.error == "Unauthorized"


@check("an error: a body of no known shape answers 400 BadRequest")
def _():
    answer = login.sync_detailed(client=public, body=LoginWithUser(user=ADMIN, password=""))
    assert answer.status_code == 400, answer.status_code
    assert isinstance(answer.parsed, BadRequest), answer.parsed
    # A body's error is `invalid-params` (a query string's is `error-invalid-params`).
    assert answer.parsed.error_type == "invalid-params", answer.parsed
    assert answer.parsed.error == "/password must be string", answer.parsed


@check("an error: without view-import-operations, 403 Forbidden")
def _():
    answer = get_latest_import_operations.sync_detailed(client=session(state["viewer"]))
    assert answer.status_code == 403, answer.status_code
    assert isinstance(answer.parsed, Forbidden), answer.parsed


@check("logout, then the token answers 401 SessionRequiredDocumented")
def _():
    client = session(state["viewer"])
    assert logout.sync_detailed(client=client).status_code == 200
    answer = get_latest_import_operations.sync_detailed(client=client)
    assert answer.status_code == 401, answer.status_code
    assert isinstance(answer.parsed, SessionRequiredDocumented), answer.parsed


print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
