//! The API's OpenAPI 3.1 document, generated with utoipa from the `#[utoipa::path]` attributes
//! of the router's routes (`http::routes`) and the schemas below, served at
//! `GET /api/v1/openapi.json`; and
//! `GET /api/v1/docs`, one self-contained page that renders it.
//!
//! Answers every route shares are added here once, by [`CommonAnswers`], rather than repeated
//! on each handler: 413 and 431 (the limits middleware runs on every route), 500 (a panic
//! becomes one anywhere), and on every route that needs a session 401 and 503 (the session is
//! looked up in the database). Each handler's attribute lists the rest: its success, 400, 403
//! and 429 where they apply.
//!
//! The success answers are typed structs that the handlers build and whose schemas are derived
//! (`deny_unknown_fields` for `additionalProperties: false`; constants such as
//! `"success": true` are `literal!` types). The rest are written with utoipa's builders:
//! request bodies (checked by hand, in the validator's words), stored operations (served as
//! stored, with any extra field), a user (a domain type), and error bodies (fixed texts, and
//! two key orders, as Rocket.Chat sends them).

use std::borrow::Cow;
use std::sync::LazyLock;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation as PathOperation;
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder,
    Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToResponse, ToSchema};

use super::AppState;
use crate::domain::operation::STATUSES;

/// The security scheme for `X-User-Id`; every route that needs a session requires it together
/// with [`AUTH_TOKEN_SCHEME`].
pub const USER_ID_SCHEME: &str = "userId";
/// The security scheme for `X-Auth-Token`.
pub const AUTH_TOKEN_SCHEME: &str = "authToken";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "importops",
        description = "Rocket.Chat's import-operations API, served by importops: the same routes, \
checks (401, then 403, then 400, then 429) and bodies as Rocket.Chat, plus importops' own \
`import.operations.upsert` and its health, metrics and documentation routes.\n\n\
Routes that need a session take the two headers `X-User-Id` and `X-Auth-Token` together \
(a token from `POST /api/v1/login` or `importops token issue`). Any route answers 404 \
`{\"success\":false,\"error\":\"Resource not found\"}` to a path or method it does not have; every \
`GET` route also answers `HEAD`, without a body.\n\n\
`OPTIONS` on any path under `/api` answers `200` `OK` (`text/plain;charset=UTF-8`) without a \
session or a rate limit; a CORS pre-flight (an `Origin` or `Access-Control-Request-Method` \
header) gets `405` while CORS is off (`--api-enable-cors`), and `403` `Invalid origin` for an \
origin not in `--api-cors-origin`. Every other answer under `/api` carries \
`Access-Control-Allow-Origin: *` and `Access-Control-Allow-Headers`.",
        license(name = "MIT", identifier = "MIT")
    ),
    // Relative: the document describes the server that serves it, whatever its address or the
    // proxy in front of it (docs/compatibility.md#9-openapi).
    servers((url = "/", description = "The server that serves this document")),
    components(
        schemas(
            Operation,
            MeUser,
            StoredUser,
            Email,
            Permission,
            Importer,
            ImportProgress,
            Password,
            PasswordDigest,
            LoginRequest,
            LoginWithUser,
            LoginUser,
            LoginUserByUsername,
            LoginUserByEmail,
            LoginWithUsername,
            LoginWithEmail,
            LoginWithResume,
            LoginResponse,
            LogoutResponse,
            Me,
            CreateUserRequest,
            UserResponse,
            DeleteUserRequest,
            DeleteUserById,
            DeleteUserByUsername,
            UserDeleted,
            Success,
            PermissionsListAll,
            PermissionsUpdateRequest,
            PermissionsUpdateResponse,
            CurrentImportOperation,
            ImportStatus,
            OperationResponse,
            UpsertOperationRequest,
            MethodCallRequest,
            MethodCallAnswer,
            MethodCallRefused,
            Info,
            InfoDetails,
            ClientVersions,
            Health,
            Unready,
            BadRequest,
            ImportBadRequest,
            SessionRequired,
            SessionRequiredDocumented,
            SessionRequiredRocketChat,
            LoginRefused,
            BadCredentials,
            LoginBlocked,
            UserNotActivated,
            SessionNotResumed,
            Forbidden,
            TooManyRequests,
            RequestTimedOut,
            PayloadTooLarge,
            HeadersTooLarge,
            InternalError,
            ServiceUnavailable,
        ),
        responses(
            Unauthorized,
            PermissionDenied,
            RateLimited,
            BodyTimedOut,
            BodyTooLarge,
            HeaderFieldsTooLarge,
            ServerError,
            DatabaseUnavailable,
        )
    ),
    tags(
        (name = "imports", description = "Import operations: Rocket.Chat's routes and importops' write route"),
        (name = "sessions", description = "Logging in and out, and who is logged in"),
        (name = "users", description = "Creating and deleting users"),
        (name = "permissions", description = "Which roles hold which permission"),
        (name = "server", description = "Version, health, metrics, the dashboard and this documentation"),
        (name = "realtime", description = "Rocket.Chat's realtime API: DDP over a WebSocket, and DDP methods over REST"),
    )
)]
pub struct ApiDoc;

/// The document as the server describes itself: the paths of the router's routes (`/metrics`
/// only when it is served on the API's address), with the answers they share.
pub fn document_for(metrics_on_api: bool) -> Document {
    let mut doc = super::routes(metrics_on_api).into_openapi();
    CommonAnswers.modify(&mut doc);
    doc
}

