//! The OpenAPI document (`GET /api/v1/openapi.json`) and its page (`GET /api/v1/docs`), in
//! process: the document describes every route of the router with its methods, security,
//! parameters, bodies and answers, and the server's real answers match what it says.
//! `tests/schemathesis/run` checks the same against a running server with generated requests.

mod common;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Answer, Login, TestApp, TestDb, documented_example};
use importops::config::{AuthErrorBody, Settings};
use serde_json::{Value, json};

const DOCUMENT: &str = "/api/v1/openapi.json";

/// One route of the router, and what its documentation must say.
struct Route {
    method: &'static str,
    path: &'static str,
    /// Needs `X-User-Id` and `X-Auth-Token` (401 without them).
    session: bool,
    /// Needs a permission (403 without it).
    permission: bool,
    /// Counted by the rate limiter (429).
    limited: bool,
    /// Can answer 400 (query parameters or a body).
    bad_request: bool,
    /// Takes a JSON request body.
    body: bool,
}

const fn route(method: &'static str, path: &'static str) -> Route {
    Route {
        method,
        path,
        session: false,
        permission: false,
        limited: false,
        bad_request: false,
        body: false,
    }
}

/// A route of the API that needs a session, is rate limited and checks its query or body.
const fn api(method: &'static str, path: &'static str) -> Route {
    Route {
        session: true,
        limited: true,
        bad_request: true,
        ..route(method, path)
    }
}

/// Every route, with what this suite expects of it: the document must list exactly these, and
/// the router serves every operation the document lists (`every_documented_operation_is_served`).
const ROUTES: &[Route] = &[
    Route {
        permission: true,
        ..api("get", "/api/v1/getLatestImportOperations")
    },
    Route {
        limited: true,
        bad_request: true,
        body: true,
        ..route("post", "/api/v1/login")
    },
    Route {
        bad_request: false,
        ..api("post", "/api/v1/logout")
    },
    // Rocket.Chat's deprecated GET logout.
    Route {
        bad_request: false,
        ..api("get", "/api/v1/logout")
    },
    // No query schema in Rocket.Chat: query parameters are ignored.
    Route {
        bad_request: false,
        ..api("get", "/api/v1/me")
    },
    // No `permissionsRequired`: a caller without `create-user` gets a 400.
    Route {
        body: true,
        ..api("post", "/api/v1/users.create")
    },
    Route {
        permission: true,
        body: true,
        ..api("post", "/api/v1/users.delete")
    },
    api("get", "/api/v1/permissions.listAll"),
    Route {
        permission: true,
        body: true,
        ..api("post", "/api/v1/permissions.update")
    },
    Route {
        permission: true,
        ..api("get", "/api/v1/getCurrentImportOperation")
    },
    Route {
        permission: true,
        bad_request: false,
        ..api("get", "/api/v1/import.status")
    },
    Route {
        permission: true,
        bad_request: false,
        ..api("post", "/api/v1/import.new")
    },
    Route {
        permission: true,
        bad_request: false,
        ..api("post", "/api/v1/import.clear")
    },
    Route {
        permission: true,
        ..api("get", "/api/v1/importers.list")
    },
    Route {
        permission: true,
        ..api("get", "/api/v1/getImportProgress")
    },
    Route {
        permission: true,
        body: true,
        ..api("post", "/api/v1/import.operations.upsert")
    },
    Route {
        permission: true,
        body: true,
        ..api("post", "/api/v1/uploadImportFile")
    },
    Route {
        permission: true,
        body: true,
        ..api("post", "/api/v1/downloadPublicImportFile")
    },
    Route {
        permission: true,
        ..api("get", "/api/v1/getImportFileData")
    },
    Route {
        permission: true,
        body: true,
        ..api("post", "/api/v1/startImport")
    },
    // A body other than `{}` is refused; none is documented (clients send none).
    Route {
        permission: true,
        ..api("post", "/api/v1/downloadPendingFiles")
    },
    Route {
        permission: true,
        ..api("post", "/api/v1/downloadPendingAvatars")
    },
    Route {
        permission: true,
        body: true,
        ..api("post", "/api/v1/import.addUsers")
    },
    // No schema in Rocket.Chat; its 400s are the action's.
    Route {
        permission: true,
        ..api("post", "/api/v1/import.run")
    },
    route("get", "/api/v1/openapi.json"),
    route("get", "/api/v1/docs"),
    route("get", "/api/info"),
    route("get", "/"),
    route("get", "/dashboard/import"),
    route("get", "/livez"),
    route("get", "/readyz"),
    route("get", "/metrics"),
];

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

