//! Rocket.Chat's Slack importer (key `slack`, name `Slack`; docs/compatibility.md, "The Slack
//! importer"): a Slack export zip of `users.json`, `channels.json`, `groups.json`,
//! `mpims.json`, `dms.json` and one folder per conversation of per-day message files.
//!
//! Two passes over the archive's entries, as in Rocket.Chat: the first reads the five
//! listing files (each parsed whole: they list users and conversations, not messages); the
//! second the message files, each streamed twice (a check that it is a JSON array and its
//! length, then its messages one at a time), so that only the conversations' names and ids
//! stay in memory. A listing or message file that is not valid JSON is skipped with a
//! warning; where Rocket.Chat's code would stop on a value of the wrong type (a TypeError),
//! the rest of that file is skipped the same way.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde::de::{self, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde_json::{Map, Value, json};

use super::archive::{Archive, Entry};
use super::csv::{PREPARING_CHANNELS, PREPARING_MESSAGES, PREPARING_USERS, Prep};
use super::{Counts, DataType, ImportError, Limits, Sink, js};

/// `DirectMesssage_maxUsers`' default: a multi-person DM of more members is a private group.
pub const DIRECT_MESSAGE_MAX_USERS: usize = 8;

const LISTS: [&str; 5] = [
    "channels.json",
    "groups.json",
    "mpims.json",
    "dms.json",
    "users.json",
];

/// Why a file's reading stopped.
#[derive(Debug)]
enum Stop {
    /// The content is wrong (bad JSON, a value of the wrong type): the rest of the file is
    /// skipped with a warning.
    Skip(String),
    /// The archive or the sink failed: the import stops.
    Fatal(ImportError),
}

impl From<ImportError> for Stop {
    fn from(e: ImportError) -> Self {
        Stop::Fatal(e)
    }
}

fn type_error(what: &str) -> Stop {
    Stop::Skip(format!("TypeError: {what}"))
}

/// `slack-<channel>-<ts with every . as ->`, with `-file<suffix>` for a file.
pub fn message_id(channel: &str, ts: &str, file: Option<&str>) -> String {
    let base = format!("slack-{channel}-{}", ts.replace('.', "-"));
    match file {
        Some(suffix) => format!("{base}-file{suffix}"),
        None => base,
    }
}

/// `USLACKBOT` is Rocket.Chat's `rocket.cat`.
fn user_id(v: Option<&Value>) -> Option<Value> {
    match v {
        Some(Value::String(s)) if s == "USLACKBOT" => Some(Value::String("rocket.cat".into())),
        Some(v) => Some(v.clone()),
        None => None,
    }
}

fn user_ids(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Array(a)) => Value::Array(
            a.iter()
                .map(|u| user_id(Some(u)).unwrap_or(Value::Null))
                .collect(),
        ),
        _ => Value::Array(Vec::new()),
    }
}

fn u(v: Option<&Value>) -> Value {
    let mut m = Map::new();
    if let Some(id) = user_id(v) {
        m.insert("_id".into(), id);
    }
    Value::Object(m)
}

/// A JavaScript template literal's `${v}`.
fn js_string(v: Option<&Value>) -> String {
    match v {
        None => "undefined".into(),
        Some(Value::Null) => "null".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::Null => String::new(),
                other => js_string(Some(other)),
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Object(_)) => "[object Object]".into(),
    }
}

/// `new Date(parseInt(ts.split('.')[0]) * 1000)`; a `ts` that is not a string is a TypeError.
fn slack_date(ts: Option<&Value>, what: &str) -> Result<Value, Stop> {
    match ts {
        Some(Value::String(s)) => {
            let seconds = js::parse_int(s.split('.').next().unwrap_or_default());
            Ok(js::date(seconds.map(|s| s * 1000.0)))
        }
        _ => Err(type_error(&format!("{what} is not a string"))),
    }
}