/// The two serialized documents, made once.
static DOCUMENTS: LazyLock<[String; 2]> = LazyLock::new(|| {
    [false, true].map(|metrics| {
        document_for(metrics)
            .to_json()
            .expect("the OpenAPI document is always JSON")
    })
});

/// `GET /api/v1/openapi.json`: no session, never rate limited.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "server",
    summary = "This OpenAPI 3.1 document",
    description = "Needs no session and is never rate limited.",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server", body = inline(Object),
        content_type = "application/json")),
)]
pub async fn document(State(state): State<AppState>) -> Response {
    let body = &DOCUMENTS[usize::from(state.settings.metrics_on_api)];
    super::error::json_response(StatusCode::OK, body.clone())
}

/// The documentation page: HTML, CSS and JavaScript in one file, with no external resources.
const PAGE: &str = include_str!("../../assets/api-docs.html");

/// The page's inline script and style are its only code; it fetches the document from this
/// origin only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// `GET /api/v1/docs`: a page that renders this document.
#[utoipa::path(
    get,
    path = "/api/v1/docs",
    operation_id = "docs",
    tag = "server",
    summary = "This documentation, as a page",
    description = "One self-contained HTML page (no external resources) that fetches \
`/api/v1/openapi.json` and shows every route, its parameters, bodies and answers.",
    responses((status = 200, description = "The page", body = String, content_type = "text/html")),
)]
pub async fn page() -> Response {
    super::dashboard::html_page(PAGE, CONTENT_SECURITY_POLICY)
}

/// A free-form JSON object (the document's own schema is not repeated here).
pub struct Object;

impl PartialSchema for Object {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("An OpenAPI 3.1 document"))
            .into()
    }
}

/// Adds the answers every route shares, the security schemes, and the headers every answer
/// carries. See the module's documentation.
pub struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            USER_ID_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-User-Id",
                "The user's id (`userId` from `login`, or `importops token issue --json`). \
                 Always sent together with `X-Auth-Token`.",
            ))),
        );
        components.add_security_scheme(
            AUTH_TOKEN_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Auth-Token",
                "The session's token (`authToken` from `login`, or `importops token issue`). \
                 Always sent together with `X-User-Id`.",
            ))),
        );
        for item in doc.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_common_answers(operation);
            }
        }
    }
}

fn add_common_answers(operation: &mut PathOperation) {
    let needs_session = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    // A route whose attribute names no security needs no session: say so with `security: []`,
    // so that tools do not read it as "unspecified" (docs/compatibility.md#9-openapi).
    operation.security.get_or_insert_with(Vec::new);
    let responses = &mut operation.responses.responses;
    let rate_limited = responses.contains_key("429");
    for response in responses.values_mut() {
        if let RefOr::T(response) = response {
            add_every_answers_headers(response);
        }
    }
    if rate_limited {
        for (status, response) in responses.iter_mut() {
            if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
                add_rate_limit_headers(response);
            }
        }
    }
    let mut shared = vec![
        ("413", BodyTooLarge::response().0),
        ("431", HeaderFieldsTooLarge::response().0),
        ("500", ServerError::response().0),
    ];
    if operation.request_body.is_some() {
        shared.push(("408", BodyTimedOut::response().0));
    }
    if needs_session {
        shared.push(("401", Unauthorized::response().0));
        shared.push(("503", DatabaseUnavailable::response().0));
    }
    for (status, name) in shared {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| Ref::from_response_name(name).into());
    }
}

/// `X-Request-Id`, `Cache-Control` and `Pragma`: on every answer.
fn add_every_answers_headers(response: &mut ApiResponse) {
    let headers = [
        (
            "X-Request-Id",
            "The request's id: the client's `X-Request-Id` when it sent a sane one (1 to 128 \
             visible characters), else one made by the server. Also in every log line.",
        ),
        ("Cache-Control", "Always `no-store`"),
        ("Pragma", "Always `no-cache`"),
    ];
    for (name, description) in headers {
        response
            .headers
            .entry(name.to_owned())
            .or_insert_with(|| string_header(description));
    }
}

/// The rate limiter's headers, on answers to callers it counted (not to holders of
/// `api-bypass-rate-limit`, who get none).
fn add_rate_limit_headers(response: &mut ApiResponse) {
    for (name, header) in rate_limit_headers() {
        response.headers.entry(name.to_owned()).or_insert(header);
    }
}

fn rate_limit_headers() -> [(&'static str, utoipa::openapi::header::Header); 3] {
    let integer = |description: &str| {
        HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .description(Some(description))
            .build()
    };
    [
        (
            "X-RateLimit-Limit",
            integer("Calls allowed in a window (absent for holders of `api-bypass-rate-limit`)"),
        ),
        (
            "X-RateLimit-Remaining",
            integer("Calls left in the current window"),
        ),
        (
            "X-RateLimit-Reset",
            integer("When the current window ends, in epoch milliseconds"),
        ),
    ]
}

/// `Retry-After` on a 429 (an importops addition: docs/compatibility.md#9-retry-after).
fn retry_after_header() -> (&'static str, utoipa::openapi::header::Header) {
    (
        "Retry-After",
        HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .description(Some(
                "Whole seconds until the window ends (the milliseconds left, rounded up): the \
                 body's S. Not sent by Rocket.Chat",
            ))
            .build(),
    )
}

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

// --- Schema building blocks ----------------------------------------------------------------

fn ref_to(name: &str) -> RefOr<Schema> {
    Ref::from_schema_name(name).into()
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// ajv's `string` under `coerceTypes`, as the import routes check their bodies: text, or a
/// number, boolean or `null`, which the route takes as text (`null` as the empty string).
pub(crate) fn coerced_string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::from_iter([
        Type::String,
        Type::Number,
        Type::Boolean,
        Type::Null,
    ]))
}

