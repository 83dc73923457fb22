//! Property-based fuzzing of the whole HTTP API, in process, through the real router.
//!
//! Generated requests (methods, paths, query strings, headers, bodies; see `Case`) go through
//! `router(state)` with `tower::ServiceExt::oneshot`, on SQLite, with an admin and a viewer and
//! the documented example loaded, and with the rate limiter on with its default settings (so
//! 429s happen too). Every answer must keep these invariants:
//!
//! - the status is one of 200, 400, 401, 403, 404, 405 (a CORS pre-flight), 413, 429, 431:
//!   never a 5xx, never a panic;
//! - the body is JSON with `Content-Type: application/json` and `Cache-Control: no-store`
//!   (a HEAD answer has no body; the dashboard, the docs page and `/metrics` are not JSON);
//!   every non-200 is an object with `"success": false` and a string `"error"`, the fixed
//!   error bodies are Rocket.Chat's (docs/compatibility.md, sections 2, 3, 5, 6), a Rocket.Chat success is a
//!   bare array or has `"success": true`;
//! - the answer, body included, comes within `REQUEST_TIMEOUT` (otherwise: a hang);
//! - headers over 32 KiB in all (or over 100 fields) get 431, and only they; a body announced (`Content-Length`)
//!   over 1 MiB gets 413, and so does one that is not announced but read (a JSON route the
//!   caller may use), and only they; unknown routes and methods get 404, authenticated routes
//!   without credentials 401, the viewer on an admin's route 403, the admin on a route
//!   without parameters and the open routes 200; the admin gets no rate-limit headers, a 429
//!   says `X-RateLimit-Remaining: 0`.
//!
//! The number of requests comes from `IMPORTOPS_FUZZ_CASES` (default 3000); the seed from
//! `IMPORTOPS_FUZZ_SEED` (random by default, printed). The long run:
//! `IMPORTOPS_FUZZ_CASES=100000 cargo test --release --test fuzz -- --nocapture`
//! (see `reliability/fuzz.md`). A failing invariant is shrunk by proptest to a minimal `Case`.
//!
//! Bugs the fuzzer found keep a test with their minimal input at the end of this file.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use bytes::Bytes;
use common::{Login, TestApp, TestDb, documented_example};
use http_body_util::BodyExt;
use importops::accounts::{NewAccount, TokenLifetime, create_user, issue_token};
use importops::config::Settings;
use importops::http::router;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------
// What the server promises (src/http/limits.rs, src/http/body.rs, docs/compatibility.md).

/// Headers (names and values) larger than this in all get 431.
const MAX_HEADER_BYTES: usize = 32 * 1024;
/// More header fields than this get 431 too.
const MAX_HEADER_FIELDS: usize = 100;
/// Bodies larger than this get 413.
const MAX_BODY_BYTES: usize = 1 << 20;
/// A request that takes longer than this, body included, hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest URI the `http` crate parses.
const MAX_URI_LEN: usize = 65_000;

const ALLOWED_STATUSES: [u16; 9] = [200, 400, 401, 403, 404, 405, 413, 429, 431];

const UNAUTHORIZED: &str = r#"{"success":false,"error":"unauthorized"}"#;
/// After repeated failed logins (`src/http/login_guard.rs`).
const LOGIN_BLOCKED: [&str; 2] = [
    r#"{"success":false,"error":"error-login-blocked-for-user","status":"error","message":"Login has been temporarily blocked for this User"}"#,
    r#"{"success":false,"error":"error-login-blocked-for-ip","status":"error","message":"Login has been temporarily blocked for this IP"}"#,
];
const LOGIN_FAILED: &str =
    r#"{"success":false,"error":"Unauthorized","status":"error","message":"Unauthorized"}"#;
const FORBIDDEN: &str = r#"{"success":false,"error":"User does not have the permissions required for this action [error-unauthorized]"}"#;
const NOT_FOUND: &str = r#"{"success":false,"error":"Resource not found"}"#;
const PAYLOAD_TOO_LARGE: &str = r#"{"success":false,"error":"Payload Too Large"}"#;
const HEADERS_TOO_LARGE: &str = r#"{"success":false,"error":"Request Header Fields Too Large"}"#;
const TOO_MANY_PREFIX: &str = "Error, too many requests. Please slow down. You must wait ";
const TOO_MANY_SUFFIX: &str =
    " seconds before trying this endpoint again. [error-too-many-requests]";

const ADMIN_PASSWORD: &str = "fuzz-admin-password";
const VIEWER_PASSWORD: &str = "fuzz-viewer-password";

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// No authentication (`/api/info`, health), a JSON answer.
    Open,
    /// No authentication, an answer that is not JSON (the dashboard, metrics).
    OpenPage,
    /// No authentication, a JSON body (`login`).
    OpenJson,
    /// Any logged-in caller, no body read.
    Auth,
    /// A logged-in caller with a permission only admins hold by default, no body read.
    AdminOnly,
    /// Authentication, an admin-only permission, then a JSON body read.
    AdminJson,
    /// Authentication, then a JSON body read; the action checks the permission (a 400).
    AuthJson,
    /// The import workflow's routes: authentication and an admin-only permission, then (on
    /// routes with a body) a JSON body read; the action answers 200 or a 400 that depends on
    /// the import's state, which tests/import_workflow.rs follows step by step.
    AdminAction,
}

struct Route {
    method: &'static str,
    path: &'static str,
    access: Access,
}

/// Every route of the router (checked against the OpenAPI document, which comes from the same
/// declaration, by `the_route_table_is_the_documents`), `/metrics` included: it is on the API's
/// address by default.
const ROUTES: &[Route] = &[
    route(
        "GET",
        "/api/v1/getLatestImportOperations",
        Access::AdminOnly,
    ),
    route("POST", "/api/v1/login", Access::OpenJson),
    route("POST", "/api/v1/logout", Access::Auth),
    route("GET", "/api/v1/logout", Access::Auth),
    route("GET", "/api/v1/me", Access::Auth),
    route("POST", "/api/v1/users.create", Access::AuthJson),
    route("POST", "/api/v1/users.delete", Access::AdminJson),
    route("GET", "/api/v1/permissions.listAll", Access::Auth),
    route("POST", "/api/v1/permissions.update", Access::AdminJson),
    route(
        "GET",
        "/api/v1/getCurrentImportOperation",
        Access::AdminOnly,
    ),
    route("GET", "/api/v1/import.status", Access::AdminOnly),
    route("POST", "/api/v1/import.new", Access::AdminOnly),
    route("POST", "/api/v1/import.clear", Access::AdminOnly),
    route("GET", "/api/v1/importers.list", Access::AdminOnly),
    route("GET", "/api/v1/getImportProgress", Access::AdminOnly),
    route(
        "POST",
        "/api/v1/import.operations.upsert",
        Access::AdminJson,
    ),
    route("POST", "/api/v1/uploadImportFile", Access::AdminAction),
    route(
        "POST",
        "/api/v1/downloadPublicImportFile",
        Access::AdminAction,
    ),
    route("GET", "/api/v1/getImportFileData", Access::AdminAction),
    route("POST", "/api/v1/startImport", Access::AdminAction),
    route("POST", "/api/v1/downloadPendingFiles", Access::AdminAction),
    route(
        "POST",
        "/api/v1/downloadPendingAvatars",
        Access::AdminAction,
    ),
    route("POST", "/api/v1/import.addUsers", Access::AdminAction),
    route("POST", "/api/v1/import.run", Access::AdminAction),
    route("GET", "/api/v1/openapi.json", Access::Open),
    route("GET", "/api/v1/docs", Access::OpenPage),
    route("GET", "/api/info", Access::Open),
    route("GET", "/", Access::OpenPage),
    route("GET", "/dashboard/import", Access::OpenPage),
    route("GET", "/metrics", Access::OpenPage),
    route("GET", "/livez", Access::Open),
    route("GET", "/readyz", Access::Open),
];

/// Documented routes this suite leaves out, with why: the event stream's answer never ends
/// while its caller may read it (its 401/403/400 are JSON like any other route's), and the
/// DDP-over-REST routes answer a method's error as Rocket.Chat does, `{"message", "success":
/// false}` without `error`. tests/realtime.rs covers all three through a real server.
const NOT_FUZZED: [(&str, &str); 3] = [
    ("GET", "/api/v1/import.operations.events"),
    ("POST", "/api/v1/method.call/{method}"),
    ("POST", "/api/v1/method.callAnon/{method}"),
];

/// Whether the request is for one of the import workflow's routes (`Access::AdminAction`).
fn action_route(info: &Info) -> bool {
    ROUTES
        .iter()
        .any(|r| r.path == info.path && r.access == Access::AdminAction)
}

/// Routes whose body limit is the upload's (the base64 size of `--import-max-bytes`), not 1 MiB.
const UPLOAD_ROUTES: [&str; 1] = ["/api/v1/uploadImportFile"];

const fn route(method: &'static str, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
    }
}

fn route_at(i: usize) -> &'static Route {
    &ROUTES[i % ROUTES.len()]
}

// ---------------------------------------------------------------------------------------------
// The generated case: a compact description, materialized by `build`, so that a shrunk failure
// prints small.

#[derive(Debug, Clone)]
struct Case {
    method: MethodSpec,
    path: PathSpec,
    query: QuerySpec,
    creds: CredSpec,
    content_type: CtSpec,
    headers: Vec<HeaderSpec>,
    body: BodySpec,
    length: LenSpec,
    chunked: Option<usize>,
}