static LINK_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<(https?:[^|]*)\|([^>]*)>").expect("a valid regex"));
static LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<(https?:[^>|]*)>").expect("a valid regex"));
static CHANNEL_LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<#([^|]*)\|([^>]*)>").expect("a valid regex"));
static USER_LINK_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<@([^|]*)\|([^>]*)>").expect("a valid regex"));
static USER_LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<@([^|>]*)>").expect("a valid regex"));
static MD_LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[[^\]]*\]\([^)]+\)").expect("a valid regex"));
static USER_MENTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?mR)(^|\s|>)@([0-9a-zA-Z]+(@([0-9a-zA-Z]+))?(:([0-9a-zA-Z\-_.]+))?)")
        .expect("a valid regex")
});
static CHANNEL_MENTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?mR)(^|\s|>)#([0-9a-zA-Z]+(@([0-9a-zA-Z]+))?)").expect("a valid regex")
});

/// Slack's markup as Rocket.Chat converts it, in Rocket.Chat's order.
pub fn convert_text(text: &str) -> String {
    let mut s = text
        .replace("<!everyone>", "@all")
        .replace("<!channel>", "@all")
        .replace("<!here>", "@here")
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&amp;", "&")
        .replace(":simple_smile:", ":smile:")
        .replace(":memo:", ":pencil:")
        .replace(":piggy:", ":pig:")
        .replace(":uk:", ":gb:");
    s = LINK.replace_all(&s, "${1}").into_owned();
    s = LINK_LABEL.replace_all(&s, "[${2}](${1})").into_owned();
    s = CHANNEL_LINK.replace_all(&s, "#${2}").into_owned();
    s = USER_LINK_LABEL.replace_all(&s, "@${1}").into_owned();
    s = USER_LINK.replace_all(&s, "@${1}").into_owned();
    s
}

/// `convertSlackMessageToRocketChat(v)`: a falsy value is `''`, a string is converted, anything
/// else is a TypeError.
fn convert_value(v: Option<&Value>) -> Result<String, Stop> {
    if !js::truthy(v) {
        return Ok(String::new());
    }
    match v {
        Some(Value::String(s)) => Ok(convert_text(s)),
        _ => Err(type_error("message.replace is not a function")),
    }
}

/// The user and channel mentions Rocket.Chat's MentionsParser finds in a converted text
/// (links in Markdown left out), each without its first character (`@`, `#`, or `>`).
pub fn mentions(msg: &str) -> (Vec<String>, Vec<String>) {
    let text = MD_LINK.replace_all(msg, "");
    let strip = |m: &str| {
        let t = js::trim(m);
        let mut chars = t.chars();
        chars.next();
        chars.as_str().to_owned()
    };
    let users = USER_MENTION
        .find_iter(&text)
        .map(|m| strip(m.as_str()))
        .map(|id| {
            if id == "USLACKBOT" {
                "rocket.cat".to_owned()
            } else {
                id
            }
        })
        .collect();
    let channels = CHANNEL_MENTION
        .find_iter(&text)
        .map(|m| strip(m.as_str()))
        .collect();
    (users, channels)
}

/// `convertSlackFileToPendingFile`.
fn pending_file(file: &Map<String, Value>) -> Value {
    let mut m = Map::new();
    for (to, from) in [
        ("downloadUrl", "url_private_download"),
        ("id", "id"),
        ("size", "size"),
        ("name", "name"),
        ("external", "is_external"),
    ] {
        if let Some(v) = file.get(from) {
            m.insert(to.into(), v.clone());
        }
    }
    m.insert("source".into(), "slack".into());
    m.insert("original".into(), Value::Object(file.clone()));
    Value::Object(m)
}

/// What one Slack message becomes: the staged messages, in Rocket.Chat's order (hidden file
/// messages first), and the subtypes Rocket.Chat does not import ("missed types").
pub fn convert_message(
    message: &Value,
    channel: &str,
    missed: &mut BTreeSet<String>,
) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    match convert_into(message, channel, missed, &mut out) {
        Ok(()) => Ok(out),
        Err(Stop::Skip(why)) => Err(why),
        Err(Stop::Fatal(e)) => Err(e.to_string()),
    }
}