fn non_empty_string() -> ObjectBuilder {
    string().min_length(Some(1))
}

fn date_time() -> ObjectBuilder {
    string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
}

fn boolean() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Boolean)
}

/// A value that is always `value`.
fn constant(value: impl Into<Value>) -> ObjectBuilder {
    let value = value.into();
    let kind = match &value {
        Value::Bool(_) => Type::Boolean,
        Value::Number(_) => Type::Number,
        _ => Type::String,
    };
    ObjectBuilder::new()
        .schema_type(kind)
        .enum_values(Some([value]))
}

/// `type: [kind, "null"]`: an optional field the server also accepts as `null`.
fn or_null(kind: Type) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::from_iter([kind, Type::Null]))
}

fn array_of(items: impl Into<RefOr<Schema>>) -> ArrayBuilder {
    ArrayBuilder::new().items(items.into())
}

fn object() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Object)
}

/// An object with these properties, all required, and no others.
fn exact(properties: Vec<(&str, RefOr<Schema>)>) -> ObjectBuilder {
    let mut builder = object().additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for (name, schema) in properties {
        builder = builder.property(name, schema).required(name);
    }
    builder
}

/// An error body `{success: false, error}` whose `error` is always `message`.
fn fixed_error(message: &str) -> ObjectBuilder {
    exact(vec![
        ("success", constant(false).into()),
        ("error", constant(message).into()),
    ])
}

/// Declares a schema component: a marker type whose `schema()` is built by the expression.
macro_rules! schema {
    ($(#[$doc:meta])* $name:ident = $schema:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema.into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

/// Declares a value that is always the same, for the fields of typed answers: it serializes
/// as `$value` and its schema says so (`enum: [$value]`). Used inline (`#[schema(inline)]`).
macro_rules! literal {
    ($(#[$doc:meta])* $name:ident = $value:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&$value, serializer)
            }
        }

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                constant($value).into()
            }
        }

        impl ToSchema for $name {}
    };
}

literal!(
    /// `true`, as in `"success": true`.
    True = true
);
literal!(
    /// `"ok"`.
    Ok = "ok"
);
literal!(
    /// `"unavailable"`.
    Unavailable = "unavailable"
);
literal!(
    /// `"success"`, as in `"status": "success"`.
    SuccessStatus = "success"
);
literal!(
    /// The message of `logout`.
    LoggedOut = "You've been logged out!"
);

// --- Import operations ----------------------------------------------------------------------

schema!(
    /// A stored import operation: Rocket.Chat's fields first, then any other stored field.
    Operation = object()
        .description(Some(
            "An import operation with every stored field: `_id, type, importerKey, ts, status, \
             valid, user, _updatedAt` first, then any other field as it was stored (`count`, \
             `fileData`, `contentType`, ...).",
        ))
        .property("_id", document_id())
        .required("_id")
        .property("type", non_empty_string().examples([json!("CSV")]))
        .required("type")
        .property("importerKey", non_empty_string().examples([json!("csv")]))
        .required("importerKey")
        .property("ts", timestamp())
        .required("ts")
        .property("status", status())
        .required("status")
        .property("valid", boolean())
        .required("valid")
        .property(
            "user",
            non_empty_string().description(Some("The id of the user who started it")),
        )
        .required("user")
        .property(
            "_updatedAt",
            date_time().description(Some("Last change, `2021-10-27T11:26:24.430Z`")),
        )
        .required("_updatedAt")
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
);

/// `_id`: a 17-character Meteor id or a 24-hex ObjectId.
fn document_id() -> ObjectBuilder {
    string()
        .pattern(Some(
            "^(?:[23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz]{17}|[0-9A-Fa-f]{24})$",
        ))
        .description(Some("A 17-character Meteor id or a 24-hex ObjectId"))
        .examples([json!("MJxTRZsYdho8Ww2qq")])
}

/// `ts`: epoch milliseconds as older Rocket.Chat wrote it, or a date as newer ones do.
fn timestamp() -> OneOfBuilder {
    OneOfBuilder::new()
        .description(Some(
            "When it started: epoch milliseconds (a number, as older Rocket.Chat wrote it) or a \
             date (`2021-10-27T11:26:24.430Z`), returned as stored",
        ))
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(date_time())
}

fn status() -> ObjectBuilder {
    string()
        .enum_values(Some(STATUSES))
        .description(Some("One of Rocket.Chat's import statuses"))
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
/// `{operation, success}`.
pub struct OperationResponse {
    #[schema(value_type = Operation)]
    pub operation: Value,
    #[schema(inline)]
    pub success: True,
}

schema!(
    /// `getCurrentImportOperation`: the operation with the newest `ts`, if any.
    CurrentImportOperation = object()
        .description(Some(
            "`{operation, success}` with the operation with the newest `ts`, or just \
             `{success}` when there is none",
        ))
        .property("operation", ref_to("Operation"))
        .property("success", constant(true))
        .required("success")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
);

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    description = "The state of the current import, from the newest operation's status and \
    validity; `{state: \"none\", success}` when there is no operation"
)]
/// `import.status`.
pub struct ImportStatus {
    #[schema(schema_with = import_state)]
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Operation)]
    pub operation: Option<Map<String, Value>>,
    #[schema(inline)]
    pub success: True,
}