async fn app(settings: Settings) -> (TestApp, TestDb) {
    let db = TestDb::sqlite();
    let app = TestApp::with_settings(&db, settings).await;
    (app, db)
}

async fn document(app: &TestApp) -> Value {
    let answer = app.get(DOCUMENT, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.json()
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    doc["paths"][path]
        .get(method)
        .unwrap_or_else(|| panic!("{method} {path} is not documented"))
}

/// The response an operation documents for a status, with `$ref`s followed.
fn documented_response<'a>(doc: &'a Value, method: &str, path: &str, status: u16) -> &'a Value {
    let response = operation(doc, method, path)["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{method} {path} does not document {status}"));
    resolve(doc, response)
}

fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("not a local reference: {reference}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{reference} does not resolve"));
            resolve(doc, target)
        }
        None => value,
    }
}

fn statuses(doc: &Value, route: &Route) -> BTreeSet<String> {
    operation(doc, route.method, route.path)["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_document_is_openapi_3_1_json_without_a_session() {
    let (app, _db) = app(Settings::default()).await;
    let answer = app.get(DOCUMENT, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let doc = answer.json();
    let version = doc["openapi"].as_str().expect("openapi is a string");
    assert!(version.starts_with("3.1"), "openapi {version}");
    assert_eq!(doc["info"]["title"], "importops");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    // The licence by its SPDX identifier, the project's own (Cargo.toml, LICENSE).
    assert_eq!(
        doc["info"]["license"],
        json!({"name": env!("CARGO_PKG_LICENSE"), "identifier": env!("CARGO_PKG_LICENSE")})
    );
    // One relative server: the one that serves the document, at any address or behind a proxy.
    let servers = doc["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(servers[0]["url"], "/");
    // Built once: the same bytes every time.
    assert_eq!(app.get(DOCUMENT, None).await.body, answer.body);
}

#[tokio::test]
async fn the_document_is_never_rate_limited() {
    let settings = Settings {
        rate_limit_calls: 1,
        rate_limit_window_ms: 60_000,
        ..Settings::default()
    };
    let (app, _db) = app(settings).await;
    let user = app.user("plain", &["user"]).await;
    for login in [None, Some(&user), None, Some(&user), None] {
        let answer = app.get(DOCUMENT, login).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("x-ratelimit-limit"), None);
    }
    // The limiter is on for other routes.
    assert_eq!(
        app.get("/api/v1/me", Some(&user)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/me", Some(&user)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn every_route_is_documented_with_its_methods() {
    let (app, _db) = app(Settings::default()).await;
    let doc = document(&app).await;
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                documented.insert((method.to_owned(), path.clone()));
            }
        }
    }
    assert_eq!(documented, expected, "documented operations");

    // Operation ids are unique.
    let ids: Vec<&str> = ROUTES
        .iter()
        .map(|r| {
            operation(&doc, r.method, r.path)["operationId"]
                .as_str()
                .expect("an operationId")
        })
        .collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "{ids:?}"
    );
}