fn convert_into(
    message: &Value,
    channel: &str,
    missed: &mut BTreeSet<String>,
    out: &mut Vec<Value>,
) -> Result<(), Stop> {
    let Some(m) = message.as_object() else {
        return Err(type_error("a message is not an object"));
    };
    let Some(Value::String(ts)) = m.get("ts") else {
        return Err(type_error("message.ts is not a string"));
    };
    let id = message_id(channel, ts, None);
    let date = slack_date(m.get("ts"), "message.ts")?;
    let mut msg = Map::new();
    msg.insert("_id".into(), id.clone().into());
    msg.insert("rid".into(), channel.into());
    msg.insert("ts".into(), date.clone());
    msg.insert("msg".into(), "".into());
    msg.insert("u".into(), u(m.get("user")));

    // Every reaction is kept, under its own `:name:` (docs/compatibility.md: Rocket.Chat keeps
    // only the last one).
    if let Some(Value::Array(reactions)) = m.get("reactions")
        && !reactions.is_empty()
    {
        let mut all = Map::new();
        for reaction in reactions {
            let Some(r) = reaction.as_object() else {
                if reaction.is_null() {
                    return Err(type_error("a reaction is null"));
                }
                continue;
            };
            let name = format!(":{}:", js_string(r.get("name")));
            if let Some(Value::Array(users)) = r.get("users")
                && !users.is_empty()
            {
                all.insert(
                    name.clone(),
                    json!({ "name": name, "users": user_ids(r.get("users")) }),
                );
            }
        }
        msg.insert("reactions".into(), Value::Object(all));
    }

    if m.get("type").and_then(Value::as_str) != Some("message") {
        return Ok(());
    }

    let thread_ts = m.get("thread_ts");
    let threaded_reply = js::truthy(thread_ts) && thread_ts != m.get("ts");
    let tmid = |thread_ts: Option<&Value>| -> Result<String, Stop> {
        match thread_ts {
            Some(Value::String(t)) => Ok(message_id(channel, t, None)),
            _ => Err(type_error("message.thread_ts.replace is not a function")),
        }
    };
    let hidden_file = |id: String, file: &Map<String, Value>| -> Result<Value, Stop> {
        let mut f = Map::new();
        f.insert("_id".into(), id.into());
        f.insert("rid".into(), channel.into());
        f.insert("ts".into(), date.clone());
        f.insert("msg".into(), "".into());
        f.insert("_hidden".into(), true.into());
        f.insert("_importFile".into(), pending_file(file));
        f.insert("u".into(), u(m.get("user")));
        if threaded_reply {
            f.insert("tmid".into(), tmid(thread_ts)?.into());
        }
        Ok(Value::Object(f))
    };

    if js::truthy(m.get("files")) {
        let Some(Value::Array(files)) = m.get("files") else {
            return Err(type_error("message.files.map is not a function"));
        };
        for (i, file) in files.iter().enumerate() {
            let Some(file) = file.as_object() else {
                return Err(type_error("a file is not an object"));
            };
            let index = (i + 1).to_string();
            out.push(hidden_file(message_id(channel, ts, Some(&index)), file)?);
        }
    }

    let subtype = m.get("subtype");
    let subtype_str = subtype.and_then(Value::as_str);
    let regular = matches!(subtype_str, Some("me_message" | "thread_broadcast"));
    let bot = matches!(subtype_str, Some("bot_message" | "slackbot_response"));

    if js::truthy(subtype) && !regular && !bot {
        let set_msg = |msg: &mut Map<String, Value>, v: Option<&Value>| match v {
            Some(v) => {
                msg.insert("msg".into(), v.clone());
            }
            None => {
                msg.shift_remove("msg");
            }
        };
        let staged = match subtype_str.unwrap_or_default() {
            "channel_join" | "group_join" => {
                msg.insert("t".into(), "uj".into());
                msg.insert("groupable".into(), false.into());
                true
            }
            "channel_leave" | "group_leave" => {
                msg.insert("t".into(), "ul".into());
                msg.insert("groupable".into(), false.into());
                true
            }
            "channel_purpose" | "group_purpose" => {
                msg.insert("t".into(), "room_changed_description".into());
                msg.insert("groupable".into(), false.into());
                set_msg(&mut msg, m.get("purpose"));
                true
            }
            "channel_topic" | "group_topic" => {
                msg.insert("t".into(), "room_changed_topic".into());
                msg.insert("groupable".into(), false.into());
                set_msg(&mut msg, m.get("topic"));
                true
            }
            "channel_name" | "group_name" => {
                msg.insert("t".into(), "r".into());
                set_msg(&mut msg, m.get("name"));
                msg.insert("groupable".into(), false.into());
                true
            }
            "pinned_item" => {
                // Converted but never staged (Rocket.Chat's handler answers false).
                if js::truthy(m.get("attachments")) {
                    let first = m.get("attachments").and_then(|a| a.get(0));
                    match first {
                        Some(a) if !a.is_null() => {
                            convert_value(a.get("text"))?;
                        }
                        _ => return Err(type_error("message.attachments[0] is undefined")),
                    }
                }
                false
            }
            "file_share" => {
                if let Some(file) = m.get("file").and_then(Value::as_object)
                    && js::truthy(file.get("url_private_download"))
                {
                    out.push(hidden_file(message_id(channel, ts, Some("share")), file)?);
                }
                false
            }
            "bot_add" | "file_comment" | "file_mention" => false,
            _ => {
                missed.insert(js_string(subtype));
                false
            }
        };
        if staged {
            out.push(Value::Object(msg));
        }
        return Ok(());
    }

    let text = convert_value(m.get("text"))?;
    if bot {
        msg.insert("bot".into(), true.into());
    }
    let text = if subtype_str == Some("me_message") {
        format!("_{text}_")
    } else {
        text
    };
    msg.insert("msg".into(), text.clone().into());

    if js::truthy(thread_ts) {
        if !threaded_reply {
            let mut replies: Vec<Value> = Vec::new();
            let mut add = |v: Value| {
                if !replies.contains(&v) {
                    replies.push(v);
                }
            };
            if js::truthy(m.get("reply_users")) {
                let Some(Value::Array(users)) = m.get("reply_users") else {
                    return Err(type_error("message.reply_users.forEach is not a function"));
                };
                for user in users {
                    add(user_id(Some(user)).unwrap_or(Value::Null));
                }
            } else if js::truthy(m.get("replies")) {
                let Some(Value::Array(items)) = m.get("replies") else {
                    return Err(type_error("message.replies.forEach is not a function"));
                };
                for item in items {
                    if item.is_null() {
                        return Err(type_error("a reply is null"));
                    }
                    add(user_id(item.get("user")).unwrap_or(Value::Null));
                }
            } else {
                tracing::warn!(
                    message = %id,
                    "Failed to import the parent comment; missing replies/reply_users field"
                );
            }
            if !replies.is_empty() {
                msg.insert("replies".into(), Value::Array(replies));
            }
            if let Some(count) = m.get("reply_count") {
                msg.insert("tcount".into(), count.clone());
            }
            msg.insert(
                "tlm".into(),
                slack_date(m.get("latest_reply"), "message.latest_reply")?,
            );
        } else {
            msg.insert("tmid".into(), tmid(thread_ts)?.into());
        }
    }

    if js::truthy(m.get("edited")) {
        let edited = m.get("edited").unwrap_or(&Value::Null);
        msg.insert(
            "editedAt".into(),
            slack_date(edited.get("ts"), "message.edited.ts")?,
        );
        if js::truthy(edited.get("user")) {
            msg.insert(
                "editedBy".into(),
                user_id(edited.get("user")).unwrap_or(Value::Null),
            );
        }
    }

    if js::truthy(m.get("attachments")) {
        if let Some(Value::Array(attachments)) = m.get("attachments") {
            if !attachments.is_empty() {
                let mut converted = Vec::with_capacity(attachments.len());
                for a in attachments {
                    if a.is_null() {
                        return Err(type_error("an attachment is null"));
                    }
                    let mut c = a.as_object().cloned().unwrap_or_default();
                    for key in ["text", "title", "fallback"] {
                        let v = convert_value(a.get(key))?;
                        c.insert(key.into(), v.into());
                    }
                    converted.push(Value::Object(c));
                }
                msg.insert("attachments".into(), Value::Array(converted));
            }
        } else if m.get("attachments").is_some_and(Value::is_string) {
            return Err(type_error("attachments.map is not a function"));
        }
    }

    if let Some(emoji) = m.get("icons").and_then(|i| i.get("emoji"))
        && js::truthy(Some(emoji))
    {
        msg.insert("emoji".into(), emoji.clone());
    }

    let (users, channels) = mentions(&text);
    if !users.is_empty() {
        msg.insert("mentions".into(), json!(users));
    }
    if !channels.is_empty() {
        msg.insert("channels".into(), json!(channels));
    }
    out.push(Value::Object(msg));
    Ok(())
}