fn import_state() -> ObjectBuilder {
    string().enum_values(Some([
        "none",
        "new",
        "loading",
        "ready",
        "importing",
        "done",
        "error",
        "canceled",
    ]))
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
/// An importer of `importers.list`.
pub struct Importer {
    #[schema(min_length = 1, examples("csv"))]
    pub key: &'static str,
    #[schema(min_length = 1, examples("CSV"))]
    pub name: &'static str,
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
/// `getImportProgress`.
pub struct ImportProgress {
    /// The current operation's `importerKey`, one of the importers Rocket.Chat registers
    #[schema(examples("csv"))]
    pub key: &'static str,
    /// The importer's name (`API` for `api`, `CSV`, `Pending Files`, `Pending Avatars`,
    /// `Slack`, `Slack_Users`)
    #[schema(min_length = 1, examples("CSV"))]
    pub name: &'static str,
    #[schema(schema_with = status)]
    pub step: Value,
    #[schema(inline)]
    pub count: Counts,
    #[schema(inline)]
    pub success: True,
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
/// The counts of `getImportProgress`.
pub struct Counts {
    #[schema(schema_with = count)]
    pub completed: u64,
    #[schema(schema_with = count)]
    pub total: u64,
    #[schema(schema_with = count)]
    pub error: u64,
}

fn count() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
}

schema!(
    /// The body of `method.call` and `method.callAnon`.
    MethodCallRequest = object()
        .description(Some(
            "A DDP method message as EJSON text: `{\"msg\":\"method\",\"id\":..,\"method\":..,\"params\":[..]}`",
        ))
        .property("message", string())
        .required("message")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .examples([json!({"message": "{\"msg\":\"method\",\"id\":\"1\",\"method\":\"getImportProgress\",\"params\":[]}"})])
);

schema!(
    /// The answer of `method.call` and `method.callAnon`.
    MethodCallAnswer = object()
        .description(Some(
            "The DDP `result` message as EJSON text (`result`, or `error`: a Meteor error), and \
             whether the method succeeded",
        ))
        .property("message", string())
        .property("success", boolean())
        .required("message")
        .required("success")
);

schema!(
    /// A 400 of `method.call` / `method.callAnon`: the method threw (its DDP `result` message),
    /// or the body was refused before any method ran (the validator's `invalid-params`).
    MethodCallRefused = OneOfBuilder::new()
        .description(Some(
            "The method threw: its DDP `result` message with `error`; or the body is not \
             `{\"message\": string}`: the validator's `invalid-params`",
        ))
        .item(ref_to("MethodCallAnswer"))
        .item(ref_to("BadRequest"))
);

schema!(
    /// The body of `import.operations.upsert`.
    UpsertOperationRequest = object()
        .description(Some(
            "An operation's fields. Without `_id`, or with an `_id` that does not exist, it \
             creates an operation: `type`, `importerKey` and `status` are then required (400 \
             otherwise), `valid` defaults to `true`, `user` to the caller and `ts` to now. With \
             the `_id` of an existing operation it changes the fields given and keeps the others. \
             `_updatedAt` is always set to now; any other field is stored as given.",
        ))
        .property("_id", document_id())
        .property("type", non_empty_string().examples([json!("Nightly ETL")]))
        .property("importerKey", non_empty_string().examples([json!("etl")]))
        .property("status", status())
        .property("valid", boolean())
        .property("user", non_empty_string())
        .property("ts", timestamp())
        .property(
            "count",
            object()
                .description(Some("Counts by name, each a non-negative integer"))
                .additional_properties(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0))
                        .maximum(Some(u64::MAX)),
                ))
                .examples([json!({"total": 1200, "completed": 300})]),
        )
        .property(
            "_updatedAt",
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .description(Some("Ignored: always set to now")),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .examples([json!({
            "type": "Nightly ETL",
            "importerKey": "etl",
            "status": "importer_importing_messages",
            "count": {"total": 1200, "completed": 300},
        })])
);

// --- Sessions and users ---------------------------------------------------------------------

schema!(
    /// An e-mail address of a user.
    Email = exact(vec![
        ("address", string().into()),
        ("verified", boolean().into()),
    ])
);

schema!(
    /// The caller as `me` and `login` describe it (Rocket.Chat's `getUserInfo`, core-typings'
    /// `IMeApiUser`). Absent fields are left out, never `null`.
    MeUser = me_user()
);