#[derive(Debug, Clone)]
enum MethodSpec {
    /// The route's own method (GET when the path is not a route).
    Routes,
    Named(&'static str),
    /// A random token (an extension method).
    Token(String),
    /// A very long extension method.
    Long(usize),
}

const METHODS: &[&str] = &[
    "GET",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "HEAD",
    "OPTIONS",
    "CONNECT",
    "TRACE",
    "PROPFIND",
    "MKCOL",
    "PURGE",
    "LINK",
    "QUERY",
    "M-SEARCH",
    "get",
    "post",
    "Head",
    "X-FUZZ",
    "!#$%&'*+.^_`|~",
];

#[derive(Debug, Clone)]
enum PathSpec {
    Route(usize),
    /// absolute-form: `http://host/route`
    Absolute(usize),
    NearMiss(usize, NearMiss),
    Segments(Vec<String>),
    Long {
        route: Option<usize>,
        len: usize,
        unit: &'static str,
    },
    Odd(&'static str),
}

#[derive(Debug, Clone)]
enum NearMiss {
    TrailingSlash,
    DoubleSlash,
    Upper,
    DropLastChar,
    Append(String),
    PercentEncode(usize),
    DotSegment,
    DotDot,
    V2,
    NoApiPrefix,
    Semicolon,
    EncodedSlashes,
    Prefix(String),
}

const ODD_PATHS: &[&str] = &[
    "/",
    "*",
    "//",
    "///api/v1/me",
    "/api",
    "/api/",
    "/api/v1",
    "/api/v1/",
    "/api/v1/.",
    "/api/v1/..",
    "/api/v1/%2e%2e/v1/me",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/../../etc/passwd",
    "/api/v1/me%00",
    "/api/v1/me%",
    "/api/v1/me%zz",
    "/api/v1/%",
    "/api/v1/login%2F",
    "/api/v1/getLatestImportOperations%3Fx=1",
    "/API/V1/ME",
    "/api/v1/me/",
    "/livez/",
    "/readyz/..",
    "/api/info/",
    "/api/info%20",
    "/%C3%A9",
    "/%FF%FE",
    "/%E2%80%AE",
    "/api/v1/users.create/../users.delete",
    "/api/v1/'%20OR%201=1%20--",
    "/api/v1/;",
    "/api/v1/:id",
    "/api/v1/{id}",
    "/api/v1/*rest",
    "/\\",
    "/api/v1/me\\",
];

const SEGMENT_ATOMS: &[&str] = &[
    "..",
    ".",
    "%2e%2e",
    "%2E",
    "%2F",
    "%2f",
    "%5C",
    "%00",
    "%zz",
    "%",
    "%4",
    "%C3%A9",
    "%FF",
    "%E2%80%AE",
    "api",
    "v1",
    "login",
    "me",
    "import.status",
    "getLatestImportOperations",
    "'",
    "%27%20OR%201%3D1%20--",
    "%7B%7D",
    "[]",
    "%5B%5D",
    "~",
    ":",
    "@",
    ";",
    "=",
    "+",
    "$",
    "!",
    "*",
    "(",
    ")",
    ",",
    "&",
    "{}",
    "|",
    "^",
    "`",
    "\"",
    "<>",
    "\\",
];

const SAFE_CHARS: &[char] = &[
    'a', 'b', 'c', 'x', 'y', 'z', 'A', 'Z', '0', '1', '9', '-', '_', '.', '~',
];

#[derive(Debug, Clone)]
enum QuerySpec {
    None,
    /// `?` and nothing after it.
    Empty,
    Pairs(Vec<(String, String)>),
    Raw(&'static str),
    Huge {
        len: usize,
        unit: &'static str,
    },
}

const QUERY_KEYS: &[&str] = &[
    "a",
    "a[]",
    "a[x]",
    "a[0][b]",
    "count",
    "offset",
    "updatedSince",
    "updatedSince[]",
    "query",
    "fields",
    "sort",
    "%zz",
    "",
    "=",
    "x%",
    "q%FF",
    "user",
    "$where",
    "__proto__",
    "%5B%5D",
    "[a]",
    "a]",
    "success",
];

const QUERY_RAW: &[&str] = &[
    "a=1&a=1",
    "a[]=1&a[]=2",
    "a[x]=1&a[y]=2&b=3",
    "&&",
    "=",
    "&=&",
    "%",
    "%zz=%zz",
    "a=%ZZ&b=%",
    "a=%G0",
    "updatedSince=2021-10-27T11:26:24.430Z",
    "updatedSince=2021-10-27T11:26:24.430Z&updatedSince=garbage",
    "updatedSince=garbage",
    "updatedSince=",
    "updatedSince",
    "updatedSince[]=1",
    "updatedSince=99999-99-99T99:99:99.999Z",
    "updatedSince=-1",
    "updatedSince=1e400",
    "a=%27%20OR%201%3D1%20--",
    "a=%7B%22%24gt%22%3A%22%22%7D",
    "+++",
    "a=b=c",
    ";",
    "%00=%00",
    "a=1;b=2",
    "%C3%A9=%FF%FE",
];

#[derive(Debug, Clone)]
enum CredSpec {
    None,
    Admin,
    Viewer,
    AdminWrongToken,
    ViewerIdAdminToken,
    AdminDuplicateId,
    AdminDuplicateToken,
    AdminIdOnly,
    AdminTokenOnly,
    AdminTokenPadded,
    Values(ValueSpec, ValueSpec),
}

#[derive(Debug, Clone)]
enum CtSpec {
    None,
    Json,
    JsonCharset,
    JsonUpper,
    JsonSpaces,
    Text,
    Form,
    Multipart,
    NotUtf8,
    Empty,
    Twice,
}

#[derive(Debug, Clone)]
enum HeaderSpec {
    One(NameSpec, ValueSpec),
    /// Many small headers.
    Many {
        count: usize,
        len: usize,
    },
    /// One header that brings the total to exactly `MAX_HEADER_BYTES + delta`.
    Boundary(i16),
}

#[derive(Debug, Clone)]
enum NameSpec {
    Known(&'static str),
    Random(String),
}

const HEADER_NAMES: &[&str] = &[
    "x-user-id",
    "x-auth-token",
    "content-type",
    "content-length",
    "accept",
    "accept-encoding",
    "x-forwarded-for",
    "cookie",
    "authorization",
    "transfer-encoding",
    "host",
    "user-agent",
    "expect",
    "origin",
    "x-requested-with",
    "x-ratelimit-limit",
    "cache-control",
    "x-request-id",
];

#[derive(Debug, Clone)]
enum ValueSpec {
    Empty,
    Text(String),
    Sql(&'static str),
    Json(&'static str),
    /// Visible ASCII, tabs and obs-text (0x80..=0xFF): every byte `HeaderValue` allows.
    Bytes(Vec<u8>),
    Long {
        len: usize,
        byte: u8,
    },
    /// The current admin or viewer id or token.
    Known(u8),
}

const SQL: &[&str] = &[
    "' OR 1=1 --",
    "\" OR \"\"=\"",
    "'; DROP TABLE users; --",
    "1; SELECT * FROM sessions",
    "admin'--",
    "' UNION SELECT token_hash FROM sessions --",
    "%' OR '%'='",
    "\\'; --",
    "1' AND SLEEP(5) --",
    "'||(SELECT sqlite_version())||'",
];

const JSON_FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "[",
    "{\"$gt\":\"\"}",
    "{\"$ne\":null}",
    "null",
    "true",
    "[]",
    "{}",
    "\"",
    "\\u0000",
    "{\"a\":",
    "1e99999",
    "-0",
    "NaN",
    "{\"success\":true}",
];

#[derive(Debug, Clone)]
enum BodySpec {
    None,
    Empty,
    /// A well-formed body for the route (so that 200 paths run too), from `valid_body`.
    Valid(usize),
    Json(Value),
    /// A valid body cut at this per mille of its length.
    Truncated(usize, u16),
    Deep {
        depth: usize,
        kind: DeepKind,
        closed: bool,
        in_field: bool,
    },
    Huge {
        len: usize,
        fill: HugeFill,
    },
    /// A JSON body of exactly `MAX_BODY_BYTES + delta` bytes.
    Boundary(i8),
    InvalidUtf8 {
        bytes: Vec<u8>,
        in_string: bool,
    },
    Garbage(Vec<u8>),
    Fragment(&'static str),
}

#[derive(Debug, Clone, Copy)]
enum DeepKind {
    Arrays,
    Objects,
    Mixed,
}

#[derive(Debug, Clone, Copy)]
enum HugeFill {
    JsonString,
    JsonArray,
    Whitespace,
    Garbage,
}

#[derive(Debug, Clone)]
enum LenSpec {
    None,
    Correct,
    Zero,
    Small(u8),
    Huge(u64),
    Invalid(&'static str),
    /// The correct length, then another one.
    Twice(u64),
}

const INVALID_LENGTHS: &[&str] = &[
    "abc",
    "-1",
    "1e9",
    " 5",
    "5 ",
    "+5",
    "18446744073709551616",
    "0x10",
    "",
    "1,2",
];

// ---------------------------------------------------------------------------------------------
// Strategies.

fn token_string(max: usize) -> impl Strategy<Value = String> {
    const TCHARS: &[char] = &[
        'A', 'B', 'Q', 'X', 'Z', 'a', 'q', 'z', '0', '7', '!', '#', '$', '%', '&', '\'', '*', '+',
        '-', '.', '^', '_', '`', '|', '~',
    ];
    prop::collection::vec(select(TCHARS), 1..max).prop_map(|c| c.into_iter().collect())
}

fn lower_token(max: usize) -> impl Strategy<Value = String> {
    const CHARS: &[char] = &['a', 'f', 'x', 'z', '0', '9', '-', '_', '.'];
    prop::collection::vec(select(CHARS), 1..max).prop_map(|c| c.into_iter().collect())
}

fn method_spec() -> impl Strategy<Value = MethodSpec> {
    prop_oneof![
        8 => Just(MethodSpec::Routes),
        6 => select(METHODS).prop_map(MethodSpec::Named),
        1 => token_string(20).prop_map(MethodSpec::Token),
        1 => (16usize..2000).prop_map(MethodSpec::Long),
    ]
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(select(SAFE_CHARS), 0..12).prop_map(|c| c.into_iter().collect()),
        select(SEGMENT_ATOMS).prop_map(str::to_owned),
        prop::collection::vec(
            prop_oneof![
                select(SEGMENT_ATOMS).prop_map(str::to_owned),
                select(SAFE_CHARS).prop_map(String::from),
                any::<u8>().prop_map(|b| format!("%{b:02X}")),
            ],
            1..6
        )
        .prop_map(|parts| parts.concat()),
    ]
}

fn route_index() -> impl Strategy<Value = usize> {
    0..ROUTES.len()
}

fn near_miss() -> impl Strategy<Value = NearMiss> {
    prop_oneof![
        Just(NearMiss::TrailingSlash),
        Just(NearMiss::DoubleSlash),
        Just(NearMiss::Upper),
        Just(NearMiss::DropLastChar),
        segment().prop_map(NearMiss::Append),
        (0usize..64).prop_map(NearMiss::PercentEncode),
        Just(NearMiss::DotSegment),
        Just(NearMiss::DotDot),
        Just(NearMiss::V2),
        Just(NearMiss::NoApiPrefix),
        Just(NearMiss::Semicolon),
        Just(NearMiss::EncodedSlashes),
        segment().prop_map(NearMiss::Prefix),
    ]
}

fn path_spec() -> impl Strategy<Value = PathSpec> {
    prop_oneof![
        12 => route_index().prop_map(PathSpec::Route),
        1 => route_index().prop_map(PathSpec::Absolute),
        4 => (route_index(), near_miss()).prop_map(|(r, m)| PathSpec::NearMiss(r, m)),
        2 => prop::collection::vec(segment(), 0..8).prop_map(PathSpec::Segments),
        1 => (
            prop::option::of(route_index()),
            1_000usize..MAX_URI_LEN,
            select(&["a", "../", "%41", "/x", "%2e%2e%2f", "/"][..]),
        )
            .prop_map(|(route, len, unit)| PathSpec::Long { route, len, unit }),
        2 => select(ODD_PATHS).prop_map(PathSpec::Odd),
    ]
}

fn query_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(select(SAFE_CHARS), 0..10).prop_map(|c| c.into_iter().collect()),
        select(SEGMENT_ATOMS).prop_map(str::to_owned),
        select(SQL).prop_map(str::to_owned),
        select(JSON_FRAGMENTS).prop_map(str::to_owned),
    ]
}

fn query_spec() -> impl Strategy<Value = QuerySpec> {
    prop_oneof![
        12 => Just(QuerySpec::None),
        1 => Just(QuerySpec::Empty),
        3 => prop::collection::vec(
            (
                prop_oneof![select(QUERY_KEYS).prop_map(str::to_owned), query_text()],
                query_text(),
            ),
            1..6
        )
        .prop_map(QuerySpec::Pairs),
        3 => select(QUERY_RAW).prop_map(QuerySpec::Raw),
        1 => (1_000usize..MAX_URI_LEN, select(&["a=1&", "a[]=1&", "%zz", "x", "&", "%41"][..]))
            .prop_map(|(len, unit)| QuerySpec::Huge { len, unit }),
    ]
}

fn value_spec() -> impl Strategy<Value = ValueSpec> {
    let allowed_byte = prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff,];
    prop_oneof![
        2 => Just(ValueSpec::Empty),
        3 => prop::collection::vec(
            prop_oneof![select(SAFE_CHARS), Just(' '), Just('\t'), Just('"'), Just(',')],
            0..40
        )
        .prop_map(|c| ValueSpec::Text(c.into_iter().collect())),
        2 => select(SQL).prop_map(ValueSpec::Sql),
        2 => select(JSON_FRAGMENTS).prop_map(ValueSpec::Json),
        2 => prop::collection::vec(allowed_byte, 0..64).prop_map(ValueSpec::Bytes),
        1 => (1_000usize..70_000, prop_oneof![Just(b'a'), Just(b'\t'), Just(0xffu8), Just(b' ')])
            .prop_map(|(len, byte)| ValueSpec::Long { len, byte }),
        2 => (0u8..4).prop_map(ValueSpec::Known),
    ]
}

fn cred_spec() -> impl Strategy<Value = CredSpec> {
    prop_oneof![
        14 => Just(CredSpec::Admin),
        8 => Just(CredSpec::Viewer),
        6 => Just(CredSpec::None),
        1 => Just(CredSpec::AdminWrongToken),
        1 => Just(CredSpec::ViewerIdAdminToken),
        1 => Just(CredSpec::AdminDuplicateId),
        1 => Just(CredSpec::AdminDuplicateToken),
        1 => Just(CredSpec::AdminIdOnly),
        1 => Just(CredSpec::AdminTokenOnly),
        1 => Just(CredSpec::AdminTokenPadded),
        3 => (value_spec(), value_spec()).prop_map(|(a, b)| CredSpec::Values(a, b)),
    ]
}

fn ct_spec() -> impl Strategy<Value = CtSpec> {
    prop_oneof![
        4 => Just(CtSpec::None),
        12 => Just(CtSpec::Json),
        1 => Just(CtSpec::JsonCharset),
        1 => Just(CtSpec::JsonUpper),
        1 => Just(CtSpec::JsonSpaces),
        1 => Just(CtSpec::Text),
        1 => Just(CtSpec::Form),
        1 => Just(CtSpec::Multipart),
        1 => Just(CtSpec::NotUtf8),
        1 => Just(CtSpec::Empty),
        1 => Just(CtSpec::Twice),
    ]
}

fn header_spec() -> impl Strategy<Value = HeaderSpec> {
    prop_oneof![
        10 => (
            prop_oneof![
                3 => select(HEADER_NAMES).prop_map(NameSpec::Known),
                1 => lower_token(30).prop_map(|n| NameSpec::Random(format!("x-{n}"))),
            ],
            value_spec(),
        )
            .prop_map(|(n, v)| HeaderSpec::One(n, v)),
        1 => (10usize..800, 1usize..100).prop_map(|(count, len)| HeaderSpec::Many { count, len }),
        1 => (-3i16..=3).prop_map(HeaderSpec::Boundary),
    ]
}

const INTERESTING_STRINGS: &[&str] = &[
    "admin",
    "viewer",
    "admin@example.com",
    "fuzz-admin-password",
    "' OR 1=1 --",
    "\u{0}",
    "importer_done",
    "importer_new",
    "sha-256",
    "view-import-operations",
    "api-bypass-rate-limit",
    "run-import",
    "user",
    "bot",
    "MJxTRZsYdho8Ww2qq",
    "64d69545ee8ae821983005f5",
    "",
    "ünïcødé 💬",
    "\u{202e}",
    "2021-10-27T11:26:24.430Z",
    "$date",
    "$numberLong",
];

const JSON_KEYS: &[&str] = &[
    "user",
    "password",
    "username",
    "email",
    "name",
    "roles",
    "active",
    "userId",
    "permissions",
    "_id",
    "type",
    "importerKey",
    "status",
    "valid",
    "ts",
    "_updatedAt",
    "count",
    "total",
    "completed",
    "error",
    "digest",
    "algorithm",
    "$date",
    "$numberLong",
    "$oid",
    "__proto__",
    "",
    "fileData",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        select(INTERESTING_STRINGS).prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
        (0usize..20_000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        3 => select(JSON_KEYS).prop_map(str::to_owned),
                        1 => ".{0,8}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn body_spec() -> impl Strategy<Value = BodySpec> {
    prop_oneof![
        10 => Just(BodySpec::None),
        1 => Just(BodySpec::Empty),
        12 => (0usize..64).prop_map(BodySpec::Valid),
        6 => json_value().prop_map(BodySpec::Json),
        2 => (0usize..64, 0u16..1000).prop_map(|(k, cut)| BodySpec::Truncated(k, cut)),
        2 => (
            prop_oneof![1usize..200, 100usize..140, 1_000usize..20_000],
            prop_oneof![Just(DeepKind::Arrays), Just(DeepKind::Objects), Just(DeepKind::Mixed)],
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(depth, kind, closed, in_field)| BodySpec::Deep {
                depth,
                kind,
                closed,
                in_field
            }),
        2 => (
            MAX_BODY_BYTES + 1..3 * MAX_BODY_BYTES,
            prop_oneof![
                Just(HugeFill::JsonString),
                Just(HugeFill::JsonArray),
                Just(HugeFill::Whitespace),
                Just(HugeFill::Garbage),
            ],
        )
            .prop_map(|(len, fill)| BodySpec::Huge { len, fill }),
        1 => (-2i8..=2).prop_map(BodySpec::Boundary),
        2 => (prop::collection::vec(0x80u8..=0xff, 1..16), any::<bool>())
            .prop_map(|(bytes, in_string)| BodySpec::InvalidUtf8 { bytes, in_string }),
        1 => prop::collection::vec(any::<u8>(), 0..128).prop_map(BodySpec::Garbage),
        2 => select(JSON_FRAGMENTS).prop_map(BodySpec::Fragment),
    ]
}

fn len_spec() -> impl Strategy<Value = LenSpec> {
    prop_oneof![
        12 => Just(LenSpec::None),
        6 => Just(LenSpec::Correct),
        1 => Just(LenSpec::Zero),
        1 => any::<u8>().prop_map(LenSpec::Small),
        1 => (MAX_BODY_BYTES as u64 + 1..u64::MAX).prop_map(LenSpec::Huge),
        1 => select(INVALID_LENGTHS).prop_map(LenSpec::Invalid),
        1 => any::<u64>().prop_map(LenSpec::Twice),
    ]
}

/// A request a client could mean: a real route with its method, the admin's, the viewer's or
/// no credentials, a body for the route; so that 200, 400, 403 and 429 paths run often.
fn clean_case() -> impl Strategy<Value = Case> {
    (
        route_index(),
        prop_oneof![
            8 => Just(QuerySpec::None),
            1 => select(QUERY_RAW).prop_map(QuerySpec::Raw),
        ],
        prop_oneof![
            4 => Just(CredSpec::Admin),
            4 => Just(CredSpec::Viewer),
            2 => Just(CredSpec::None),
            1 => Just(CredSpec::AdminWrongToken),
        ],
        prop_oneof![
            6 => (0usize..64).prop_map(BodySpec::Valid),
            1 => Just(BodySpec::None),
            1 => json_value().prop_map(BodySpec::Json),
        ],
        prop_oneof![Just(LenSpec::None), Just(LenSpec::Correct)],
    )
        .prop_map(|(route, query, creds, body, length)| Case {
            method: MethodSpec::Routes,
            path: PathSpec::Route(route),
            query,
            creds,
            content_type: CtSpec::Json,
            headers: Vec::new(),
            body,
            length,
            chunked: None,
        })
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![
        1 => clean_case(),
        2 => wild_case(),
    ]
}

/// Anything: every part of the request drawn from its whole range.
fn wild_case() -> impl Strategy<Value = Case> {
    (
        method_spec(),
        path_spec(),
        query_spec(),
        cred_spec(),
        ct_spec(),
        prop::collection::vec(header_spec(), 0..4),
        body_spec(),
        len_spec(),
        prop_oneof![3 => Just(None), 1 => (1usize..100_000).prop_map(Some)],
    )
        .prop_map(
            |(method, path, query, creds, content_type, headers, body, length, chunked)| Case {
                method,
                path,
                query,
                creds,
                content_type,
                headers,
                body,
                length,
                chunked,
            },
        )
}

// ---------------------------------------------------------------------------------------------
// The world the requests run against, and its repair after a request changed it (a logout, a
// deleted admin, changed permissions), so that the admin's and viewer's paths stay reachable.

struct Creds {
    admin: Login,
    viewer: Login,
}

struct World {
    app: TestApp,
    router: Router,
    creds: Mutex<Creds>,
    op_ids: Vec<String>,
    initial_permissions: Vec<(String, Vec<String>)>,
    repairs: AtomicU64,
}

async fn make_user(app: &TestApp, username: &str, roles: &[&str], password: &str) -> Login {
    let mut name = username.to_owned();
    for attempt in 0.. {
        let made = create_user(
            &app.store,
            NewAccount {
                username: name.clone(),
                email: Some(format!("{name}@example.com")),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                password: Some(password.into()),
                active: true,
                ..NewAccount::default()
            },
        )
        .await;
        match made {
            Ok(user) => {
                let token = issue_token(&app.store, &user.id, TokenLifetime::Default)
                    .await
                    .expect("issue a token");
                return Login {
                    user_id: user.id,
                    token,
                };
            }
            // The name was taken by a generated `users.create`: use another.
            Err(_) if attempt < 100 => name = format!("{username}-{attempt}"),
            Err(e) => panic!("cannot create {username}: {e}"),
        }
    }
    unreachable!()
}

impl World {
    async fn new(db: &TestDb) -> World {
        // Rocket.Chat's defaults: the rate limiter is on (10 calls a minute).
        let settings = Settings::default();
        assert!(settings.rate_limit_calls > 0 && settings.rate_limit_window_ms > 0);
        let app = TestApp::with_settings(db, settings).await;
        let admin = make_user(&app, "admin", &["admin", "user"], ADMIN_PASSWORD).await;
        let viewer = make_user(&app, "viewer", &["user"], VIEWER_PASSWORD).await;
        let fixture = documented_example();
        app.load(&fixture).await;
        let op_ids = serde_json::from_str::<Vec<Value>>(&fixture)
            .expect("the documented example")
            .iter()
            .filter_map(|op| op["_id"].as_str().map(str::to_owned))
            .collect();
        let initial_permissions = app
            .store
            .list_permissions()
            .await
            .expect("permissions")
            .into_iter()
            .map(|p| (p.id, p.roles))
            .collect();
        World {
            router: router(app.state.clone()),
            app,
            creds: Mutex::new(Creds { admin, viewer }),
            op_ids,
            initial_permissions,
            repairs: AtomicU64::new(0),
        }
    }

    fn creds(&self) -> std::sync::MutexGuard<'_, Creds> {
        self.creds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts back what a successful request may have taken away.
    async fn repair(&self, info: &Info, status: u16) {
        let logout = info.path == "/api/v1/logout";
        if status != 200 || (info.method != Method::POST && !logout) {
            return;
        }
        let store = &self.app.store;
        match info.path.as_str() {
            "/api/v1/logout" => {
                let (admin, viewer) = {
                    let c = self.creds();
                    (c.admin.clone(), c.viewer.clone())
                };
                for (who, login) in [(0, admin), (1, viewer)] {
                    if info.token.as_deref() == Some(login.token.as_str()) {
                        let token = issue_token(store, &login.user_id, TokenLifetime::Default)
                            .await
                            .expect("issue a token");
                        let mut c = self.creds();
                        let slot = if who == 0 {
                            &mut c.admin
                        } else {
                            &mut c.viewer
                        };
                        slot.token = token;
                        self.repairs.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            "/api/v1/users.delete" => {
                let (admin_id, viewer_id) = {
                    let c = self.creds();
                    (c.admin.user_id.clone(), c.viewer.user_id.clone())
                };
                if store.user_by_id(&admin_id).await.expect("a user").is_none() {
                    let login =
                        make_user(&self.app, "admin", &["admin", "user"], ADMIN_PASSWORD).await;
                    self.creds().admin = login;
                    self.repairs.fetch_add(1, Ordering::Relaxed);
                }
                if store
                    .user_by_id(&viewer_id)
                    .await
                    .expect("a user")
                    .is_none()
                {
                    let login = make_user(&self.app, "viewer", &["user"], VIEWER_PASSWORD).await;
                    self.creds().viewer = login;
                    self.repairs.fetch_add(1, Ordering::Relaxed);
                }
            }
            "/api/v1/permissions.update" => {
                store
                    .set_permissions(&self.initial_permissions)
                    .await
                    .expect("restore the permissions");
                self.repairs.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Materializing a case.

/// What the checks need to know about a built request.
#[derive(Debug, Default)]
struct Info {
    method: Method,
    /// The URI's path as the router sees it.
    path: String,
    uri_len: usize,
    /// The URI as generated did not parse: it was percent-encoded.
    uri_fallback: bool,
    header_bytes: usize,
    /// Header fields, each repeat counted.
    header_fields: usize,
    /// The first `Content-Length`, as the server reads it.
    announced: Option<u64>,
    body_len: usize,
    json_content_type: bool,
    /// Exactly one `X-User-Id` and one `X-Auth-Token`, and they are the admin's.
    admin: bool,
    /// The same for the viewer.
    viewer: bool,
    /// No query string, or an empty one.
    no_query: bool,
    /// Neither `X-User-Id` nor `X-Auth-Token` was sent.
    no_credentials: bool,
    /// The single `X-Auth-Token`, if there was exactly one.
    token: Option<String>,
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Nested to `depth` (at most), for an operation field.
fn nested(depth: usize) -> Value {
    let mut v = json!("bottom");
    for i in 0..depth {
        v = if i % 2 == 0 {
            json!([v])
        } else {
            json!({ "k": v })
        };
    }
    v
}

/// A well-formed body for the route (or for any route when the path is none), the `k`-th of
/// its kinds: successes and the route's own 400s.
fn valid_body(route: Option<usize>, k: usize, world: &World) -> String {
    let path = route.map(|r| route_at(r).path).unwrap_or_else(|| {
        let json_routes = [
            "/api/v1/login",
            "/api/v1/users.create",
            "/api/v1/users.delete",
        ];
        json_routes[k % json_routes.len()]
    });
    let op_id = &world.op_ids[k % world.op_ids.len()];
    let value = match path {
        "/api/v1/login" => match k % 8 {
            0 => json!({"user": "admin", "password": ADMIN_PASSWORD}),
            1 => json!({"username": "viewer", "password": VIEWER_PASSWORD}),
            2 => json!({"user": {"email": "admin@example.com"}, "password": ADMIN_PASSWORD}),
            3 => {
                json!({"user": "admin", "password": {"digest": sha256_hex(ADMIN_PASSWORD), "algorithm": "sha-256"}})
            }
            4 => json!({"user": "admin", "password": "wrong"}),
            5 => json!({"user": "nobody", "password": "x"}),
            6 => json!({"user": "' OR 1=1 --", "password": "' OR '1'='1"}),
            _ => json!({"email": "viewer@example.com", "password": VIEWER_PASSWORD}),
        },
        "/api/v1/users.create" => {
            let n = k % 16;
            let mut body = json!({
                "email": format!("fz{n}@example.com"), "name": "Fuzz", "password": "fuzz-password",
                "username": format!("fz{n}"),
            });
            match k % 5 {
                1 => body["roles"] = json!(["user"]),
                2 => body["roles"] = json!(["no-such-role"]),
                3 => body["active"] = json!(false),
                4 => body["username"] = json!("not a valid name!"),
                _ => {}
            }
            body
        }
        "/api/v1/users.delete" => match k % 4 {
            0 | 1 => json!({"username": format!("fz{}", k % 16)}),
            2 => json!({"userId": "nosuchuser0000000"}),
            _ => json!({"username": "ghost"}),
        },
        "/api/v1/permissions.update" => match k % 6 {
            0 => json!({"permissions": [{"_id": "view-import-operations", "roles": ["admin"]}]}),
            1 => {
                json!({"permissions": [{"_id": "view-import-operations", "roles": ["admin", "user"]}]})
            }
            2 => json!({"permissions": [{"_id": "no-such-permission", "roles": ["admin"]}]}),
            3 => json!({"permissions": [{"_id": "run-import", "roles": ["no-such-role"]}]}),
            4 => json!({"permissions": []}),
            _ => {
                json!({"permissions": [{"_id": "create-personal-access-tokens", "roles": ["admin", "user"]}]})
            }
        },
        "/api/v1/import.operations.upsert" => match k % 16 {
            0 => json!({"type": "CSV", "importerKey": "csv", "status": "importer_new"}),
            1 => json!({"_id": op_id, "status": "importer_importing_users",
                        "count": {"total": 10, "completed": 5, "error": 0}}),
            2 => json!({"_id": "not-an-id"}),
            3 => json!({"status": "bogus"}),
            4 => json!({"type": "Slack", "importerKey": "slack",
                        "ts": {"$date": "2023-08-11T20:08:37.655Z"}, "status": "importer_done"}),
            5 => json!({"type": "x", "importerKey": "x",
                        "ts": {"$date": {"$numberLong": "99999999999999999999"}}}),
            6 => json!({"type": "CSV", "importerKey": "csv", "deep": nested(120 + k % 10)}),
            7 => json!({"_id": op_id, "count": {"total": -1}}),
            8 => json!({"_id": op_id, "_updatedAt": "garbage", "valid": "yes"}),
            // Extended JSON at its edges (src/domain/ejson.rs).
            9 => json!({"type": "x", "importerKey": "x", "ts": {"$date": 1e300}}),
            10 => json!({"type": "x", "importerKey": "x", "ts": {"$date": "not a date"}}),
            11 => json!({"type": "x", "importerKey": "x",
                         "ts": {"$date": {"$numberLong": "-99999999999999999"}}}),
            12 => json!({"_id": op_id, "count": {"total": {"$numberLong": "abc"}}}),
            13 => json!({"type": {"$oid": 5}, "importerKey": {"$numberInt": "x"}, "user": []}),
            14 => json!({"_id": {"$oid": "64d69545ee8ae821983005f5"}, "status": "importer_done"}),
            _ => json!({"type": "x".repeat(20_000), "importerKey": "csv", "status": "importer_new",
                        "fileData": {"users": (0..2000).map(|i| json!({"user_id": i})).collect::<Vec<_>>()}}),
        },
        _ => json!({}),
    };
    value.to_string()
}

fn deep_body(depth: usize, kind: DeepKind, closed: bool, in_field: bool) -> Vec<u8> {
    let mut open = String::new();
    let mut close = String::new();
    if in_field {
        open.push_str(r#"{"user":"admin","password":"#);
    }
    for i in 0..depth {
        let array = match kind {
            DeepKind::Arrays => true,
            DeepKind::Objects => false,
            DeepKind::Mixed => i % 2 == 0,
        };
        if array {
            open.push('[');
            close.push(']');
        } else {
            open.push_str(r#"{"a":"#);
            close.push('}');
        }
    }
    let mut close: String = close.chars().rev().collect();
    open.push('1');
    if in_field {
        close.push('}');
    }
    if closed {
        open.push_str(&close);
    }
    open.into_bytes()
}

fn huge_body(len: usize, fill: HugeFill) -> Vec<u8> {
    match fill {
        HugeFill::JsonString => {
            let head = br#"{"user":"admin","password":""#;
            let mut v = Vec::with_capacity(len);
            v.extend_from_slice(head);
            v.resize(len.saturating_sub(2).max(head.len()), b'x');
            v.extend_from_slice(b"\"}");
            v
        }
        HugeFill::JsonArray => {
            let mut v = Vec::with_capacity(len);
            v.push(b'[');
            while v.len() + 2 < len {
                v.extend_from_slice(b"0,");
            }
            v.extend_from_slice(b"0]");
            v
        }
        HugeFill::Whitespace => {
            let mut v = vec![b' '; len.saturating_sub(2)];
            v.extend_from_slice(b"{}");
            v
        }
        HugeFill::Garbage => (0..len).map(|i| (i * 131 % 251) as u8).collect(),
    }
}

/// A JSON object of exactly `len` bytes (at least 12).
fn json_of_len(len: usize) -> Vec<u8> {
    let mut v = br#"{"user":""#.to_vec();
    v.resize(len - 2, b'a');
    v.extend_from_slice(b"\"}");
    v
}

fn body_bytes(spec: &BodySpec, route: Option<usize>, world: &World) -> Option<Vec<u8>> {
    Some(match spec {
        BodySpec::None => return None,
        BodySpec::Empty => Vec::new(),
        BodySpec::Valid(k) => valid_body(route, *k, world).into_bytes(),
        BodySpec::Json(v) => v.to_string().into_bytes(),
        BodySpec::Truncated(k, cut) => {
            let mut v = valid_body(route, *k, world).into_bytes();
            v.truncate(v.len() * usize::from(*cut) / 1000);
            v
        }
        BodySpec::Deep {
            depth,
            kind,
            closed,
            in_field,
        } => deep_body(*depth, *kind, *closed, *in_field),
        BodySpec::Huge { len, fill } => huge_body(*len, *fill),
        BodySpec::Boundary(delta) => {
            json_of_len((MAX_BODY_BYTES as isize + isize::from(*delta)) as usize)
        }
        BodySpec::InvalidUtf8 { bytes, in_string } => {
            if *in_string {
                let mut v = br#"{"user":""#.to_vec();
                v.extend_from_slice(bytes);
                v.extend_from_slice(br#"","password":"x"}"#);
                v
            } else {
                bytes.clone()
            }
        }
        BodySpec::Garbage(bytes) => bytes.clone(),
        BodySpec::Fragment(text) => text.as_bytes().to_vec(),
    })
}

fn value_bytes(spec: &ValueSpec, creds: &Creds) -> Vec<u8> {
    match spec {
        ValueSpec::Empty => Vec::new(),
        ValueSpec::Text(t) => t.clone().into_bytes(),
        ValueSpec::Sql(t) | ValueSpec::Json(t) => t.as_bytes().to_vec(),
        ValueSpec::Bytes(b) => b.clone(),
        ValueSpec::Long { len, byte } => {
            // One visible byte first, so that a value of tabs or spaces is not all whitespace.
            let mut v = vec![*byte; *len];
            v[0] = b'x';
            v
        }
        ValueSpec::Known(which) => match which % 4 {
            0 => creds.admin.user_id.clone(),
            1 => creds.admin.token.clone(),
            2 => creds.viewer.user_id.clone(),
            _ => creds.viewer.token.clone(),
        }
        .into_bytes(),
    }
}

fn header_value(bytes: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(bytes).expect("generated header values use only allowed bytes")
}

/// Every byte outside what a URI may hold, percent-encoded.
fn encode_uri(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%?".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn repeat_to(unit: &str, len: usize) -> String {
    let mut s = unit.repeat(len / unit.len().max(1) + 1);
    s.truncate(len);
    s
}

fn path_string(spec: &PathSpec) -> (String, Option<usize>) {
    match spec {
        PathSpec::Route(r) => (route_at(*r).path.to_owned(), Some(*r)),
        PathSpec::Absolute(r) => (
            format!("http://fuzz.example{}", route_at(*r).path),
            Some(*r),
        ),
        PathSpec::NearMiss(r, miss) => {
            let p = route_at(*r).path;
            let text = match miss {
                NearMiss::TrailingSlash => format!("{p}/"),
                NearMiss::DoubleSlash => p.replacen('/', "//", 2),
                NearMiss::Upper => p.to_uppercase(),
                NearMiss::DropLastChar => p[..p.len() - 1].to_owned(),
                NearMiss::Append(s) => format!("{p}/{s}"),
                NearMiss::PercentEncode(_) if p.len() == 1 => "/%2F".to_owned(),
                NearMiss::PercentEncode(i) => {
                    let i = 1 + i % (p.len() - 1);
                    format!("{}%{:02X}{}", &p[..i], p.as_bytes()[i], &p[i + 1..])
                }
                NearMiss::DotSegment => p
                    .replacen("/v1/", "/./v1/", 1)
                    .replacen("/api/", "/./api/", 1),
                NearMiss::DotDot => format!("/x/..{p}"),
                NearMiss::V2 => p.replace("/v1/", "/v2/"),
                NearMiss::NoApiPrefix => p.replacen("/api/v1", "", 1).replacen("/api", "", 1),
                NearMiss::Semicolon => format!("{p};jsessionid=1"),
                NearMiss::EncodedSlashes => p.replace('/', "%2F"),
                NearMiss::Prefix(s) => format!("/{s}{p}"),
            };
            // Some near misses are no miss at all (`/livez` upper-cased is not, ...): the
            // router's answer decides, the checks only use the exact text.
            (text, None)
        }
        PathSpec::Segments(segments) => (format!("/{}", segments.join("/")), None),
        PathSpec::Long { route, len, unit } => {
            let base = route.map_or("", |r| route_at(r).path);
            (format!("{base}/{}", repeat_to(unit, *len)), None)
        }
        PathSpec::Odd(p) => ((*p).to_owned(), None),
    }
}

fn query_string(spec: &QuerySpec) -> Option<String> {
    match spec {
        QuerySpec::None => None,
        QuerySpec::Empty => Some(String::new()),
        QuerySpec::Pairs(pairs) => Some(
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&"),
        ),
        QuerySpec::Raw(q) => Some((*q).to_owned()),
        QuerySpec::Huge { len, unit } => Some(repeat_to(unit, *len)),
    }
}

/// A body that arrives in chunks and does not announce its size.
struct Chunked {
    data: Bytes,
    chunk: usize,
}

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.chunk.min(self.data.len());
        let chunk = self.data.split_to(n);
        Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }
}

fn build(case: &Case, world: &World) -> (Request<Body>, Info) {
    let creds = world.creds();
    let (path, route) = path_string(&case.path);
    let method = match &case.method {
        MethodSpec::Routes => route.map_or("GET", |r| route_at(r).method).to_owned(),
        MethodSpec::Named(m) => (*m).to_owned(),
        MethodSpec::Token(t) => t.clone(),
        MethodSpec::Long(n) => repeat_to("LONGMETHOD", *n),
    };
    let method = Method::from_bytes(method.as_bytes()).expect("generated methods are tokens");

    let mut uri_text = path;
    if let Some(query) = query_string(&case.query) {
        uri_text.push('?');
        uri_text.push_str(&query);
    }
    let mut uri_fallback = false;
    let uri = match Uri::try_from(uri_text.as_str()) {
        Ok(uri) => uri,
        Err(_) => {
            uri_fallback = true;
            let mut encoded = encode_uri(&uri_text);
            if !encoded.starts_with('/') && !encoded.starts_with("http://") {
                encoded.insert(0, '/');
            }
            let mut end = encoded.len().min(MAX_URI_LEN);
            while !encoded.is_char_boundary(end) {
                end -= 1;
            }
            encoded.truncate(end);
            // A truncated `%X` escape is fine: the URI keeps it as text.
            Uri::try_from(encoded.as_str()).unwrap_or_else(|_| {
                // Still no URI (`//`, ...): everything but letters and digits encoded.
                let all: String = uri_text
                    .bytes()
                    .take(MAX_URI_LEN / 3 - 1)
                    .map(|b| {
                        if b.is_ascii_alphanumeric() {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                let all = format!("/{all}");
                Uri::try_from(all.as_str())
                    .unwrap_or_else(|e| panic!("an encoded URI parses ({e}): {all:?}"))
            })
        }
    };

    let mut headers = HeaderMap::new();
    let id = HeaderName::from_static("x-user-id");
    let tok = HeaderName::from_static("x-auth-token");
    let (admin, viewer) = (&creds.admin, &creds.viewer);
    let mut add = |name: &HeaderName, value: &str| {
        headers.append(name.clone(), header_value(value.as_bytes()));
    };
    match &case.creds {
        CredSpec::None => {}
        CredSpec::Admin => {
            add(&id, &admin.user_id);
            add(&tok, &admin.token);
        }
        CredSpec::Viewer => {
            add(&id, &viewer.user_id);
            add(&tok, &viewer.token);
        }
        CredSpec::AdminWrongToken => {
            add(&id, &admin.user_id);
            add(&tok, &format!("{}x", admin.token));
        }
        CredSpec::ViewerIdAdminToken => {
            add(&id, &viewer.user_id);
            add(&tok, &admin.token);
        }
        CredSpec::AdminDuplicateId => {
            add(&id, &admin.user_id);
            add(&id, &admin.user_id);
            add(&tok, &admin.token);
        }
        CredSpec::AdminDuplicateToken => {
            add(&id, &admin.user_id);
            add(&tok, &admin.token);
            add(&tok, &admin.token);
        }
        CredSpec::AdminIdOnly => add(&id, &admin.user_id),
        CredSpec::AdminTokenOnly => add(&tok, &admin.token),
        CredSpec::AdminTokenPadded => {
            add(&id, &admin.user_id);
            add(&tok, &format!(" {}\t", admin.token));
        }
        CredSpec::Values(a, b) => {
            headers.append(id.clone(), header_value(&value_bytes(a, &creds)));
            headers.append(tok.clone(), header_value(&value_bytes(b, &creds)));
        }
    }

    let ct = header::CONTENT_TYPE;
    match case.content_type {
        CtSpec::None => {}
        CtSpec::Json => {
            headers.append(&ct, HeaderValue::from_static("application/json"));
        }
        CtSpec::JsonCharset => {
            headers.append(
                &ct,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
        }
        CtSpec::JsonUpper => {
            headers.append(&ct, HeaderValue::from_static("Application/JSON"));
        }
        CtSpec::JsonSpaces => {
            headers.append(&ct, HeaderValue::from_static("  application/json  ;x=y"));
        }
        CtSpec::Text => {
            headers.append(&ct, HeaderValue::from_static("text/plain"));
        }
        CtSpec::Form => {
            headers.append(
                &ct,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        }
        CtSpec::Multipart => {
            headers.append(
                &ct,
                HeaderValue::from_static("multipart/form-data; boundary=x"),
            );
        }
        CtSpec::NotUtf8 => {
            headers.append(&ct, header_value(b"application/json\xff"));
        }
        CtSpec::Empty => {
            headers.append(&ct, HeaderValue::from_static(""));
        }
        CtSpec::Twice => {
            headers.append(&ct, HeaderValue::from_static("application/json"));
            headers.append(&ct, HeaderValue::from_static("text/plain"));
        }
    }

    let mut boundary = None;
    for spec in &case.headers {
        match spec {
            HeaderSpec::One(name, value) => {
                let name = match name {
                    NameSpec::Known(n) => HeaderName::from_static(n),
                    NameSpec::Random(n) => {
                        HeaderName::from_bytes(n.as_bytes()).expect("a header name")
                    }
                };
                headers.append(name, header_value(&value_bytes(value, &creds)));
            }
            HeaderSpec::Many { count, len } => {
                for i in 0..*count {
                    let name = HeaderName::from_bytes(format!("x-fuzz-{i}").as_bytes()).unwrap();
                    headers.append(name, header_value(&vec![b'v'; *len]));
                }
            }
            HeaderSpec::Boundary(delta) => boundary = Some(*delta),
        }
    }

    let body = body_bytes(&case.body, route, world);
    let body_len = body.as_ref().map_or(0, Vec::len);
    let cl = header::CONTENT_LENGTH;
    match &case.length {
        LenSpec::None => {}
        LenSpec::Correct => {
            headers.insert(&cl, HeaderValue::from(body_len));
        }
        LenSpec::Zero => {
            headers.insert(&cl, HeaderValue::from(0u64));
        }
        LenSpec::Small(n) => {
            headers.insert(&cl, HeaderValue::from(u16::from(*n)));
        }
        LenSpec::Huge(n) => {
            headers.insert(&cl, HeaderValue::from(*n));
        }
        LenSpec::Invalid(text) => {
            headers.insert(&cl, HeaderValue::from_static(text));
        }
        LenSpec::Twice(n) => {
            headers.insert(&cl, HeaderValue::from(body_len));
            headers.append(&cl, HeaderValue::from(*n));
        }
    }

    let count_bytes = |headers: &HeaderMap| -> usize {
        headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum()
    };
    if let Some(delta) = boundary {
        // One more header brings the total to exactly the limit + delta, when it can.
        let name = HeaderName::from_static("x-fuzz-pad");
        let target = (MAX_HEADER_BYTES as isize + isize::from(delta)) as usize;
        let have = count_bytes(&headers) + name.as_str().len();
        if have < target {
            headers.append(name, header_value(&vec![b'p'; target - have]));
        }
    }

    let single = |name: &HeaderName| -> Option<String> {
        let mut all = headers.get_all(name).iter();
        let first = all.next()?;
        match all.next() {
            Some(_) => None,
            None => first.to_str().ok().map(str::to_owned),
        }
    };
    let header_bytes = count_bytes(&headers);
    let info = Info {
        method: method.clone(),
        path: uri.path().to_owned(),
        uri_len: uri.to_string().len(),
        uri_fallback,
        header_bytes,
        header_fields: headers.len(),
        announced: headers
            .get(&cl)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok()),
        body_len,
        json_content_type: headers
            .get(&ct)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")),
        admin: single(&id).as_deref() == Some(admin.user_id.as_str())
            && single(&tok).as_deref() == Some(admin.token.as_str()),
        viewer: single(&id).as_deref() == Some(viewer.user_id.as_str())
            && single(&tok).as_deref() == Some(viewer.token.as_str()),
        no_query: uri.query().is_none_or(str::is_empty),
        no_credentials: !headers.contains_key(&id) && !headers.contains_key(&tok),
        token: single(&tok),
    };
    drop(creds);

    let body = match (body, case.chunked) {
        (None, _) => Body::empty(),
        (Some(bytes), None) => Body::from(bytes),
        (Some(bytes), Some(chunk)) => Body::new(Chunked {
            data: Bytes::from(bytes),
            chunk,
        }),
    };
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    (request, info)
}

// ---------------------------------------------------------------------------------------------
// The checks.

/// What the answer must be, beyond the invariants every answer keeps; `None`: any allowed one.
fn expected_status(info: &Info, header_bytes: usize) -> Option<(u16, &'static str)> {
    if header_bytes > MAX_HEADER_BYTES || info.header_fields > MAX_HEADER_FIELDS {
        return Some((431, "headers over 32 KiB or 100 fields"));
    }
    if info.announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        // The upload's path has its own, larger limit (tests/import_files.rs checks it).
        if UPLOAD_ROUTES.contains(&info.path.as_str()) {
            return None;
        }
        return Some((413, "a Content-Length over 1 MiB"));
    }
    let route = ROUTES.iter().find(|r| {
        r.path == info.path
            && (info.method.as_str() == r.method
                || (r.method == "GET" && info.method == Method::HEAD))
    });
    if info.method == Method::OPTIONS && (info.path == "/api" || info.path.starts_with("/api/")) {
        // Answered by the front line: 200, or 405 for a pre-flight (checked by the caller).
        return None;
    }
    let Some(route) = route else {
        return Some((404, "no such route or method"));
    };
    if info.body_len > MAX_BODY_BYTES
        && info.json_content_type
        && (route.access == Access::OpenJson
            || (route.access == Access::AdminJson && info.admin)
            || (route.access == Access::AdminAction
                && info.admin
                && info.method == Method::POST
                && !UPLOAD_ROUTES.contains(&info.path.as_str())
                // `import.run` has no schema in Rocket.Chat: its body is never read.
                && info.path != "/api/v1/import.run")
            || (route.access == Access::AuthJson && (info.admin || info.viewer)))
    {
        return Some((413, "a body over 1 MiB that the route reads"));
    }
    let get = info.method != Method::POST;
    match route.access {
        Access::Open | Access::OpenPage => Some((200, "an open route")),
        Access::OpenJson => None,
        _ if info.no_credentials => Some((401, "no credentials")),
        Access::AdminOnly | Access::AdminJson | Access::AdminAction if info.viewer => {
            Some((403, "the viewer on an admin's route"))
        }
        // The admin holds every permission and is never rate limited.
        Access::Auth | Access::AdminOnly if info.admin && (!get || info.no_query) => {
            Some((200, "the admin on a route without parameters"))
        }
        _ => None,
    }
}

/// Whether `text` is one JSON value. serde_json stops at 128 levels; deeper (valid) answers,
/// which stored documents nested near that limit can make, are checked without recursion.
fn is_json(text: &[u8]) -> bool {
    match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
        Ok(_) => true,
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => deep_json_ok(text),
        Err(_) => false,
    }
}

fn deep_json_ok(s: &[u8]) -> bool {
    #[derive(PartialEq)]
    enum Ctx {
        Array,
        Object,
    }
    fn ws(s: &[u8], i: &mut usize) {
        while s.get(*i).is_some_and(|b| b" \t\r\n".contains(b)) {
            *i += 1;
        }
    }
    fn string(s: &[u8], i: &mut usize) -> bool {
        let start = *i;
        if s.get(*i) != Some(&b'"') {
            return false;
        }
        *i += 1;
        loop {
            match s.get(*i) {
                None => return false,
                Some(b'\\') => *i += 2,
                Some(b'"') => {
                    *i += 1;
                    return serde_json::from_slice::<String>(&s[start..*i]).is_ok();
                }
                Some(_) => *i += 1,
            }
        }
    }
    fn key(s: &[u8], i: &mut usize) -> bool {
        ws(s, i);
        if !string(s, i) {
            return false;
        }
        ws(s, i);
        if s.get(*i) != Some(&b':') {
            return false;
        }
        *i += 1;
        true
    }
    let mut stack = Vec::new();
    let mut i = 0;
    loop {
        // A value.
        ws(s, &mut i);
        match s.get(i) {
            Some(b'[') => {
                i += 1;
                ws(s, &mut i);
                if s.get(i) == Some(&b']') {
                    i += 1;
                } else {
                    stack.push(Ctx::Array);
                    continue;
                }
            }
            Some(b'{') => {
                i += 1;
                ws(s, &mut i);
                if s.get(i) == Some(&b'}') {
                    i += 1;
                } else {
                    stack.push(Ctx::Object);
                    if !key(s, &mut i) {
                        return false;
                    }
                    continue;
                }
            }
            Some(b'"') => {
                if !string(s, &mut i) {
                    return false;
                }
            }
            Some(_) => {
                let start = i;
                while s.get(i).is_some_and(|b| !b",]} \t\r\n".contains(b)) {
                    i += 1;
                }
                if serde_json::from_slice::<Value>(&s[start..i]).is_err() {
                    return false;
                }
            }
            None => return false,
        }
        // After a value: close containers, or go on to the next value.
        loop {
            ws(s, &mut i);
            match (stack.last(), s.get(i)) {
                (None, _) => return i == s.len(),
                (Some(_), Some(b',')) => {
                    i += 1;
                    if stack.last() == Some(&Ctx::Object) && !key(s, &mut i) {
                        return false;
                    }
                    break;
                }
                (Some(Ctx::Array), Some(b']')) | (Some(Ctx::Object), Some(b'}')) => {
                    i += 1;
                    stack.pop();
                }
                _ => return false,
            }
        }
    }
}

fn check_answer(
    info: &Info,
    header_bytes: usize,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    if !ALLOWED_STATUSES.contains(&status) {
        return Err(format!(
            "status {status} is not one of {ALLOWED_STATUSES:?}"
        ));
    }
    if let Some((expected, why)) = expected_status(info, header_bytes)
        && status != expected
    {
        return Err(format!("status {status}, expected {expected} ({why})"));
    }
    // And the limits' statuses only for what is over the limits.
    if status == 431 && header_bytes <= MAX_HEADER_BYTES && info.header_fields <= MAX_HEADER_FIELDS
    {
        return Err(format!("431 for {header_bytes} bytes of headers"));
    }
    if status == 413
        && info.body_len <= MAX_BODY_BYTES
        && info.announced.is_none_or(|n| n <= MAX_BODY_BYTES as u64)
    {
        return Err(format!("413 for a body of {} bytes", info.body_len));
    }
    // OPTIONS under /api: Rocket.Chat's router answers it in plain text, before any route's
    // checks (apps/meteor/server/api/v1/middlewares/cors.ts, packages/http-router/src/Router.ts);
    // CORS is off here, so a pre-flight gets 405 (docs/compatibility.md#4-6-cors).
    if info.method == Method::OPTIONS
        && (info.path == "/api" || info.path.starts_with("/api/"))
        && status != 413
        && status != 431
    {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let text = std::str::from_utf8(body).unwrap_or_default();
        let expected = match status {
            200 => "OK",
            405 => "CORS not enabled. Go to \"Admin > General > REST Api\" to enable it.",
            _ => return Err(format!("OPTIONS under /api answered {status}")),
        };
        if text != expected || content_type != Some("text/plain;charset=UTF-8") {
            return Err(format!("OPTIONS under /api: {content_type:?} {text:?}"));
        }
        return Ok(());
    }
    let page = status == 200
        && ROUTES
            .iter()
            .any(|r| r.access == Access::OpenPage && r.path == info.path);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if page {
        // The dashboard and the metrics are not JSON, by design.
        return if info.method != Method::HEAD || body.is_empty() {
            Ok(())
        } else {
            Err(format!("a HEAD answer has a body of {} bytes", body.len()))
        };
    }
    if !content_type.is_some_and(|ct| ct.starts_with("application/json")) {
        return Err(format!(
            "Content-Type {content_type:?}, expected application/json"
        ));
    }
    if headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        != Some("no-store")
    {
        return Err("no Cache-Control: no-store".into());
    }
    let rate_limit_header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // (`login` ignores the credential headers: it is limited for everyone.)
    let authenticated_route = ROUTES.iter().any(|r| {
        r.path == info.path
            && matches!(
                r.access,
                Access::Auth
                    | Access::AdminOnly
                    | Access::AdminJson
                    | Access::AuthJson
                    | Access::AdminAction
            )
    });
    if info.admin && authenticated_route && rate_limit_header("x-ratelimit-limit").is_some() {
        return Err("rate-limit headers for the admin, who holds api-bypass-rate-limit".into());
    }
    if status == 429
        && (
            rate_limit_header("x-ratelimit-limit"),
            rate_limit_header("x-ratelimit-remaining"),
        ) != (Some("10"), Some("0"))
    {
        return Err("a 429 without X-RateLimit-Limit: 10 and X-RateLimit-Remaining: 0".into());
    }
    if info.method == Method::HEAD {
        if !body.is_empty() {
            return Err(format!("a HEAD answer has a body of {} bytes", body.len()));
        }
        return Ok(());
    }
    if !is_json(body) {
        return Err("the body is not JSON".into());
    }
    if status == 200 {
        // Rocket.Chat's success bodies: a bare array, or an object with "success": true.
        let bare_array = [
            "/api/v1/getLatestImportOperations",
            "/api/v1/importers.list",
        ];
        if bare_array.contains(&info.path.as_str()) {
            if !body.starts_with(b"[") {
                return Err("a success body that is not the bare array".into());
            }
        } else if info.path.starts_with("/api/") && info.path != "/api/v1/openapi.json" {
            let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if value.get("success") != Some(&Value::Bool(true)) {
                return Err("a success body without \"success\": true".into());
            }
        }
        return Ok(());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("error body: {e}"))?;
    if value.get("success") != Some(&Value::Bool(false)) {
        return Err("an error body without \"success\": false".into());
    }
    let Some(error) = value.get("error").and_then(Value::as_str) else {
        return Err("an error body without a string \"error\"".into());
    };
    let text = std::str::from_utf8(body).unwrap_or_default();
    let fixed = match status {
        401 => (text != UNAUTHORIZED && text != LOGIN_FAILED && !LOGIN_BLOCKED.contains(&text))
            .then_some("Rocket.Chat's 401 bodies"),
        403 => (text != FORBIDDEN).then_some(FORBIDDEN),
        404 => (text != NOT_FOUND).then_some(NOT_FOUND),
        413 => (text != PAYLOAD_TOO_LARGE).then_some(PAYLOAD_TOO_LARGE),
        431 => (text != HEADERS_TOO_LARGE).then_some(HEADERS_TOO_LARGE),
        429 => {
            let seconds = error
                .strip_prefix(TOO_MANY_PREFIX)
                .and_then(|rest| rest.strip_suffix(TOO_MANY_SUFFIX));
            // Retry-After (docs/compatibility.md#9-retry-after) is the body's S.
            let retry_after = headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok());
            if retry_after != seconds {
                return Err(format!(
                    "a 429 with Retry-After {retry_after:?}, its body waits {seconds:?} s"
                ));
            }
            (!seconds.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| (1..=60).contains(&s))))
                .then_some("Rocket.Chat's 429 body, waiting 1..=60 s")
        }
        // The import workflow's actions also answer Rocket.Chat's plain errors, without errorType.
        400 if action_route(info) => None,
        400 => (!value.get("errorType").is_some_and(Value::is_string))
            .then_some("a 400 with a string errorType"),
        _ => None,
    };
    match fixed {
        Some(expected) => Err(format!("unexpected {status} body, expected {expected}")),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// The runner.

#[derive(Default)]
struct Stats {
    statuses: BTreeMap<u16, u64>,
    failures: Vec<String>,
    /// The request number of the first failure: the ones after it were proptest shrinking it.
    first_failure_at: u64,
    uri_fallbacks: u64,
    expected: BTreeMap<u16, u64>,
    /// The slowest request, and the time spent in each tenth of the run (a slowdown as the
    /// database grows would show there).
    slowest: (Duration, String),
    tenths: [Duration; 10],
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {text:?}")),
        Err(_) => default,
    }
}

/// Sends one request; the answer or what went wrong (a hang, a panic).
async fn send(router: Router, request: Request<Body>) -> Result<(u16, HeaderMap, Bytes), String> {
    let task = tokio::spawn(async move {
        let response = router
            .oneshot(request)
            .await
            .unwrap_or_else(|e: Infallible| match e {});
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("the body failed: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, headers, body))
    });
    let abort = task.abort_handle();
    match tokio::time::timeout(REQUEST_TIMEOUT, task).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(join)) => Err(format!("the request task failed (panic?): {join}")),
        Err(_) => {
            abort.abort();
            Err(format!("no answer within {REQUEST_TIMEOUT:?}: a hang"))
        }
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

fn describe(info: &Info) -> String {
    format!(
        "{} {} (uri {} bytes{}), headers {} bytes, Content-Length {:?}, body {} bytes, json \
         content-type {}, admin {}, no credentials {}",
        shorten(info.method.as_str(), 40),
        shorten(&info.path, 120),
        info.uri_len,
        if info.uri_fallback { ", encoded" } else { "" },
        info.header_bytes,
        info.announced,
        info.body_len,
        info.json_content_type,
        info.admin,
        info.no_credentials,
    )
}

#[test]
fn generated_requests_keep_the_invariants() {
    let cases = env_number("IMPORTOPS_FUZZ_CASES", 3000);
    let cases = u32::try_from(cases).expect("IMPORTOPS_FUZZ_CASES fits in 32 bits");
    let seed = env_number("IMPORTOPS_FUZZ_SEED", rand::random::<u64>());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let db = TestDb::sqlite();
    let world = rt.block_on(World::new(&db));

    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 400,
        max_global_rejects: 0,
        ..Config::default()
    };
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );

    let stats = Mutex::new(Stats::default());
    let requests = AtomicU64::new(0);
    let started = Instant::now();
    let result = runner.run(&case(), |case| {
        let (request, info) = build(&case, &world);
        requests.fetch_add(1, Ordering::Relaxed);
        let sent_at = Instant::now();
        let answer = rt.block_on(send(world.router.clone(), request));
        let took = sent_at.elapsed();
        let mut stats = stats.lock().unwrap_or_else(|e| e.into_inner());
        if took > stats.slowest.0 {
            stats.slowest = (took, describe(&info));
        }
        let tenth = (requests.load(Ordering::Relaxed) - 1) * 10 / u64::from(cases.max(1));
        if let Some(slot) = stats.tenths.get_mut(tenth as usize) {
            *slot += took;
        }
        if info.uri_fallback {
            stats.uri_fallbacks += 1;
        }
        if let Some((status, _)) = expected_status(&info, info.header_bytes) {
            *stats.expected.entry(status).or_default() += 1;
        }
        let outcome = answer.and_then(|(status, headers, body)| {
            *stats.statuses.entry(status).or_default() += 1;
            rt.block_on(world.repair(&info, status));
            check_answer(&info, info.header_bytes, status, &headers, &body).map_err(|e| {
                let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                format!("{e}; answer {status} {shown:?}")
            })
        });
        match outcome {
            Ok(()) => Ok(()),
            Err(e) => {
                let message = format!("{e}\n  request: {}", describe(&info));
                if stats.failures.is_empty() {
                    stats.first_failure_at = requests.load(Ordering::Relaxed);
                }
                stats.failures.push(message.clone());
                Err(TestCaseError::fail(message))
            }
        }
    });
    let elapsed = started.elapsed();

    let stats = stats.into_inner().unwrap_or_else(|e| e.into_inner());
    let sent = requests.load(Ordering::Relaxed);
    let mut counts: BTreeMap<u16, u64> = ALLOWED_STATUSES.iter().map(|s| (*s, 0)).collect();
    counts.extend(stats.statuses.iter().map(|(s, n)| (*s, *n)));
    let counts = counts
        .iter()
        .map(|(s, n)| format!("{s}={n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let expected = stats
        .expected
        .iter()
        .map(|(s, n)| format!("{s}={n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let shrinking = if stats.failures.is_empty() {
        String::new()
    } else {
        format!(
            " (the first at request {}, the others while proptest shrank it)",
            stats.first_failure_at
        )
    };
    eprintln!(
        "fuzz: {sent} requests: {counts}; {} failures{shrinking}",
        stats.failures.len()
    );
    eprintln!(
        "fuzz: seed {seed}, {cases} cases, {:.1} s, statuses predicted exactly: {expected}; \
         {} URIs percent-encoded to parse, {} repairs (logout, deleted user, permissions)",
        elapsed.as_secs_f64(),
        stats.uri_fallbacks,
        world.repairs.load(Ordering::Relaxed),
    );
    let tenths = stats
        .tenths
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!(
        "fuzz: seconds in requests per tenth of the run: {tenths}; slowest {:.0} ms: {}",
        stats.slowest.0.as_secs_f64() * 1000.0,
        stats.slowest.1
    );
    if let Some(first) = stats.failures.first() {
        // The first failure as generated; proptest's minimal one is in the panic below.
        eprintln!("fuzz: first failure: {first}");
    }
    match result {
        Ok(()) => {
            assert!(stats.failures.is_empty());
            // Each case is one request; no case was skipped.
            assert_eq!(sent, u64::from(cases), "the property ran every case");
        }
        Err(e) => panic!("fuzz: an invariant failed (seed {seed}): {e}"),
    }
}

/// The route table above is the router's: the document lists what the router serves (both come
/// from one declaration, and `tests/openapi.rs` calls every documented operation), so a route
/// added to the router must be fuzzed.
#[test]
fn the_route_table_is_the_documents() {
    let doc = serde_json::to_value(importops::http::openapi::document_for(true))
        .expect("the document as JSON");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    let mut ours: Vec<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .chain(
            NOT_FUZZED
                .iter()
                .map(|(m, p)| ((*m).to_owned(), (*p).to_owned())),
        )
        .collect();
    documented.sort();
    ours.sort();
    assert_eq!(
        documented, ours,
        "tests/fuzz.rs ROUTES must list the router's routes"
    );
}

/// The JSON check itself: serde_json's answer, and past its depth limit the iterative one.
#[test]
fn the_json_check_accepts_json_only() {
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let deep_objects = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
    for good in [
        "[]".to_owned(),
        r#"{"a":[1,{"b":"c\"d"}],"e":null}"#.to_owned(),
        deep(10_000),
        deep_objects(10_000),
        format!(r#"{{"x":{}, "y" : [ true , "s" ] }}"#, deep(500)),
    ] {
        assert!(is_json(good.as_bytes()), "{}", shorten(&good, 60));
    }
    for bad in [
        String::new(),
        "[".to_owned(),
        "[1,]".to_owned(),
        r#"{"a"}"#.to_owned(),
        "[] []".to_owned(),
        format!("{}1{}", "[".repeat(10_000), "]".repeat(9_999)),
        format!("{}1{}}}", "[".repeat(500), "]".repeat(499)),
        format!(r#"{}{{"a" 1}}{}"#, "[".repeat(500), "]".repeat(500)),
        format!("{}nul{}", "[".repeat(500), "]".repeat(500)),
    ] {
        assert!(!is_json(bad.as_bytes()), "{}", shorten(&bad, 60));
    }
}

/// Found by the fuzzer (minimal inputs): the 32 KiB header limit counts the headers the client
/// sent, not the X-Request-Id the server puts in: headers of exactly 32 KiB pass, and an
/// oversized X-Request-Id is refused before it could be replaced.
#[test]
fn the_header_limit_counts_the_clients_headers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let db = TestDb::sqlite();
        let app = TestApp::new(&db).await;
        let request = |name: &'static str, len: usize| {
            Request::get("/livez")
                .header(name, "p".repeat(len))
                .body(Body::empty())
                .unwrap()
        };
        // Headers of exactly the limit: `x-pad` (5 bytes) and a value of 32 763.
        let at_limit = app.request(request("x-pad", MAX_HEADER_BYTES - 5)).await;
        // One X-Request-Id of 40 000 bytes: over the limit.
        let over = app.request(request("x-request-id", 40_000)).await;
        assert_eq!(
            (at_limit.status.as_u16(), over.status.as_u16()),
            (200, 431),
            "32 768 bytes of headers, then 40 012 (an X-Request-Id): {at_limit:?} {over:?}"
        );
    });
}

/// Found by the long run (requests got slower as it went, `GET /metrics` the slowest): metrics
/// must not label series with methods the client makes up, or every new method adds series
/// without end; standard methods are labelled as they are, the rest as `other`.
#[test]
fn metrics_do_not_label_by_the_clients_own_methods() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let db = TestDb::sqlite();
        let app = TestApp::new(&db).await;
        for i in 0..200 {
            let method = Method::from_bytes(format!("FUZZ-{i}").as_bytes()).unwrap();
            let request = Request::builder()
                .method(method)
                .uri("/livez")
                .body(Body::empty())
                .unwrap();
            assert_eq!(app.request(request).await.status.as_u16(), 404);
        }
        let metrics = app.get("/metrics", None).await;
        assert_eq!(metrics.status.as_u16(), 200);
        let series = metrics.body.matches("method=\"FUZZ-").count();
        assert_eq!(series, 0, "series labelled with 200 client-made methods");
    });
}