/// A conversation of `channels.json`, `groups.json` or `mpims.json`.
fn channel_record(c: &Map<String, Value>, t: &str, general: bool) -> Value {
    let mut m = Map::new();
    if general && js::truthy(c.get("is_general")) {
        m.insert("_id".into(), "general".into());
    }
    m.insert("u".into(), u(c.get("creator")));
    m.insert(
        "importIds".into(),
        json!([c.get("id").cloned().unwrap_or(Value::Null)]),
    );
    if let Some(name) = c.get("name") {
        m.insert("name".into(), name.clone());
    }
    m.insert("users".into(), user_ids(c.get("members")));
    m.insert("t".into(), t.into());
    for (to, from) in [("topic", "topic"), ("description", "purpose")] {
        let value = c.get(from).and_then(|t| t.get("value"));
        if js::truthy(value) {
            m.insert(to.into(), value.cloned().unwrap_or(Value::Null));
        }
    }
    if let Some(ts) = created(c) {
        m.insert("ts".into(), ts);
    }
    if let Some(archived) = c.get("is_archived") {
        m.insert("archived".into(), archived.clone());
    }
    Value::Object(m)
}

/// `created ? new Date(created * 1000) : undefined`.
fn created(c: &Map<String, Value>) -> Option<Value> {
    let created = c.get("created");
    js::truthy(created).then(|| js::date(created.and_then(js::to_number).map(|s| s * 1000.0)))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Channels,
    Groups,
    Mpims,
    Dms,
}