fn me_user() -> ObjectBuilder {
    let mut builder = object();
    for (name, schema) in me_properties() {
        builder = builder.property(name, schema);
    }
    for name in [
        "_id",
        "emails",
        "active",
        "roles",
        "_updatedAt",
        "settings",
        "avatarUrl",
        "isOAuthUser",
        "services",
    ] {
        builder = builder.required(name);
    }
    builder.additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

fn me_properties() -> Vec<(&'static str, RefOr<Schema>)> {
    vec![
        (
            "_id",
            string().examples([json!("6HFgwH2eYf9LewqCz")]).into(),
        ),
        ("username", string().into()),
        ("emails", array_of(ref_to("Email")).into()),
        ("active", boolean().into()),
        ("name", string().into()),
        ("roles", array_of(string()).into()),
        ("_updatedAt", date_time().into()),
        (
            "email",
            string()
                .description(Some("The first verified address"))
                .into(),
        ),
        (
            "settings",
            exact(vec![
                ("profile", object().into()),
                (
                    "preferences",
                    object()
                        .description(Some("Rocket.Chat's default user preferences"))
                        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
                        .into(),
                ),
                ("calendar", object().into()),
            ])
            .into(),
        ),
        ("avatarUrl", string().into()),
        ("isOAuthUser", boolean().into()),
        (
            "services",
            exact(vec![(
                "password",
                exact(vec![("exists", boolean().into())]).into(),
            )])
            .into(),
        ),
    ]
}

schema!(
    /// A stored user as `users.create` answers it (core-typings' `IUser`, without services).
    StoredUser = stored_user()
);

fn stored_user() -> ObjectBuilder {
    let mut builder = object().additional_properties(Some(AdditionalProperties::FreeForm(false)));
    let properties: Vec<(&str, RefOr<Schema>)> = vec![
        ("_id", string().into()),
        ("createdAt", date_time().into()),
        ("username", string().into()),
        ("emails", array_of(ref_to("Email")).into()),
        ("active", boolean().into()),
        ("name", string().into()),
        ("roles", array_of(string()).into()),
        ("type", constant("user").into()),
        ("status", constant("offline").into()),
        ("settings", object().into()),
        ("_updatedAt", date_time().into()),
    ];
    for (name, schema) in properties {
        builder = builder.property(name, schema);
        if !matches!(name, "username" | "name") {
            builder = builder.required(name);
        }
    }
    builder
}

/// `me`: the caller with `success`.
#[derive(Debug, serde::Serialize)]
pub struct Me {
    #[serde(flatten)]
    pub user: serde_json::Map<String, Value>,
    pub success: True,
}

/// Written out: a derived schema of a flattened field would be an `allOf`.
impl PartialSchema for Me {
    fn schema() -> RefOr<Schema> {
        let mut builder = me_user();
        builder = builder
            .property("success", constant(true))
            .required("success");
        builder.into()
    }
}

impl ToSchema for Me {}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
/// `{user, success}`.
pub struct UserResponse {
    #[schema(value_type = StoredUser)]
    pub user: serde_json::Map<String, Value>,
    #[schema(inline)]
    pub success: True,
}

/// `users.delete`'s answer: importops has no rooms, so none were deleted.
#[derive(Debug, Default, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserDeleted {
    #[schema(schema_with = no_rooms)]
    pub deleted_rooms: [Value; 0],
    #[schema(inline)]
    pub success: True,
}

fn no_rooms() -> ArrayBuilder {
    ArrayBuilder::new()
        .max_items(Some(0))
        .description(Some("The rooms deleted with the user: always none"))
}

/// `{success: true}`.
#[derive(Debug, Default, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Success {
    #[schema(inline)]
    pub success: True,
}

schema!(
    /// A password: plain, or Meteor's `{digest, algorithm: "sha-256"}`.
    Password = OneOfBuilder::new()
        .description(Some("The password, plain or as its sha256"))
        .item(non_empty_string().description(Some("The password")))
        .item(ref_to("PasswordDigest"))
);

schema!(
    /// Meteor's `{digest, algorithm: "sha-256"}`.
    PasswordDigest = object()
        .description(Some("The password's sha256, as Meteor's clients send it"))
        .property(
            "digest",
            non_empty_string().description(Some("Lowercase hex sha256 of the password")),
        )
        .required("digest")
        .property("algorithm", constant("sha-256"))
        .required("algorithm")
);

fn password() -> RefOr<Schema> {
    ref_to("Password")
}

/// `username` or `email` of a login body, accepted as `null` when the other is given.
fn login_name(required: &str) -> ObjectBuilder {
    let mut builder = object();
    for name in ["username", "email"] {
        if name == required {
            builder = builder.property(name, non_empty_string()).required(name);
        } else {
            builder = builder.property(name, or_null(Type::String).min_length(Some(1)));
        }
    }
    builder
}

// Each shape of a login body is a named component, and so is each union inside one: client
// generators (openapi-python-client) cannot process a union nested inline in another
// (docs/compatibility.md#9-openapi).

schema!(
    /// `POST /api/v1/login`: Rocket.Chat's three password shapes and Meteor's `{resume}`.
    LoginRequest = AnyOfBuilder::new()
        .description(Some(
            "`{user, password}` (`user` a username or an e-mail address), \
             `{username | email, password}`, `{user: {username | email}, password}`, or \
             Meteor's `{resume}` with a login token. `user` wins over `username` and `email`, \
             and `username` over `email`; a body without `password` but with `resume` is a \
             resume login.",
        ))
        .item(ref_to("LoginWithUser"))
        .item(ref_to("LoginWithUsername"))
        .item(ref_to("LoginWithEmail"))
        .item(ref_to("LoginWithResume"))
        .examples([json!({"user": "jane", "password": "s3cret"})])
);