#[tokio::test]
async fn metrics_is_listed_only_where_it_is_served() {
    let settings = Settings {
        metrics_on_api: false,
        ..Settings::default()
    };
    let (app, _db) = app(settings).await;
    let doc = document(&app).await;
    assert!(doc["paths"].get("/metrics").is_none());
    assert_eq!(
        app.get("/metrics", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(doc["paths"].get("/livez").is_some());
}

/// The router and the document come from one declaration: every operation the document lists
/// answers its method (a 404 would be the fallback's), and only its method, with `/metrics` on
/// the API's address or not.
#[tokio::test]
async fn every_documented_operation_is_served() {
    for metrics_on_api in [true, false] {
        let settings = Settings {
            metrics_on_api,
            ..Settings::default()
        };
        let (app, _db) = app(settings).await;
        let doc = document(&app).await;
        let mut served = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let methods: Vec<&str> = METHODS
                .into_iter()
                .filter(|m| item.get(*m).is_some())
                .collect();
            assert!(!methods.is_empty(), "{path} has no operation");
            for method in METHODS {
                let answer = call(&app, method, path).await;
                if methods.contains(&method) {
                    assert_ne!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
                    served += 1;
                } else {
                    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
                    assert_eq!(
                        answer.json()["error"],
                        "Resource not found",
                        "{method} {path}"
                    );
                }
            }
        }
        let expected = ROUTES.len() - usize::from(!metrics_on_api);
        assert_eq!(served, expected, "metrics on the API: {metrics_on_api}");
    }
}

async fn call(app: &TestApp, method: &str, path: &str) -> Answer {
    let request = Request::builder()
        .method(method.to_uppercase().as_str())
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    app.request(request).await
}

#[tokio::test]
async fn sessions_permissions_and_shared_answers_are_documented() {
    let (app, _db) = app(Settings::default()).await;
    let doc = document(&app).await;

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        schemes["userId"],
        json!({"type": "apiKey", "in": "header", "name": "X-User-Id",
            "description": schemes["userId"]["description"]})
    );
    assert_eq!(schemes["authToken"]["type"], "apiKey");
    assert_eq!(schemes["authToken"]["in"], "header");
    assert_eq!(schemes["authToken"]["name"], "X-Auth-Token");

    for route in ROUTES {
        let what = format!("{} {}", route.method, route.path);
        let op = operation(&doc, route.method, route.path);
        let statuses = statuses(&doc, route);
        let has = |status: &str| statuses.contains(status);
        if route.session {
            // Both headers in one requirement: required together.
            assert_eq!(
                op["security"],
                json!([{"userId": [], "authToken": []}]),
                "{what}"
            );
            assert!(has("401"), "{what} must list 401");
            assert_eq!(
                op["responses"]["401"]["$ref"], "#/components/responses/Unauthorized",
                "{what}"
            );
        } else {
            // Said, not left out: `security: []` is "no session", an absent one "unspecified".
            assert_eq!(op["security"], json!([]), "{what} needs no session");
        }
        assert_eq!(
            has("401"),
            route.session || route.path == "/api/v1/login",
            "{what}: 401"
        );
        assert_eq!(has("403"), route.permission, "{what}: 403");
        assert_eq!(has("429"), route.limited, "{what}: 429");
        assert_eq!(has("400"), route.bad_request, "{what}: 400");
        assert_eq!(
            has("503"),
            route.session || ["/api/v1/login", "/readyz"].contains(&route.path),
            "{what}: 503"
        );
        for shared in ["200", "413", "431", "500"] {
            assert!(has(shared), "{what} must list {shared}");
        }
        assert!(!has("404"), "{what}: 404 is not per route");
        // Every answer names its content.
        for status in &statuses {
            let response =
                documented_response(&doc, route.method, route.path, status.parse().unwrap());
            assert!(
                response["content"]
                    .as_object()
                    .is_some_and(|c| !c.is_empty()),
                "{what} {status} has no content"
            );
            assert!(
                response["headers"].get("X-Request-Id").is_some(),
                "{what} {status} lacks X-Request-Id"
            );
        }
        if route.limited {
            let ok = documented_response(&doc, route.method, route.path, 200);
            assert!(
                ok["headers"].get("X-RateLimit-Remaining").is_some(),
                "{what}"
            );
            let limited = documented_response(&doc, route.method, route.path, 429);
            for name in ["X-RateLimit-Reset", "Retry-After"] {
                assert!(limited["headers"].get(name).is_some(), "{what} 429: {name}");
            }
        }
    }

    // The 401 of a session has two bodies, one per `--auth-error-body`.
    let unauthorized = resolve(&doc, &doc["components"]["schemas"]["SessionRequired"]);
    assert_eq!(unauthorized["oneOf"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn parameters_and_request_bodies_are_documented() {
    let (app, _db) = app(Settings::default()).await;
    let doc = document(&app).await;
    for route in ROUTES {
        let what = format!("{} {}", route.method, route.path);
        let op = operation(&doc, route.method, route.path);
        if route.path == "/api/v1/permissions.listAll" {
            assert_eq!(op["parameters"].as_array().map(Vec::len), Some(1), "{what}");
            let param = &op["parameters"][0];
            assert_eq!(param["name"], "updatedSince");
            assert_eq!(param["in"], "query");
            assert_eq!(param["required"], false);
            assert_eq!(param["schema"]["type"], "string");
            assert_eq!(param["schema"]["format"], "date-time");
        } else {
            assert!(op.get("parameters").is_none(), "{what} takes no parameter");
        }
        match op.get("requestBody") {
            Some(body) => {
                assert!(route.body, "{what} takes no body");
                assert_eq!(body["required"], true, "{what}");
                let schema = &body["content"]["application/json"]["schema"];
                assert!(schema.get("$ref").is_some(), "{what}: {schema}");
                resolve(&doc, schema);
            }
            None => assert!(!route.body, "{what} must document its body"),
        }
    }
}

#[tokio::test]
async fn bare_arrays_and_open_operations_are_documented() {
    let (app, _db) = app(Settings::default()).await;
    let doc = document(&app).await;
    let latest = &documented_response(&doc, "get", "/api/v1/getLatestImportOperations", 200)["content"]
        ["application/json"]["schema"];
    assert_eq!(latest["type"], "array");
    let item = resolve(&doc, &latest["items"]);
    assert_eq!(item["additionalProperties"], true);
    let required: Vec<&str> = item["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        [
            "_id",
            "type",
            "importerKey",
            "ts",
            "status",
            "valid",
            "user",
            "_updatedAt"
        ]
    );
    let importers = &documented_response(&doc, "get", "/api/v1/importers.list", 200)["content"]["application/json"]
        ["schema"];
    assert_eq!(importers["type"], "array");
    assert!(importers["items"].get("$ref").is_some());
}

/// Every `oneOf` / `anyOf` in the document (components, bodies and answers): its branches are
/// references to named components or plain values, never an inline object or another inline
/// union, which client generators (openapi-python-client) cannot process or can only name
/// `..._type_0`.
#[tokio::test]
async fn unions_have_named_branches() {
    let (app, _db) = app(Settings::default()).await;
    let doc = document(&app).await;
    let mut unions = 0;
    let mut problems = Vec::new();
    check_unions(&doc, "#", &mut unions, &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    // LoginRequest, LoginUser, Password, SessionRequired, LoginRefused, DeleteUserRequest, `ts`.
    assert!(unions >= 7, "{unions} unions");
}

fn check_unions(value: &Value, at: &str, unions: &mut usize, problems: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for keyword in ["oneOf", "anyOf"] {
                if let Some(Value::Array(branches)) = map.get(keyword) {
                    *unions += 1;
                    for (i, branch) in branches.iter().enumerate() {
                        let inline_object = branch.get("properties").is_some()
                            || branch["type"] == "object"
                            || ["oneOf", "anyOf", "allOf"]
                                .iter()
                                .any(|k| branch.get(k).is_some());
                        if branch.get("$ref").is_none() && inline_object {
                            problems.push(format!("{at}/{keyword}/{i} is an inline {branch}"));
                        }
                    }
                }
            }
            for (key, child) in map {
                check_unions(child, &format!("{at}/{key}"), unions, problems);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                check_unions(child, &format!("{at}/{i}"), unions, problems);
            }
        }
        _ => {}
    }
}

/// `LoginRequest` describes every body shape the server accepts, Meteor's `{resume}` included,
/// each as a named component; and the server takes each one the schema takes.
#[tokio::test]
async fn login_bodies_match_the_named_shapes() {
    let (app, _db) = app(Settings::default()).await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    let request = &schemas["LoginRequest"];
    let branches: Vec<&str> = request["anyOf"]
        .as_array()
        .expect("LoginRequest is an anyOf")
        .iter()
        .map(|b| b["$ref"].as_str().expect("a named branch"))
        .collect();
    assert_eq!(
        branches,
        [
            "#/components/schemas/LoginWithUser",
            "#/components/schemas/LoginWithUsername",
            "#/components/schemas/LoginWithEmail",
            "#/components/schemas/LoginWithResume",
        ]
    );
    assert_eq!(schemas["LoginWithResume"]["required"], json!(["resume"]));

    let password = "jane-password-1";
    let user_id = app.user_with_password("jane", &["user"], password).await;
    let digest = {
        use sha2::Digest as _;
        sha2::Sha256::digest(password.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let token = app
        .another_token(&Login {
            user_id,
            token: String::new(),
        })
        .await
        .token;
    let accepted = [
        json!({"user": "jane", "password": password}),
        json!({"user": {"username": "jane"}, "password": password}),
        json!({"user": {"username": "jane", "email": null},
            "password": {"digest": digest, "algorithm": "sha-256"}}),
        json!({"username": "jane", "password": password}),
        json!({"resume": token}),
    ];
    for body in accepted {
        let mut errors = Vec::new();
        validate(&doc, request, &body, "body", &mut errors);
        assert!(errors.is_empty(), "{body}: {errors:?}");
        let answer = send(&app, "post", "/api/v1/login", None, body.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "{body}: {:?}", answer.json());
    }
    // Neither a password nor a token: the schema and the server both refuse it.
    let refused = json!({"user": "jane"});
    let mut errors = Vec::new();
    validate(&doc, request, &refused, "body", &mut errors);
    assert!(!errors.is_empty(), "the schema takes {refused}");
    let answer = send(&app, "post", "/api/v1/login", None, refused).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn every_reference_resolves() {
    let (app, _db) = app(Settings::default()).await;
    let doc = document(&app).await;
    let mut references = Vec::new();
    collect_references(&doc, &mut references);
    assert!(references.len() > 50, "{}", references.len());
    for reference in references {
        let pointer = reference.strip_prefix('#').expect("local references only");
        assert!(
            doc.pointer(pointer).is_some(),
            "{reference} does not resolve"
        );
    }
}

fn collect_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| collect_references(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

/// The server's real answers, for every route and every status that can be provoked in
/// process, are documented: status, content type, and body schema.
#[tokio::test]
async fn real_answers_match_the_document() {
    let (app, _db) = app(Settings::default().without_rate_limit()).await;
    let doc = document(&app).await;
    let check = Checker { doc: &doc };
    let admin = app.admin().await;
    let viewer = app.user("viewer", &["user"]).await;
    app.user_with_password("jane", &["user"], "pa55word").await;

    // No operation yet.
    check.answer(
        "get",
        "/api/v1/getCurrentImportOperation",
        &app.get("/api/v1/getCurrentImportOperation", Some(&admin))
            .await,
        200,
    );
    check.answer(
        "get",
        "/api/v1/import.status",
        &app.get("/api/v1/import.status", Some(&admin)).await,
        200,
    );
    check.answer(
        "get",
        "/api/v1/getImportProgress",
        &app.get("/api/v1/getImportProgress", Some(&admin)).await,
        400,
    );
    app.load(&documented_example()).await;

    for route in ROUTES.iter().filter(|r| r.session) {
        // 401, both bodies (the Rocket.Chat one below).
        let answer = call(&app, route.method, route.path).await;
        check.answer(route.method, route.path, &answer, 401);
        if route.permission {
            let answer = send(&app, route.method, route.path, Some(&viewer), json!({})).await;
            check.answer(route.method, route.path, &answer, 403);
        }
    }
    for path in [
        "/api/v1/getLatestImportOperations",
        "/api/v1/me",
        "/api/v1/permissions.listAll",
        "/api/v1/getCurrentImportOperation",
        "/api/v1/import.status",
        "/api/v1/importers.list",
        "/api/v1/getImportProgress",
    ] {
        check.answer("get", path, &app.get(path, Some(&admin)).await, 200);
        let with_query = format!("{path}?count=5&offset=1");
        // Routes without a query schema ignore the parameters.
        let ignored = ["/api/v1/me", "/api/v1/import.status"].contains(&path);
        let expected = if ignored { 200 } else { 400 };
        check.answer(
            "get",
            path,
            &app.get(&with_query, Some(&admin)).await,
            expected,
        );
    }
    let refused = send(
        &app,
        "post",
        "/api/v1/users.create",
        Some(&viewer),
        json!({"email": "v@example.com", "name": "V", "password": "pw", "username": "v"}),
    )
    .await;
    check.answer("post", "/api/v1/users.create", &refused, 400);
    let since = "/api/v1/permissions.listAll?updatedSince=yesterday";
    check.answer(
        "get",
        "/api/v1/permissions.listAll",
        &app.get(since, Some(&admin)).await,
        400,
    );
    let since = "/api/v1/permissions.listAll?updatedSince=2021-10-27T11:26:24.430Z";
    check.answer(
        "get",
        "/api/v1/permissions.listAll",
        &app.get(since, Some(&admin)).await,
        200,
    );

    let posts: &[(&str, Value, u16)] = &[
        (
            "/api/v1/login",
            json!({"user": "jane", "password": "pa55word"}),
            200,
        ),
        (
            "/api/v1/login",
            json!({"user": {"email": "jane@example.com"}, "password": "x"}),
            401,
        ),
        ("/api/v1/login", json!({"user": "jane"}), 400),
        ("/api/v1/login", json!({"resume": "no-such-token"}), 401),
        (
            "/api/v1/users.create",
            json!({"email": "bob@example.com", "name": "Bob",
            "password": "pw", "username": "bob", "roles": ["user"], "active": null}),
            200,
        ),
        (
            "/api/v1/users.create",
            json!({"email": "bob@example.com", "name": "Bob",
            "password": "pw", "username": "bob"}),
            400,
        ),
        ("/api/v1/users.delete", json!({"username": "bob"}), 200),
        ("/api/v1/users.delete", json!({"username": "bob"}), 400),
        (
            "/api/v1/permissions.update",
            json!({"permissions": [
            {"_id": "create-personal-access-tokens", "roles": ["admin", "user"]}]}),
            200,
        ),
        (
            "/api/v1/permissions.update",
            json!({"permissions": [{"_id": "nope", "roles": []}]}),
            400,
        ),
        (
            "/api/v1/import.operations.upsert",
            json!({"type": "Nightly ETL", "importerKey": "etl",
            "status": "importer_importing_messages", "count": {"total": 1200}, "ts": 1.5,
            "fileData": {"name": "x.zip"}}),
            200,
        ),
        (
            "/api/v1/import.operations.upsert",
            json!({"status": "nope"}),
            400,
        ),
        ("/api/v1/import.new", json!({}), 200),
        ("/api/v1/import.clear", json!({}), 200),
    ];
    for (path, body, status) in posts {
        let answer = send(&app, "post", path, Some(&admin), body.clone()).await;
        check.answer("post", path, &answer, *status);
    }
    // Not JSON.
    let request = Request::post("/api/v1/users.create")
        .header("X-User-Id", &admin.user_id)
        .header("X-Auth-Token", &admin.token)
        .header("content-type", "text/plain")
        .body(Body::from("hello"))
        .unwrap();
    check.answer(
        "post",
        "/api/v1/users.create",
        &app.request(request).await,
        400,
    );
    // The latest operations now include one with a number `ts` and extra fields.
    let latest = app
        .get("/api/v1/getLatestImportOperations", Some(&admin))
        .await;
    check.answer("get", "/api/v1/getLatestImportOperations", &latest, 200);
    assert!(latest.body.contains("fileData"));

    for path in [
        "/api/info",
        "/livez",
        "/readyz",
        "/metrics",
        "/",
        "/api/v1/docs",
        DOCUMENT,
    ] {
        check.answer("get", path, &app.get(path, None).await, 200);
    }
    let other = app.another_token(&admin).await;
    let logout = app.get("/api/v1/logout", Some(&other)).await;
    check.answer("get", "/api/v1/logout", &logout, 200);
    let logout = send(&app, "post", "/api/v1/logout", Some(&admin), json!({})).await;
    check.answer("post", "/api/v1/logout", &logout, 200);

    // 413 and 431 from the limits middleware, on any route (past 1 MB; uploadImportFile's
    // limit is the base64 size of --import-max-bytes, 100 MiB by default, and 64 KiB).
    for route in ROUTES {
        let announced = if route.path == "/api/v1/uploadImportFile" {
            "139875673"
        } else {
            "2000000"
        };
        let request = Request::builder()
            .method(route.method.to_uppercase().as_str())
            .uri(route.path)
            .header("content-length", announced)
            .body(Body::empty())
            .unwrap();
        check.answer(route.method, route.path, &app.request(request).await, 413);
        let request = Request::builder()
            .method(route.method.to_uppercase().as_str())
            .uri(route.path)
            .header("x-padding", "x".repeat(40 * 1024))
            .body(Body::empty())
            .unwrap();
        check.answer(route.method, route.path, &app.request(request).await, 431);
    }
}

#[tokio::test]
async fn the_other_401_429_and_503_answers_match_the_document() {
    let settings = Settings {
        auth_error_body: AuthErrorBody::Rocketchat,
        rate_limit_calls: 1,
        rate_limit_window_ms: 60_000,
        ..Settings::default()
    };
    let (app, _db) = app(settings).await;
    let doc = document(&app).await;
    let check = Checker { doc: &doc };
    let viewer = app.user("viewer", &["user"]).await;
    let admin = app.admin().await;
    for route in ROUTES.iter().filter(|r| r.session) {
        check.answer(
            route.method,
            route.path,
            &call(&app, route.method, route.path).await,
            401,
        );
    }
    let first = app.get("/api/v1/me", Some(&viewer)).await;
    check.answer("get", "/api/v1/me", &first, 200);
    assert!(first.header("x-ratelimit-remaining").is_some());
    check.answer(
        "get",
        "/api/v1/me",
        &app.get("/api/v1/me", Some(&viewer)).await,
        429,
    );
    let login = json!({"user": "viewer", "password": "wrong"});
    check.answer(
        "post",
        "/api/v1/login",
        &send(&app, "post", "/api/v1/login", None, login.clone()).await,
        401,
    );
    check.answer(
        "post",
        "/api/v1/login",
        &send(&app, "post", "/api/v1/login", None, login).await,
        429,
    );

    // The database goes away.
    app.store.close().await;
    check.answer("get", "/readyz", &app.get("/readyz", None).await, 503);
    let login = json!({"user": "viewer", "password": "x"});
    let other = TestApp::with_settings(&TestDb::sqlite(), Settings::default()).await;
    other.store.close().await;
    check.answer(
        "post",
        "/api/v1/login",
        &send(&other, "post", "/api/v1/login", None, login).await,
        503,
    );
    let latest = "/api/v1/getLatestImportOperations";
    check.answer("get", latest, &app.get(latest, Some(&admin)).await, 503);
}

#[tokio::test]
async fn the_docs_page_is_self_contained() {
    let (app, _db) = app(Settings::default()).await;
    let answer = app.get("/api/v1/docs", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = answer.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let page = &answer.body;
    assert!(page.contains(DOCUMENT), "the page fetches the document");
    for external in ["http://", "https://", "src=\"//", "href=\"//", "@import"] {
        assert!(!page.contains(external), "the page refers to {external}");
    }
}

/// Checks answers against the document.
struct Checker<'a> {
    doc: &'a Value,
}

impl Checker<'_> {
    fn answer(&self, method: &str, path: &str, answer: &Answer, expected: u16) {
        let what = format!("{method} {path} -> {}", answer.status);
        assert_eq!(answer.status.as_u16(), expected, "{what}: {}", answer.body);
        let response = documented_response(self.doc, method, path, expected);
        let content_type = answer.header("content-type").expect("a content type");
        let media = content_type.split(';').next().unwrap().trim();
        let content = response["content"]
            .get(media)
            .unwrap_or_else(|| panic!("{what}: {media} is not documented"));
        if media == "application/json" {
            let body: Value = serde_json::from_str(&answer.body).expect("a JSON body");
            let mut errors = Vec::new();
            validate(self.doc, &content["schema"], &body, "", &mut errors);
            assert!(errors.is_empty(), "{what}: {errors:#?}\nbody: {body}");
        }
    }
}

/// The subset of JSON Schema the document uses, bar `pattern` and `format` (schemathesis checks
/// those against a running server).
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.iter().any(|t| has_type(value, t)) {
            errors.push(format!("{at}: {value} is not {types:?}"));
            return;
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(Value::Array(branches)) = schema.get("oneOf") {
        let matching = branches
            .iter()
            .filter(|b| {
                let mut e = Vec::new();
                validate(doc, b, value, at, &mut e);
                e.is_empty()
            })
            .count();
        if matching != 1 {
            errors.push(format!(
                "{at}: {value} matches {matching} branches of oneOf"
            ));
        }
    }
    if let Some(Value::Array(branches)) = schema.get("anyOf")
        && !branches.iter().any(|b| {
            let mut e = Vec::new();
            validate(doc, b, value, at, &mut e);
            e.is_empty()
        })
    {
        errors.push(format!("{at}: {value} matches no branch of anyOf"));
    }
    if let (Some(min), Some(s)) = (
        schema.get("minLength").and_then(Value::as_u64),
        value.as_str(),
    ) && (s.chars().count() as u64) < min
    {
        errors.push(format!("{at}: shorter than {min}"));
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n < min
    {
        errors.push(format!("{at}: below {min}"));
    }
    if let Value::Array(items) = value {
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && items.len() as u64 > max
        {
            errors.push(format!("{at}: more than {max} items"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(doc, item_schema, item, &format!("{at}/{i}"), errors);
            }
        }
    }
    if let Value::Object(map) = value {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap();
            if !map.contains_key(name) {
                errors.push(format!("{at}: missing {name}"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, v) in map {
            let at = format!("{at}/{key}");
            match properties.and_then(|p| p.get(key)) {
                Some(property) => validate(doc, property, v, &at, errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errors.push(format!("{at}: not allowed")),
                    Some(extra @ Value::Object(_)) => validate(doc, extra, v, &at, errors),
                    _ => {}
                },
            }
        }
    }
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    login: Option<&Login>,
    body: Value,
) -> Answer {
    let mut builder = Request::builder()
        .method(method.to_uppercase().as_str())
        .uri(path)
        .header("content-type", "application/json");
    if let Some(login) = login {
        builder = builder
            .header("X-User-Id", &login.user_id)
            .header("X-Auth-Token", &login.token);
    }
    app.request(builder.body(Body::from(body.to_string())).unwrap())
        .await
}