/// Conversations by name and by id, as `ImportData.findChannelImportIdByNameOrImportId`
/// finds them (the first staged one wins), to the id messages are staged under.
#[derive(Default)]
struct Rooms(HashMap<String, Option<String>>);

impl Rooms {
    fn add(&mut self, record: &Value) {
        let id = match &record["importIds"][0] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        if let Some(Value::String(name)) = record.get("name") {
            self.0.entry(name.clone()).or_insert_with(|| id.clone());
        }
        if let Some(key) = &id {
            self.0.entry(key.clone()).or_insert_with(|| id.clone());
        }
    }

    fn find(&self, folder: &str) -> Option<&str> {
        self.0
            .get(folder)
            .and_then(|id| id.as_deref())
            .filter(|id| !id.is_empty())
    }
}

fn parse_whole(archive: &mut Archive, entry: &Entry) -> Result<Vec<Value>, Stop> {
    let parsed = archive.read_entry(entry, true, |r| {
        let mut de = serde_json::Deserializer::from_reader(r);
        let v = <Value as serde::Deserialize>::deserialize(&mut de)?;
        de.end()?;
        Ok::<Value, serde_json::Error>(v)
    })?;
    match parsed {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(Stop::Skip("the file is not a JSON array".into())),
        Err(e) => Err(Stop::Skip(e.to_string())),
    }
}