schema!(
    /// `{user, password}`.
    LoginWithUser = object()
        .property("user", ref_to("LoginUser"))
        .required("user")
        .property("password", password())
        .required("password")
);

schema!(
    /// The `user` of `{user, password}`.
    LoginUser = AnyOfBuilder::new()
        .item(non_empty_string().description(Some("A username or an e-mail address")))
        .item(ref_to("LoginUserByUsername"))
        .item(ref_to("LoginUserByEmail"))
);

schema!(
    /// `{username, email?}` inside `user`.
    LoginUserByUsername = login_name("username")
);

schema!(
    /// `{email, username?}` inside `user`.
    LoginUserByEmail = login_name("email")
);

schema!(
    /// `{username, password}`.
    LoginWithUsername = login_name("username")
        .property("password", password())
        .required("password")
);

schema!(
    /// `{email, password}`.
    LoginWithEmail = login_name("email")
        .property("password", password())
        .required("password")
);

schema!(
    /// Meteor's resume login.
    LoginWithResume = object()
        .property(
            "resume",
            non_empty_string().description(Some(
                "A login token (`authToken` of an earlier login, or `importops token issue`)",
            )),
        )
        .required("resume")
);

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
/// The answer to a successful login.
pub struct LoginResponse {
    #[schema(inline)]
    pub status: SuccessStatus,
    #[schema(inline)]
    pub data: LoginData,
    #[schema(inline)]
    pub success: True,
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
/// The new session of a login.
pub struct LoginData {
    pub user_id: String,
    /// A new login token, shown once
    pub auth_token: String,
    #[schema(value_type = MeUser)]
    pub me: serde_json::Map<String, Value>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
/// The answer to `logout`.
pub struct LogoutResponse {
    #[schema(inline)]
    pub status: SuccessStatus,
    #[schema(inline)]
    pub data: LogoutData,
    #[schema(inline)]
    pub success: True,
}

#[derive(Debug, Default, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
/// What `logout` says.
pub struct LogoutData {
    #[schema(inline)]
    pub message: LoggedOut,
}

schema!(
    /// `POST /api/v1/users.create`.
    CreateUserRequest = object()
        .property(
            "email",
            string()
                .pattern(Some(EMAIL_PATTERN))
                .description(Some("One `@` with text on both sides, no white space"))
                .examples([json!("jane@example.com")]),
        )
        .required("email")
        .property("name", non_empty_string().examples([json!("Jane Doe")]))
        .required("name")
        .property("password", non_empty_string().examples([json!("s3cret")]))
        .required("password")
        .property(
            "username",
            string()
                .pattern(Some("^[0-9A-Za-z._-]{1,120}$"))
                .description(Some("Letters, digits, `-`, `_` and `.`"))
                .examples([json!("jane")]),
        )
        .required("username")
        .property(
            "roles",
            ArrayBuilder::new()
                .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
                .items(string())
                .description(Some(
                    "Existing roles (400 `error-invalid-role` otherwise); `[\"user\"]` when \
                     missing or empty",
                )),
        )
        .property(
            "active",
            or_null(Type::Boolean).description(Some("`true` when missing")),
        )
);

/// One `@` with text on both sides and no white space (Rust's `char::is_whitespace`).
const EMAIL_PATTERN: &str = "^[^@\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]+@[^@\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]+$";

schema!(
    /// `POST /api/v1/users.delete`: `{userId}` or `{username}`.
    DeleteUserRequest = AnyOfBuilder::new()
        .description(Some("`{userId}` or `{username}`; `userId` wins when both are given"))
        .item(ref_to("DeleteUserById"))
        .item(ref_to("DeleteUserByUsername"))
        .examples([json!({"username": "jane"})])
);

schema!(
    /// `{userId}` of `users.delete`.
    DeleteUserById = delete_by("userId")
);

schema!(
    /// `{username}` of `users.delete`.
    DeleteUserByUsername = delete_by("username")
);

fn delete_by(required: &str) -> ObjectBuilder {
    let mut builder = object();
    for name in ["userId", "username"] {
        if name == required {
            builder = builder.property(name, non_empty_string()).required(name);
        } else {
            builder = builder.property(name, or_null(Type::String).min_length(Some(1)));
        }
    }
    builder
}

// --- Permissions ------------------------------------------------------------------------------

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
/// A permission and the roles that hold it.
pub struct Permission {
    #[serde(rename = "_id")]
    #[schema(examples("view-import-operations"))]
    pub id: String,
    pub roles: Vec<String>,
    #[serde(rename = "_updatedAt")]
    #[schema(value_type = String, format = DateTime, required = true)]
    pub updated_at: Option<String>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
/// `permissions.listAll`.
pub struct PermissionsListAll {
    /// Every permission, or those changed after `updatedSince`
    pub update: Vec<Permission>,
    #[schema(schema_with = nothing_removed)]
    pub remove: [Value; 0],
    #[schema(inline)]
    pub success: True,
}

fn nothing_removed() -> ArrayBuilder {
    ArrayBuilder::new()
        .max_items(Some(0))
        .description(Some("Always empty: importops never deletes a permission"))
}

schema!(
    /// `POST /api/v1/permissions.update`.
    PermissionsUpdateRequest = object()
        .property(
            "permissions",
            array_of(
                object()
                    .property(
                        "_id",
                        non_empty_string()
                            .description(Some("An existing permission (400 `error-invalid-permission` otherwise)")),
                    )
                    .required("_id")
                    .property(
                        "roles",
                        array_of(string())
                            .description(Some("Existing roles (400 `error-invalid-role` otherwise)")),
                    )
                    .required("roles"),
            ),
        )
        .required("permissions")
        .examples([json!({"permissions": [
            {"_id": "create-personal-access-tokens", "roles": ["admin", "user"]}
        ]})])
);

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
/// The answer to `permissions.update`.
pub struct PermissionsUpdateResponse {
    /// Every permission, after the change
    pub permissions: Vec<Permission>,
    #[schema(inline)]
    pub success: True,
}

// --- Server routes ----------------------------------------------------------------------------

/// `{"status":"ok"}`.
#[derive(Debug, Default, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    #[schema(inline)]
    pub status: Ok,
}

/// `/readyz` when the database cannot be reached.
#[derive(Debug, Default, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Unready {
    #[schema(inline)]
    pub status: Unavailable,
    #[schema(inline)]
    pub checks: Checks,
}

/// What `/readyz` checked.
#[derive(Debug, Default, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    #[schema(inline)]
    pub database: Unavailable,
}