/// One of the four conversation lists. Returns how many it counted.
fn conversations(
    archive: &mut Archive,
    entry: &Entry,
    kind: ListKind,
    prep: &mut Prep<'_>,
    rooms: &mut Rooms,
) -> Result<u64, Stop> {
    prep.step(PREPARING_CHANNELS)?;
    let items = parse_whole(archive, entry)?;
    let items: Vec<Map<String, Value>> = if kind == ListKind::Dms {
        items
            .into_iter()
            .map(|c| match c {
                Value::Object(o) => Ok(o),
                _ => Err(type_error("a conversation is not an object")),
            })
            .collect::<Result<_, _>>()?
    } else {
        let mut kept = Vec::new();
        for c in items {
            match c {
                Value::Object(o) => {
                    if o.get("creator").is_some_and(|c| !c.is_null()) {
                        kept.push(o);
                    }
                }
                _ => return Err(type_error("a conversation is not an object")),
            }
        }
        kept
    };
    let n = items.len() as u64;
    prep.counts(Counts {
        add_total: n,
        ..Counts::default()
    })?;
    for c in &items {
        let record = match kind {
            ListKind::Channels => channel_record(c, "c", true),
            ListKind::Groups => channel_record(c, "p", false),
            ListKind::Mpims => {
                let members = match c.get("members") {
                    Some(Value::Array(a)) => a.len(),
                    Some(Value::String(s)) => s.encode_utf16().count(),
                    _ => return Err(type_error("channel.members is undefined")),
                };
                let t = if members > DIRECT_MESSAGE_MAX_USERS {
                    "p"
                } else {
                    "d"
                };
                channel_record(c, t, false)
            }
            ListKind::Dms => {
                let mut m = Map::new();
                m.insert(
                    "importIds".into(),
                    json!([c.get("id").cloned().unwrap_or(Value::Null)]),
                );
                m.insert("users".into(), user_ids(c.get("members")));
                m.insert("t".into(), "d".into());
                if let Some(ts) = created(c) {
                    m.insert("ts".into(), ts);
                }
                Value::Object(m)
            }
        };
        rooms.add(&record);
        prep.record(DataType::Channel, record)?;
    }
    Ok(n)
}

fn users_file(archive: &mut Archive, entry: &Entry, prep: &mut Prep<'_>) -> Result<u64, Stop> {
    prep.step(PREPARING_USERS)?;
    let items = parse_whole(archive, entry)?;
    let n = items.len() as u64;
    prep.counts(Counts {
        add_total: n,
        users: Some(n),
        ..Counts::default()
    })?;
    for user in &items {
        let Some(user) = user.as_object() else {
            return Err(type_error("a user is not an object"));
        };
        let profile = match user.get("profile") {
            None | Some(Value::Null) => {
                return Err(type_error("user.profile is undefined"));
            }
            Some(p) => p,
        };
        let mut m = Map::new();
        let email = profile.get("email");
        m.insert(
            "emails".into(),
            if js::truthy(email) {
                json!([email])
            } else {
                json!([])
            },
        );
        m.insert(
            "importIds".into(),
            json!([user.get("id").cloned().unwrap_or(Value::Null)]),
        );
        if let Some(name) = user.get("name") {
            m.insert("username".into(), name.clone());
        }
        if let Some(real) = profile.get("real_name") {
            m.insert("name".into(), real.clone());
        }
        // `tz_offset && tz_offset / 3600`
        match user.get("tz_offset") {
            None => {}
            Some(v) if !js::truthy(Some(v)) => {
                m.insert("utcOffset".into(), v.clone());
            }
            Some(v) => {
                m.insert(
                    "utcOffset".into(),
                    js::to_number(v).map_or(Value::Null, |n| js::number(n / 3600.0)),
                );
            }
        }
        // `image_original || image_512`
        let original = profile.get("image_original");
        let avatar = if js::truthy(original) {
            original
        } else {
            profile.get("image_512")
        };
        if let Some(avatar) = avatar {
            m.insert("avatarUrl".into(), avatar.clone());
        }
        if let Some(deleted) = user.get("deleted") {
            m.insert("deleted".into(), deleted.clone());
        }
        for (to, from) in [("statusText", "status_text"), ("bio", "title")] {
            let v = profile.get(from);
            if js::truthy(v) {
                m.insert(to.into(), v.cloned().unwrap_or(Value::Null));
            }
        }
        m.insert("type".into(), "user".into());
        if js::truthy(user.get("is_bot")) {
            m.insert("type".into(), "bot".into());
            m.insert("roles".into(), json!(["bot"]));
        }
        prep.record(DataType::User, Value::Object(m))?;
    }
    Ok(n)
}

/// Calls `each` on every element of a JSON array read from `input`, one at a time. `Ok(Err)`
/// is the content's fault (not JSON, not an array); `Err` is `each`'s own stop.
fn each_element<R: Read>(
    input: R,
    each: &mut dyn FnMut(Value) -> Result<(), Stop>,
) -> Result<Result<u64, String>, Stop> {
    struct Seed<'a> {
        each: &'a mut dyn FnMut(Value) -> Result<(), Stop>,
        stop: Option<Stop>,
        count: u64,
    }
    impl<'de> Visitor<'de> for &mut Seed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(item) = seq.next_element::<Value>()? {
                self.count += 1;
                if let Err(stop) = (self.each)(item) {
                    self.stop = Some(stop);
                    return Err(de::Error::custom("stopped"));
                }
            }
            Ok(())
        }
    }
    impl<'de> DeserializeSeed<'de> for &mut Seed<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    let mut seed = Seed {
        each,
        stop: None,
        count: 0,
    };
    let mut de = serde_json::Deserializer::from_reader(input);
    let outcome = (&mut seed).deserialize(&mut de).and_then(|()| de.end());
    if let Some(stop) = seed.stop {
        return Err(stop);
    }
    Ok(outcome.map(|()| seed.count).map_err(|e| e.to_string()))
}

/// The length of the JSON array read from `input`, without keeping its elements.
fn array_length<R: Read>(input: R) -> Result<u64, String> {
    struct Count;
    impl<'de> Visitor<'de> for Count {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
            let mut n = 0;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
            }
            Ok(n)
        }
    }
    let mut de = serde_json::Deserializer::from_reader(input);
    let n = de::Deserializer::deserialize_seq(&mut de, Count).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(n)
}