/// `GET /api/info`.
#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Info {
    /// The Rocket.Chat version importops emulates, `major.minor` (whole for callers holding
    /// `view-statistics`)
    #[schema(examples("8.0"))]
    pub version: String,
    /// Only for callers holding `view-statistics`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<InfoDetails>,
    pub minimum_client_versions: ClientVersions,
    #[schema(inline)]
    pub success: True,
}

/// The `info` of `GET /api/info`: the whole version.
#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InfoDetails {
    #[schema(examples("8.0.0"))]
    pub version: String,
}

/// The oldest desktop and mobile apps the emulated Rocket.Chat release (8.0.0) accepts.
#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientVersions {
    #[schema(examples("3.9.6"))]
    pub desktop: &'static str,
    #[schema(examples("4.39.0"))]
    pub mobile: &'static str,
}

impl Default for ClientVersions {
    fn default() -> Self {
        ClientVersions {
            desktop: "3.9.6",
            mobile: "4.39.0",
        }
    }
}

// --- Error bodies -----------------------------------------------------------------------------

schema!(
    /// A 400 in Rocket.Chat's shape.
    BadRequest = exact(vec![
        ("success", constant(false).into()),
        (
            "error",
            string()
                .description(Some(
                    "What is wrong, in the words of Rocket.Chat's validator (one line per \
                     unexpected query parameter), or a Meteor error's message ending in \
                     `[errorType]`"
                ))
                .into()
        ),
        (
            "errorType",
            string()
                .description(Some(
                    "`error-invalid-params` for the query string, `invalid-params` for the \
                     body, else the Meteor error's code"
                ))
                .examples([json!("invalid-params"), json!("error-field-unavailable")])
                .into()
        ),
    ])
    .property(
        "details",
        ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .description(Some("The Meteor error's details, when it has some")),
    )
);

schema!(
    /// A 400 of the import workflow: a Meteor error (with `errorType` and `details`), a plain
    /// error (`error` alone), or the body validator's `invalid-params`.
    ImportBadRequest = object()
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .property("success", constant(false))
        .required("success")
        .property(
            "error",
            string().description(Some(
                "A Meteor error's message ending in `[errorType]`, a plain error's message \
                 (`error-ssrf-validation-failed`, `Import operation not initialized.`, a \
                 parser's error), or the validator's words",
            )),
        )
        .required("error")
        .property(
            "errorType",
            string()
                .description(Some(
                    "The Meteor error's code, or `invalid-params` for the body; absent for a \
                     plain error",
                ))
                .examples([json!("error-operation-not-found")]),
        )
        .property(
            "details",
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .description(Some("The Meteor error's details: the method's name")),
        )
);

schema!(
    /// The 401 of a route that needs a session: one of two bodies, chosen by the server's
    /// `--auth-error-body` setting.
    SessionRequired = OneOfBuilder::new()
        .description(Some(
            "No valid session: no or one header, unknown user, wrong, revoked or expired token, \
             deactivated user; every case answers the same body. Which body is a server setting \
             (`--auth-error-body`): the documented one by default, or the one Rocket.Chat 7.x/8.x \
             servers send.",
        ))
        .item(ref_to("SessionRequiredDocumented"))
        .item(ref_to("SessionRequiredRocketChat"))
);

schema!(
    /// `{"success":false,"error":"unauthorized"}`.
    SessionRequiredDocumented = fixed_error("unauthorized")
);

schema!(
    /// Rocket.Chat 7.x/8.x's 401 body.
    SessionRequiredRocketChat = exact(vec![
        ("success", constant(false).into()),
        ("error", constant(LOGGED_IN).into()),
        ("status", constant("error").into()),
        ("message", constant(LOGGED_IN).into()),
    ])
);

const LOGGED_IN: &str = "You must be logged in to do this.";

schema!(
    /// A refused login: bad credentials, or blocked after repeated failures.
    LoginRefused = OneOfBuilder::new()
        .item(ref_to("BadCredentials"))
        .item(ref_to("LoginBlocked"))
        .item(ref_to("UserNotActivated"))
        .item(ref_to("SessionNotResumed"))
);