/// The Slack importer's `prepare` (a [`super::PrepareFn`]).
pub fn prepare(path: &Path, limits: &Limits, sink: &mut dyn Sink) -> Result<(), ImportError> {
    let mut archive = Archive::open(path, limits)?;
    let mut prep = Prep { sink, step: None };
    let files = archive.files().to_vec();
    let mut rooms = Rooms::default();
    let mut channel_count = 0u64;

    // Pass 1: users and conversations.
    for entry in &files {
        let kind = match entry.name.as_str() {
            "channels.json" => Some(ListKind::Channels),
            "groups.json" => Some(ListKind::Groups),
            "mpims.json" => Some(ListKind::Mpims),
            "dms.json" => Some(ListKind::Dms),
            "users.json" => None,
            _ => continue,
        };
        let outcome = match kind {
            Some(kind) => {
                conversations(&mut archive, entry, kind, &mut prep, &mut rooms).map(|n| {
                    channel_count += n;
                    Some(channel_count)
                })
            }
            None => users_file(&mut archive, entry, &mut prep).map(|_| None),
        };
        match outcome {
            Ok(Some(channels)) => prep.counts(Counts {
                channels: Some(channels),
                ..Counts::default()
            })?,
            Ok(None) => {}
            Err(Stop::Skip(why)) => {
                tracing::warn!(entry = %entry.name, error = %why, "Error adding missed type");
            }
            Err(Stop::Fatal(e)) => return Err(e),
        }
    }

    // Pass 2: messages, per conversation folder and day.
    let mut messages = 0u64;
    let mut missed = BTreeSet::new();
    for entry in &files {
        if entry.name.contains(".DS_Store") || LISTS.contains(&entry.name.as_str()) {
            continue;
        }
        if !entry.name.contains('/') {
            continue;
        }
        let mut parts = entry.name.split('/');
        let folder = parts.next().unwrap_or_default();
        let date = parts
            .next()
            .unwrap_or_default()
            .split('.')
            .next()
            .unwrap_or_default();
        if prep.step != Some(PREPARING_MESSAGES) {
            prep.step(PREPARING_MESSAGES)?;
        }
        let length = match archive.read_entry(entry, true, |r| array_length(r))? {
            Ok(n) => n,
            Err(why) => {
                tracing::warn!(entry = %entry.name, error = %why, "Entry is not a valid JSON file; unable to import");
                continue;
            }
        };
        messages += length;
        prep.counts(Counts {
            add_total: length,
            messages_status: Some(Some(format!("{folder}/{date}"))),
            ..Counts::default()
        })?;
        let Some(channel) = rooms.find(folder).map(str::to_owned) else {
            continue;
        };
        let prep_ref = &mut prep;
        let missed_ref = &mut missed;
        let mut each = |message: Value| -> Result<(), Stop> {
            let mut staged = Vec::new();
            convert_into(&message, &channel, missed_ref, &mut staged)?;
            for record in staged {
                prep_ref.record(DataType::Message, record)?;
            }
            Ok(())
        };
        let outcome = archive.read_entry(entry, true, |r| each_element(r, &mut each))?;
        match outcome {
            Ok(_) => {}
            Err(Stop::Skip(why)) => {
                tracing::warn!(entry = %entry.name, error = %why, "Entry is not a valid JSON file; unable to import");
            }
            Err(Stop::Fatal(e)) => return Err(e),
        }
    }
    if !missed.is_empty() {
        tracing::info!(missed = ?missed, "Missed import types");
    }
    prep.counts(Counts {
        messages: Some(messages),
        messages_status: Some(None),
        ..Counts::default()
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_as_rocketchat_makes_them() {
        assert_eq!(
            message_id("C12345", "1234567890.000001", None),
            "slack-C12345-1234567890-000001"
        );
        assert_eq!(
            message_id("C12345", "1234567890.000001", Some("1")),
            "slack-C12345-1234567890-000001-file1"
        );
        assert_eq!(
            message_id("CHANNEL", "123.456.789", None),
            "slack-CHANNEL-123-456-789"
        );
    }

    #[test]
    fn text_conversion() {
        assert_eq!(
            convert_text(
                "<!everyone> <!channel> <!here> &lt;b&gt; &amp;amp; :simple_smile: :memo: :piggy: :uk:"
            ),
            "@all @all @here <b> &amp; :smile: :pencil: :pig: :gb:"
        );
        assert_eq!(
            convert_text("see <https://example.com/a?b=c> and <http://x.io|the site>"),
            "see https://example.com/a?b=c and [the site](http://x.io)"
        );
        assert_eq!(
            convert_text("in <#C024BE7LR|general> ask <@U024BE7LH|bob> or <@U999>"),
            "in #general ask @U024BE7LH or @U999"
        );
    }

    #[test]
    fn mention_parsing() {
        let (users, channels) =
            mentions("@U1 hi @U2:team and >@U3, see #general or #dev@host [x @U9](http://a)");
        assert_eq!(users, ["U1", "U2:team", "@U3"]);
        assert_eq!(channels, ["general", "dev@host"]);
        assert_eq!(mentions("mail a@b.c").0, Vec::<String>::new());
        assert_eq!(mentions("@USLACKBOT").0, ["rocket.cat"]);
    }

    #[test]
    fn elements_streamed_and_counted() {
        let mut seen = Vec::new();
        let n = each_element(&b" [1, {\"a\":2}, [3]] \n"[..], &mut |v| {
            seen.push(v);
            Ok(())
        })
        .unwrap()
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(seen[1], json!({"a": 2}));
        assert_eq!(array_length(&b"[1,2,3]"[..]), Ok(3));
        assert!(array_length(&b"[1,2"[..]).is_err());
        assert!(array_length(&b"{\"a\":1}"[..]).is_err());
        assert!(array_length(&b"[1] x"[..]).is_err());
        assert!(array_length(&b"\xef\xbb\xbf[1]"[..]).is_err());
    }
}