schema!(
    /// A refused login: a deactivated user whose password is right.
    UserNotActivated = exact(vec![
        ("success", constant(false).into()),
        ("error", constant("error-user-is-not-activated").into()),
        ("status", constant("error").into()),
        (
            "details",
            exact(vec![(
                "function",
                constant("Accounts.validateLoginAttempt").into()
            )])
            .into()
        ),
        ("message", constant("User is not activated").into()),
    ])
    .description(Some(
        "The user is deactivated (told only once its password is right)"
    ))
);

schema!(
    /// A refused `{resume}` login: Meteor's own 403.
    SessionNotResumed = exact(vec![
        ("success", constant(false).into()),
        ("error", constant(403).into()),
        ("status", constant("error").into()),
        (
            "message",
            string()
                .enum_values(Some([
                    "You've been logged out by the server. Please log in again.",
                    "Your session has expired. Please log in again.",
                ]))
                .into()
        ),
    ])
    .description(Some(
        "No user holds the token, or it is a login token past its expiry"
    ))
);

schema!(
    /// A refused login: bad credentials.
    BadCredentials = exact(vec![
        ("success", constant(false).into()),
        ("error", constant("Unauthorized").into()),
        ("status", constant("error").into()),
        ("message", constant("Unauthorized").into()),
    ])
    .description(Some(
        "Unknown user, wrong password, or no password"
    ))
);

schema!(
    /// A refused login: blocked after repeated failures.
    LoginBlocked = exact(vec![
        ("success", constant(false).into()),
        (
            "error",
            string()
                .enum_values(Some([
                    "error-login-blocked-for-user",
                    "error-login-blocked-for-ip"
                ]))
                .into()
        ),
        ("status", constant("error").into()),
        (
            "message",
            string()
                .enum_values(Some([
                    "Login has been temporarily blocked for this User",
                    "Login has been temporarily blocked for this IP",
                ]))
                .into()
        ),
    ])
    .description(Some(
        "Blocked: 10 failed logins for the user, or 50 from the client's address, within \
         5 minutes; until 5 minutes have passed since the last failure"
    ))
);

schema!(
    /// 403.
    Forbidden = fixed_error(
        "User does not have the permissions required for this action [error-unauthorized]"
    )
);

schema!(
    /// 429.
    TooManyRequests = exact(vec![
        ("success", constant(false).into()),
        (
            "error",
            string()
                .pattern(Some(
                    "^Error, too many requests\\. Please slow down\\. You must wait [0-9]+ \
                     seconds before trying this endpoint again\\. \\[error-too-many-requests\\]$"
                ))
                .into()
        ),
    ])
);

schema!(
    /// 408.
    RequestTimedOut = fixed_error("Request Timeout")
);

schema!(
    /// 413.
    PayloadTooLarge = fixed_error("Payload Too Large")
);

schema!(
    /// 431.
    HeadersTooLarge = fixed_error("Request Header Fields Too Large")
);

schema!(
    /// 500.
    InternalError = fixed_error("Internal server error")
);

schema!(
    /// 503.
    ServiceUnavailable = fixed_error("Service Unavailable")
);

// --- Shared answers ---------------------------------------------------------------------------

/// Declares a response component: a JSON answer with a description and a schema component.
macro_rules! answer {
    ($(#[$doc:meta])* $name:ident = $description:expr, $schema:ident $(, $headers:expr)?) => {
        $(#[$doc])*
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<ApiResponse>) {
                #[allow(unused_mut)]
                let mut response = ResponseBuilder::new()
                    .description($description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(ref_to(stringify!($schema))))
                            .build(),
                    )
                    .build();
                add_every_answers_headers(&mut response);
                $( for (name, header) in $headers { response.headers.insert(name.to_owned(), header); } )?
                (stringify!($name), response.into())
            }
        }
    };
}

answer!(
    /// 401 on every route that needs a session.
    Unauthorized = "No valid session (the two headers are required together)", SessionRequired
);
answer!(
    /// 403 on routes that need a permission.
    PermissionDenied = "The caller's roles do not hold the permission the route needs", Forbidden
);
answer!(
    /// 429 on routes the rate limiter counts.
    RateLimited = "Over the rate limit: by default 10 calls per 60 000 ms for each route, method \
        and client address, for callers without `api-bypass-rate-limit`; answered after 401, 403 \
        and 400, which are not counted",
    TooManyRequests,
    rate_limit_headers().into_iter().chain([retry_after_header()])
);
answer!(
    /// 408 on every route with a body.
    BodyTimedOut = "The request body did not arrive within `--body-read-timeout` (10 s) of its \
        headers; the connection is closed after this answer",
    RequestTimedOut
);
answer!(
    /// 413 on every route.
    BodyTooLarge = "The request body is larger than 1 MiB (announced by `Content-Length`, or \
        read)",
    PayloadTooLarge
);
answer!(
    /// 431 on every route.
    HeaderFieldsTooLarge = "The request's headers are larger than 32 KiB in all, or more than \
        100 header fields",
    HeadersTooLarge
);
answer!(
    /// 500 on every route.
    ServerError = "An internal fault; logged with the request id, never detailed in the answer",
    InternalError
);
answer!(
    /// 503 on every route that reads the database.
    DatabaseUnavailable = "The database cannot be reached (on Postgres also: no free \
        connection within 4 s, or a lock not granted within 1.5 s); on `login` and \
        `users.create` also every password-hashing slot busy for 2 s, with `Retry-After: 1`",
    ServiceUnavailable
);
