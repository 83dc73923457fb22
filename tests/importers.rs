//! The CSV, Slack and Slack-users importers on their own (docs/compatibility.md, "Importers"):
//! what each sends to the workflow for a given archive, in order, with Rocket.Chat's unit-test
//! vectors, and every bad input.

mod common;

use common::archives::{self, zip_of};
use importops::importer::{Counts, DataType, ImportError, Limits, Prepared, Sink};
use serde_json::{Value, json};

#[derive(Default)]
struct Collect {
    items: Vec<Prepared>,
}

impl Sink for Collect {
    fn send(&mut self, item: Prepared) -> Result<(), ImportError> {
        self.items.push(item);
        Ok(())
    }
}

impl Collect {
    fn steps(&self) -> Vec<&'static str> {
        self.items
            .iter()
            .filter_map(|i| match i {
                Prepared::Step(s) => Some(*s),
                _ => None,
            })
            .collect()
    }

    fn records(&self, kind: DataType) -> Vec<&Value> {
        self.items
            .iter()
            .filter_map(|i| match i {
                Prepared::Record(k, v) if *k == kind => Some(v),
                _ => None,
            })
            .collect()
    }

    fn counts(&self) -> Vec<&Counts> {
        self.items
            .iter()
            .filter_map(|i| match i {
                Prepared::Counts(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn total(&self) -> u64 {
        self.counts().iter().map(|c| c.add_total).sum()
    }

    /// The last value each count was set to, as the operation ends up holding it.
    fn last<T: Clone>(&self, f: impl Fn(&Counts) -> Option<T>) -> Option<T> {
        self.counts().iter().filter_map(|c| f(c)).last()
    }

    fn statuses(&self) -> Vec<Option<String>> {
        self.counts()
            .iter()
            .filter_map(|c| c.messages_status.clone())
            .collect()
    }
}

const MAX: u64 = 100 << 20;

fn limits() -> Limits {
    Limits { max_bytes: MAX }
}

fn run_csv(entries: &[(&str, &str)]) -> Result<Collect, ImportError> {
    let bytes: Vec<(&str, &[u8])> = entries.iter().map(|(n, c)| (*n, c.as_bytes())).collect();
    let archive = zip_of(&bytes);
    let mut sink = Collect::default();
    importops::importer::csv::prepare(archive.path(), &limits(), &mut sink)?;
    Ok(sink)
}

// Rocket.Chat's CsvImporter.spec.ts inputs.
const CHANNELS_CSV: &str =
    " general , admin , Public , alice ; bob \nsecret,owner,Private,carol;;dave;";
const USERS_CSV: &str = " alice , alice@example.com , Alice Smith \nbob,bob@example.com,Bob Jones";
const CONTACTS_CSV: &str = "name,emails,phones\nJane Doe,jane@example.com,+5511999";
const CHANNEL_MESSAGES_CSV: &str = "alice,1700000000000,hello there\nbob,1700000001000,hi";
const DM_MESSAGES_CSV: &str =
    "alice,bob,1700000002000,dm from alice\nbob,alice,1700000003000,dm from bob";

fn full_archive() -> Vec<(&'static str, &'static str)> {
    vec![
        ("channels.csv", CHANNELS_CSV),
        ("users.csv", USERS_CSV),
        ("contacts.csv", CONTACTS_CSV),
        ("general/messages.csv", CHANNEL_MESSAGES_CSV),
        ("directmessages/messages.csv", DM_MESSAGES_CSV),
    ]
}

#[test]
fn csv_full_archive_totals_nine_in_rocketchats_order() {
    let out = run_csv(&full_archive()).unwrap();
    assert_eq!(out.total(), 9);
    assert_eq!(
        out.steps(),
        [
            "importer_preparing_channels",
            "importer_preparing_users",
            "importer_preparing_contacts",
            "importer_preparing_messages"
        ]
    );
    assert_eq!(out.last(|c| c.channels), Some(2));
    assert_eq!(out.last(|c| c.users), Some(2));
    assert_eq!(out.last(|c| c.contacts), Some(1));
    assert_eq!(out.last(|c| c.messages), Some(4));
    // Channels: trimmed, members split and emptied, `private` → p, else c.
    let channels = out.records(DataType::Channel);
    assert_eq!(channels.len(), 3);
    let general_id = channels[0]["importIds"][0].as_str().unwrap().to_owned();
    assert_eq!(general_id.len(), 17);
    assert_eq!(
        channels[0],
        &json!({"importIds":[general_id],"u":{"_id":"admin"},"name":"general","users":["alice","bob"],"t":"c"})
    );
    assert_eq!(channels[1]["users"], json!(["carol", "dave"]));
    assert_eq!(channels[1]["t"], "p");
    // The DM room, whatever the order of the pair in the row.
    assert_eq!(
        channels[2],
        &json!({"importIds":["alice/bob"],"users":["alice","bob"],"t":"d"})
    );
    let users = out.records(DataType::User);
    assert_eq!(
        users[0],
        &json!({"type":"user","importIds":["alice"],"emails":["alice@example.com"],"username":"alice","name":"Alice Smith"})
    );
    let contacts = out.records(DataType::Contact);
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["name"], "Jane Doe");
    assert_eq!(contacts[0]["emails"], json!(["jane@example.com"]));
    assert_eq!(contacts[0]["phones"], json!(["+5511999"]));
    assert_eq!(contacts[0]["customFields"], json!({}));
    let messages = out.records(DataType::Message);
    assert_eq!(messages.len(), 4);
    // The folder's room id is the one channels.csv gave `general`.
    assert_eq!(
        messages[0],
        &json!({"rid":general_id,"u":{"_id":"alice"},"ts":"2023-11-14T22:13:20.000Z","msg":"hello there"})
    );
    assert_eq!(messages[1]["ts"], "2023-11-14T22:13:21.000Z");
    assert_eq!(
        messages[2],
        &json!({"rid":"alice/bob","u":{"_id":"alice"},"ts":"2023-11-14T22:13:22.000Z","msg":"dm from alice"})
    );
    assert_eq!(messages[3]["rid"], "alice/bob");
    assert_eq!(messages[3]["u"]["_id"], "bob");
    assert!(!out.steps().contains(&"importer_import_failed"));
}

#[test]
fn csv_order_of_items_follows_rocketchat() {
    let out = run_csv(&[
        ("users.csv", USERS_CSV),
        ("general/messages.csv", CHANNEL_MESSAGES_CSV),
    ])
    .unwrap();
    let kinds: Vec<String> = out
        .items
        .iter()
        .map(|i| match i {
            Prepared::Step(s) => s.to_string(),
            Prepared::Record(k, _) => k.as_str().to_string(),
            Prepared::Counts(c) => format!(
                "counts{:?}",
                (c.add_total, c.users, c.messages, &c.messages_status)
            ),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "importer_preparing_users",
            "user",
            "user",
            "counts(0, Some(2), None, None)",
            "importer_preparing_messages",
            "counts(0, None, None, Some(Some(\"general/messages\")))",
            "message",
            "message",
            "counts(0, None, Some(2), Some(None))",
            "counts(4, None, None, None)",
        ]
    );
}

#[test]
fn csv_names_are_case_insensitive_and_others_ignored() {
    let out = run_csv(&[
        ("Channels.CSV", CHANNELS_CSV),
        ("Users.CSV", USERS_CSV),
        ("__MACOSX/general/messages.csv", CHANNEL_MESSAGES_CSV),
        ("general/", ""),
        ("general/messages.csv", CHANNEL_MESSAGES_CSV),
        ("readme.txt", "not a csv the importer knows about"),
    ])
    .unwrap();
    assert_eq!(out.records(DataType::Channel).len(), 2);
    assert_eq!(out.records(DataType::User).len(), 2);
    assert_eq!(out.records(DataType::Message).len(), 2);
    assert_eq!(out.statuses(), [Some("general/messages".to_owned()), None]);
}

#[test]
fn csv_room_ids_shared_by_name_and_message_counts_run() {
    let out = run_csv(&[
        ("channels.csv", "general,admin,public,alice"),
        ("general/first.csv", "alice,1700000000000,one"),
        (
            "general/second.csv",
            "bob,1700000001000,two\ncarol,1700000001000,three",
        ),
        ("random/x.csv", "dave,1700000001000,four"),
    ])
    .unwrap();
    let id = out.records(DataType::Channel)[0]["importIds"][0].clone();
    let rids: Vec<Value> = out
        .records(DataType::Message)
        .iter()
        .map(|m| m["rid"].clone())
        .collect();
    assert_eq!(rids[0], id);
    assert_eq!(rids[1], id);
    assert_eq!(rids[2], id);
    // A folder that channels.csv does not name gets an id of its own.
    assert_ne!(rids[3], id);
    assert_eq!(rids[3].as_str().unwrap().len(), 17);
    let running: Vec<u64> = out.counts().iter().filter_map(|c| c.messages).collect();
    assert_eq!(running, [1, 3, 4]);
    assert_eq!(
        out.statuses(),
        [
            Some("general/first".to_owned()),
            None,
            Some("general/second".to_owned()),
            None,
            Some("random/x".to_owned()),
            None
        ]
    );
    // The message step once for the whole archive.
    assert_eq!(
        out.steps()
            .iter()
            .filter(|s| **s == "importer_preparing_messages")
            .count(),
        1
    );
    assert_eq!(out.total(), 5);
}

#[test]
fn csv_broken_message_file_is_skipped() {
    let out = run_csv(&[
        ("general/broken.csv", "alice,1700000000000,\"unclosed"),
        (
            "general/short.csv",
            "alice,1700000000000,hi\nbob,1700000000000",
        ),
        ("general/valid.csv", CHANNEL_MESSAGES_CSV),
    ])
    .unwrap();
    assert_eq!(out.records(DataType::Message).len(), 2);
    assert_eq!(out.statuses(), [Some("general/valid".to_owned()), None]);
    assert_eq!(out.total(), 2);
}

#[test]
fn csv_dm_rows_without_a_partner_are_skipped_but_counted() {
    let out = run_csv(&[(
        "directmessages/messages.csv",
        "alice,,1700000002000,orphan\nbob,alice,1700000003000,hi",
    )])
    .unwrap();
    assert_eq!(out.records(DataType::Channel).len(), 1);
    assert_eq!(out.records(DataType::Message).len(), 1);
    assert_eq!(out.last(|c| c.messages), Some(2));
}

#[test]
fn csv_nothing_to_import_fails_and_only_contacts_does_not() {
    let out = run_csv(&[("__MACOSX/ignored", "")]).unwrap();
    assert_eq!(out.steps(), ["importer_import_failed"]);
    assert_eq!(out.total(), 0);
    let out = run_csv(&[("readme.txt", "hello")]).unwrap();
    assert_eq!(out.steps(), ["importer_import_failed"]);

    let out = run_csv(&[("contacts.csv", CONTACTS_CSV)]).unwrap();
    assert_eq!(out.steps(), ["importer_preparing_contacts"]);
    assert_eq!(out.total(), 1);
}

#[test]
fn csv_empty_zip_fails_as_nothing_to_import() {
    let archive = zip_of(&[]);
    let mut sink = Collect::default();
    importops::importer::csv::prepare(archive.path(), &limits(), &mut sink).unwrap();
    assert_eq!(sink.steps(), ["importer_import_failed"]);
}

#[test]
fn csv_contacts_with_custom_fields_and_manager() {
    let out = run_csv(&[(
        "contacts.csv",
        "id,name,emails,phones,manager,plan,region\nc-1,Jane,a@x.com;b@x.com,+1;+2,agent.smith,gold,eu\n,,,,,silver,us\nc-3,,,+3,,,\n",
    )])
    .unwrap();
    let contacts = out.records(DataType::Contact);
    assert_eq!(
        contacts.len(),
        2,
        "the row without name, e-mails and phones is skipped"
    );
    assert_eq!(
        contacts[0],
        &json!({"importIds":["c-1"],"emails":["a@x.com","b@x.com"],"phones":["+1","+2"],"name":"Jane","contactManager":"agent.smith","customFields":{"plan":"gold","region":"eu"}})
    );
    assert_eq!(
        contacts[1],
        &json!({"importIds":["c-3"],"emails":[""],"phones":["+3"],"name":"","contactManager":"","customFields":{"plan":"","region":""}})
    );
    assert_eq!(out.last(|c| c.contacts), Some(2));
    // Without an id column each contact gets a random id.
    let out = run_csv(&[("contacts.csv", CONTACTS_CSV)]).unwrap();
    let id = out.records(DataType::Contact)[0]["importIds"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 17);
}

#[test]
fn csv_wrong_row_length_in_users_or_channels_fails_the_request() {
    let err = run_csv(&[("users.csv", "alice,a@x.com,Alice\nbob,b@x.com")])
        .err()
        .unwrap();
    assert!(matches!(err, ImportError::Plain(_)));
    assert_eq!(
        err.to_string(),
        "Invalid Record Length: expect 3, got 2 on line 2"
    );
    let err = run_csv(&[("channels.csv", "a,b,public,x\n\"c")])
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "Quote Not Closed: the parsing is finished with an opening quote at line 2"
    );
    // Rows with too few columns for what is read from them.
    let err = run_csv(&[("users.csv", "alice,a@x.com")]).err().unwrap();
    assert_eq!(
        err.to_string(),
        "users.csv line 1: 2 columns where 3 are needed"
    );
}

#[test]
fn csv_a_bad_file_sends_none_of_its_records() {
    let archive = zip_of(&[(
        "users.csv",
        b"alice,a@x.com,Alice\nbob,b@x.com,Bob\ncarol,c@x.com\n",
    )]);
    let mut sink = Collect::default();
    assert!(importops::importer::csv::prepare(archive.path(), &limits(), &mut sink).is_err());
    assert_eq!(sink.steps(), ["importer_preparing_users"]);
    assert!(sink.records(DataType::User).is_empty());
}

#[test]
fn csv_non_utf8_text_is_a_clear_error() {
    let archive = zip_of(&[("users.csv", b"jos\xe9,jose@example.com,Jos\xe9\n")]);
    let mut sink = Collect::default();
    let err = importops::importer::csv::prepare(archive.path(), &limits(), &mut sink)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "The file users.csv is not UTF-8 text (invalid byte sequence at byte 3)"
    );
    // In a message file too (not skipped silently).
    let archive = zip_of(&[("general/m.csv", b"alice,1,caf\xc3\n")]);
    let err = importops::importer::csv::prepare(archive.path(), &limits(), &mut Collect::default())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("general/m.csv is not UTF-8"),
        "{err}"
    );
}

#[test]
fn csv_not_a_zip_truncated_zip_bomb_and_bad_paths() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("users.csv");
    std::fs::write(&plain, "alice,a@x.com,Alice\n").unwrap();
    let err = importops::importer::csv::prepare(&plain, &limits(), &mut Collect::default())
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "Invalid or unsupported zip format. No END header found"
    );

    let good = zip_of(&[("users.csv", b"alice,a@x.com,Alice\n")]);
    let bytes = good.bytes();
    let cut = dir.path().join("cut.zip");
    std::fs::write(&cut, &bytes[..bytes.len() - 30]).unwrap();
    let err = importops::importer::csv::prepare(&cut, &limits(), &mut Collect::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("zip format"), "{err}");

    // A few KB that inflate past the limit.
    let mut rows = String::new();
    while rows.len() < 3 << 20 {
        rows.push_str(
            "aaaaaaaaaaaaaaaaaaaa,aaaaaaaaaaaaaaaaaaaa@example.com,aaaaaaaaaaaaaaaaaaaaaaaa\n",
        );
    }
    let bomb = zip_of(&[("users.csv", rows.as_bytes())]);
    assert!(std::fs::metadata(bomb.path()).unwrap().len() < 64 * 1024);
    let mut sink = Collect::default();
    let err =
        importops::importer::csv::prepare(bomb.path(), &Limits { max_bytes: 1 << 20 }, &mut sink)
            .err()
            .unwrap();
    assert!(err.to_string().contains("more than 1048576 bytes"), "{err}");
    assert!(sink.records(DataType::User).is_empty());

    for name in ["../users.csv", "/etc/users.csv", "general/../../x.csv"] {
        let archive = zip_of(&[("users.csv", b"alice,a@x.com,Alice\n"), (name, b"x,1,y\n")]);
        let mut sink = Collect::default();
        let err = importops::importer::csv::prepare(archive.path(), &limits(), &mut sink)
            .err()
            .unwrap();
        assert!(err.to_string().contains("refused"), "{name}: {err}");
        // Refused before anything is sent.
        assert!(sink.items.is_empty());
    }
}

#[test]
fn csv_generated_archive_matches_its_independent_counts() {
    let generated = archives::csv_archive(7, 300, 12, 5000, 250);
    let mut sink = Collect::default();
    importops::importer::csv::prepare(generated.archive.path(), &limits(), &mut sink).unwrap();
    let e = &generated.expected;
    assert_eq!(sink.total(), e.total);
    assert_eq!(sink.last(|c| c.users), Some(e.users));
    assert_eq!(sink.last(|c| c.channels), Some(e.channels));
    assert_eq!(sink.last(|c| c.messages), Some(e.messages));
    assert_eq!(
        sink.records(DataType::Message).len() as u64,
        e.staged_messages
    );
    let user_ids: Vec<&str> = sink
        .records(DataType::User)
        .iter()
        .map(|u| u["importIds"][0].as_str().unwrap())
        .collect();
    assert_eq!(user_ids, e.user_ids);
    let names: Vec<&str> = sink
        .records(DataType::Channel)
        .iter()
        .filter(|c| c["t"] != "d")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, e.channel_names);
    assert_eq!(e.selection_channels(), 13);
    assert!(
        sink.records(DataType::Channel)
            .iter()
            .any(|c| c["t"] == "d")
    );
    let m = sink.records(DataType::Message)[0];
    assert!(
        m["msg"]
            .as_str()
            .unwrap()
            .starts_with("message 0, of \"channel-0\"")
    );
}

// ---- Slack ----

fn run_slack(entries: &[(&str, &str)]) -> Result<Collect, ImportError> {
    let bytes: Vec<(&str, &[u8])> = entries.iter().map(|(n, c)| (*n, c.as_bytes())).collect();
    let archive = zip_of(&bytes);
    let mut sink = Collect::default();
    importops::importer::slack::prepare(archive.path(), &limits(), &mut sink)?;
    Ok(sink)
}

const SLACK_USERS: &str = r#"[
 {"id":"U1","name":"alice","deleted":false,"is_bot":false,"tz_offset":-10800,"profile":{"real_name":"Alice A","email":"alice@example.com","image_512":"https://a/512.png","image_original":"https://a/orig.png","status_text":"busy","title":"CTO"}},
 {"id":"U2","name":"robot","deleted":true,"is_bot":true,"tz_offset":0,"profile":{"real_name":"Robot","email":"","image_512":"https://b/512.png","status_text":"","title":""}}
]"#;
const SLACK_CHANNELS: &str = r#"[
 {"id":"C1","name":"general","created":1500000000,"creator":"U1","is_general":true,"is_archived":false,"members":["U1","USLACKBOT"],"topic":{"value":"the topic"},"purpose":{"value":""}},
 {"id":"C2","name":"nocreator","created":1500000000,"creator":null,"members":["U1"]},
 {"id":"C3","name":"random","created":0,"creator":"USLACKBOT","is_archived":true,"members":[]}
]"#;

fn slack_archive_entries() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "general/2020-01-01.json",
            r#"[
          {"type":"message","ts":"1577836800.000100","user":"U1","text":"Hi <@U2|robot> &amp; <!here>, see <https://x.io|x> in <#C3|random>","reactions":[{"name":"thumbsup","users":["U2","USLACKBOT"],"count":2},{"name":"tada","users":["U1"],"count":1},{"name":"empty","users":[],"count":0}],"thread_ts":"1577836800.000100","reply_count":1,"reply_users":["U2","U2"],"latest_reply":"1577836900.000200","edited":{"ts":"1577836850.000000","user":"USLACKBOT"}},
          {"type":"message","ts":"1577836900.000200","user":"U2","text":"a reply","thread_ts":"1577836800.000100","files":[{"id":"F1","name":"a.png","size":10,"url_private_download":"https://files/F1","is_external":false,"mimetype":"image/png"},{"id":"F2","name":"b.txt","size":20,"url_private_download":"https://files/F2"}]},
          {"type":"message","subtype":"channel_join","ts":"1577837000.000300","user":"U2","text":"<@U2> has joined"},
          {"type":"message","subtype":"channel_topic","ts":"1577837001.000000","user":"U1","topic":"new topic","text":"set the topic"},
          {"type":"message","subtype":"group_name","ts":"1577837002.000000","user":"U1","name":"renamed","old_name":"x"},
          {"type":"message","subtype":"channel_purpose","ts":"1577837003.000000","user":"U1","purpose":"why"},
          {"type":"message","subtype":"me_message","ts":"1577837004.000000","user":"U1","text":"waves"},
          {"type":"message","subtype":"bot_message","ts":"1577837005.000000","bot_id":"B1","text":"beep","icons":{"emoji":":robot_face:"},"attachments":[{"text":"&lt;t&gt;","title":"T","color":"ff0000"}]},
          {"type":"message","subtype":"pinned_item","ts":"1577837006.000000","user":"U1","attachments":[{"text":"pinned","author_subname":"alice"}]},
          {"type":"message","subtype":"file_share","ts":"1577837007.000000","user":"U1","file":{"id":"F3","name":"c.pdf","size":30,"url_private_download":"https://files/F3"}},
          {"type":"message","subtype":"file_share","ts":"1577837008.000000","user":"U1","file":{"id":"F4","name":"d.pdf"}},
          {"type":"message","subtype":"bot_add","ts":"1577837009.000000","user":"U1"},
          {"type":"message","subtype":"tombstone","ts":"1577837010.000000","user":"U1"},
          {"type":"message","subtype":"channel_leave","ts":"1577837011.000000","user":"USLACKBOT"},
          {"type":"not-a-message","ts":"1577837012.000000","user":"U1","text":"x"}
        ]"#,
        ),
        ("channels.json", SLACK_CHANNELS),
        ("users.json", SLACK_USERS),
        (
            "groups.json",
            r#"[{"id":"G1","name":"secret","created":1500000000,"creator":"U1","members":["U1","U2"],"is_archived":false}]"#,
        ),
        (
            "mpims.json",
            r#"[{"id":"G2","name":"mpdm-a--b--c-1","created":1500000000,"creator":"U1","members":["U1","U2","U3"]},{"id":"G3","name":"mpdm-big","created":1500000000,"creator":"U1","members":["1","2","3","4","5","6","7","8","9"]}]"#,
        ),
        (
            "dms.json",
            r#"[{"id":"D1","created":1500000000,"members":["U1","U2"]}]"#,
        ),
        (
            "D1/2020-01-02.json",
            r#"[{"type":"message","ts":"1577923200.000000","user":"U1","text":"dm"}]"#,
        ),
        (
            "unknown-folder/2020-01-02.json",
            r#"[{"type":"message","ts":"1577923200.000000","user":"U1","text":"lost"},{"type":"message"}]"#,
        ),
        ("__MACOSX/general/._2020-01-01.json", "junk"),
        ("general/.DS_Store", "junk"),
        ("integration_logs.json", "[]"),
    ]
}

#[test]
fn slack_pass_one_users_and_conversations() {
    let out = run_slack(&slack_archive_entries()).unwrap();
    let users = out.records(DataType::User);
    assert_eq!(
        users[0],
        &json!({"emails":["alice@example.com"],"importIds":["U1"],"username":"alice","name":"Alice A","utcOffset":-3,"avatarUrl":"https://a/orig.png","deleted":false,"statusText":"busy","bio":"CTO","type":"user"})
    );
    assert_eq!(
        users[1],
        &json!({"emails":[],"importIds":["U2"],"username":"robot","name":"Robot","utcOffset":0,"avatarUrl":"https://b/512.png","deleted":true,"type":"bot","roles":["bot"]})
    );
    let channels = out.records(DataType::Channel);
    let ids: Vec<&str> = channels
        .iter()
        .map(|c| c["importIds"][0].as_str().unwrap())
        .collect();
    // The channel without a creator is left out.
    assert_eq!(ids, ["C1", "C3", "G1", "G2", "G3", "D1"]);
    assert_eq!(
        channels[0],
        &json!({"_id":"general","u":{"_id":"U1"},"importIds":["C1"],"name":"general","users":["U1","rocket.cat"],"t":"c","topic":"the topic","ts":"2017-07-14T02:40:00.000Z","archived":false})
    );
    assert_eq!(
        channels[1],
        &json!({"u":{"_id":"rocket.cat"},"importIds":["C3"],"name":"random","users":[],"t":"c","archived":true})
    );
    assert_eq!(channels[2]["t"], "p");
    assert!(channels[2].get("_id").is_none());
    assert_eq!(channels[3]["t"], "d", "an mpim of 3 is a direct message");
    assert_eq!(
        channels[4]["t"], "p",
        "an mpim of more than 8 is a private group"
    );
    assert_eq!(
        channels[5],
        &json!({"importIds":["D1"],"users":["U1","U2"],"t":"d","ts":"2017-07-14T02:40:00.000Z"})
    );
    assert_eq!(out.last(|c| c.users), Some(2));
    let running: Vec<u64> = out.counts().iter().filter_map(|c| c.channels).collect();
    assert_eq!(running, [2, 3, 5, 6]);
    assert_eq!(
        out.steps(),
        [
            "importer_preparing_channels",
            "importer_preparing_users",
            "importer_preparing_channels",
            "importer_preparing_channels",
            "importer_preparing_channels",
            "importer_preparing_messages"
        ],
        "the first pass follows the archive's order"
    );
}

#[test]
fn slack_pass_two_messages_with_every_rule() {
    let out = run_slack(&slack_archive_entries()).unwrap();
    let messages = out.records(DataType::Message);
    let ids: Vec<&str> = messages
        .iter()
        .map(|m| m["_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "slack-C1-1577836800-000100",
            "slack-C1-1577836900-000200-file1",
            "slack-C1-1577836900-000200-file2",
            "slack-C1-1577836900-000200",
            "slack-C1-1577837000-000300",
            "slack-C1-1577837001-000000",
            "slack-C1-1577837002-000000",
            "slack-C1-1577837003-000000",
            "slack-C1-1577837004-000000",
            "slack-C1-1577837005-000000",
            "slack-C1-1577837007-000000-fileshare",
            "slack-C1-1577837011-000000",
            "slack-D1-1577923200-000000",
        ]
    );
    // A thread's parent, its reactions (every one kept), edit, mentions and text conversion.
    assert_eq!(
        messages[0],
        &json!({
            "_id":"slack-C1-1577836800-000100","rid":"C1","ts":"2020-01-01T00:00:00.000Z",
            "msg":"Hi @U2 & @here, see [x](https://x.io) in #random","u":{"_id":"U1"},
            "reactions":{":thumbsup:":{"name":":thumbsup:","users":["U2","rocket.cat"]},":tada:":{"name":":tada:","users":["U1"]}},
            "replies":["U2"],"tcount":1,"tlm":"2020-01-01T00:01:40.000Z",
            "editedAt":"2020-01-01T00:00:50.000Z","editedBy":"rocket.cat",
            "mentions":["U2","here"],"channels":["random"]
        })
    );
    // Files of a reply: hidden messages in the thread, before the reply itself.
    assert_eq!(
        messages[1],
        &json!({
            "_id":"slack-C1-1577836900-000200-file1","rid":"C1","ts":"2020-01-01T00:01:40.000Z","msg":"","_hidden":true,
            "_importFile":{"downloadUrl":"https://files/F1","id":"F1","size":10,"name":"a.png","external":false,"source":"slack",
              "original":{"id":"F1","name":"a.png","size":10,"url_private_download":"https://files/F1","is_external":false,"mimetype":"image/png"}},
            "u":{"_id":"U2"},"tmid":"slack-C1-1577836800-000100"
        })
    );
    assert!(messages[2]["_importFile"].get("external").is_none());
    assert_eq!(messages[3]["tmid"], "slack-C1-1577836800-000100");
    assert_eq!(messages[3]["msg"], "a reply");
    assert_eq!(
        messages[4],
        &json!({"_id":"slack-C1-1577837000-000300","rid":"C1","ts":"2020-01-01T00:03:20.000Z","msg":"","u":{"_id":"U2"},"t":"uj","groupable":false})
    );
    assert_eq!(messages[5]["t"], "room_changed_topic");
    assert_eq!(messages[5]["msg"], "new topic");
    assert_eq!(messages[6]["t"], "r");
    assert_eq!(messages[6]["msg"], "renamed");
    assert_eq!(messages[7]["t"], "room_changed_description");
    assert_eq!(messages[7]["msg"], "why");
    assert_eq!(messages[8]["msg"], "_waves_");
    assert_eq!(
        messages[9],
        &json!({"_id":"slack-C1-1577837005-000000","rid":"C1","ts":"2020-01-01T00:03:25.000Z","msg":"beep","u":{},"bot":true,
          "attachments":[{"text":"<t>","title":"T","color":"ff0000","fallback":""}],"emoji":":robot_face:"})
    );
    assert_eq!(messages[10]["_hidden"], true);
    assert_eq!(
        messages[10]["_importFile"]["downloadUrl"],
        "https://files/F3"
    );
    assert_eq!(messages[11]["t"], "ul");
    assert_eq!(messages[11]["u"]["_id"], "rocket.cat");
    assert_eq!(messages[12]["rid"], "D1");

    // Counts: every element of every file that parses, staged or not.
    assert_eq!(out.last(|c| c.messages), Some(15 + 1 + 2));
    assert_eq!(out.total(), 2 + 6 + 18);
    assert_eq!(
        out.statuses(),
        [
            Some("general/2020-01-01".to_owned()),
            Some("D1/2020-01-02".to_owned()),
            Some("unknown-folder/2020-01-02".to_owned()),
            None
        ]
    );
}

#[test]
fn slack_rocketchat_file_vectors() {
    // SlackImporter.spec.ts: file_share with and without a download URL, in a thread.
    let mut missed = std::collections::BTreeSet::new();
    let convert = |m: Value, missed: &mut std::collections::BTreeSet<String>| {
        importops::importer::slack::convert_message(&m, "C12345", missed).unwrap()
    };
    let out = convert(
        json!({"type":"message","subtype":"file_share","ts":"1234567890.000001","user":"U12345",
               "file":{"id":"F12345","name":"test.png","url_private_download":"https://files.slack.com/files/F12345/test.png?token=xoxe-123","size":1024,"is_external":false}}),
        &mut missed,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["_id"], "slack-C12345-1234567890-000001-fileshare");
    assert_eq!(out[0]["_hidden"], true);
    assert_eq!(out[0]["msg"], "");
    assert_eq!(
        out[0]["_importFile"]["downloadUrl"],
        "https://files.slack.com/files/F12345/test.png?token=xoxe-123"
    );
    let out = convert(
        json!({"type":"message","subtype":"file_share","ts":"1234567890.000001","user":"U12345","file":{"id":"F12345","name":"test.png","size":1024}}),
        &mut missed,
    );
    assert!(out.is_empty());
    let out = convert(
        json!({"type":"message","subtype":"file_share","ts":"1234567890.000002","thread_ts":"1234567890.000001","user":"U12345",
               "file":{"id":"F12345","name":"test.png","url_private_download":"https://files.slack.com/files/F12345/test.png","size":1024}}),
        &mut missed,
    );
    assert_eq!(out[0]["tmid"], "slack-C12345-1234567890-000001");
    let out = convert(
        json!({"type":"message","ts":"1234567890.000001","user":"U12345","text":"Multiple files",
               "files":[{"id":"F1","name":"file1.png","url_private_download":"https://files.slack.com/F1","size":100},
                        {"id":"F2","name":"file2.png","url_private_download":"https://files.slack.com/F2","size":200}]}),
        &mut missed,
    );
    let ids: Vec<&str> = out.iter().map(|m| m["_id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "slack-C12345-1234567890-000001-file1",
            "slack-C12345-1234567890-000001-file2",
            "slack-C12345-1234567890-000001"
        ]
    );
    let pending = &out[0]["_importFile"];
    assert_eq!(pending["source"], "slack");
    assert_eq!(
        pending["original"]["url_private_download"],
        "https://files.slack.com/F1"
    );
    assert!(missed.is_empty());
    convert(
        json!({"type":"message","subtype":"huddle_thread","ts":"1.2"}),
        &mut missed,
    );
    assert_eq!(missed.into_iter().collect::<Vec<_>>(), ["huddle_thread"]);
}

#[test]
fn slack_invalid_json_is_skipped_with_a_warning() {
    let out = run_slack(&[
        ("users.json", "[{\"id\":\"U1\",\"name\":\"a\",\"profile\":{}}"),
        ("channels.json", "{\"not\":\"an array\"}"),
        ("groups.json", r#"[{"id":"G1","name":"g","creator":"U1","members":[]}]"#),
        ("g/2020-01-01.json", "[{\"type\":\"message\",\"ts\":\"1.0\",\"text\":\"x\"}, oops]"),
        ("g/2020-01-02.json", "[{\"type\":\"message\",\"ts\":\"2.0\",\"text\":\"y\"}]"),
        // A message whose ts is not a string stops the rest of its file (a TypeError there).
        ("g/2020-01-03.json", "[{\"type\":\"message\",\"ts\":\"3.0\",\"text\":\"z\"},{\"type\":\"message\",\"ts\":3},{\"type\":\"message\",\"ts\":\"4.0\",\"text\":\"never\"}]"),
    ])
    .unwrap();
    // users.json and channels.json skipped (their steps were sent before parsing).
    assert!(out.records(DataType::User).is_empty());
    assert_eq!(out.last(|c| c.users), None);
    assert_eq!(out.records(DataType::Channel).len(), 1);
    let texts: Vec<&str> = out
        .records(DataType::Message)
        .iter()
        .map(|m| m["msg"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["y", "z"]);
    // The broken file is not counted; the stopped one counts all its elements.
    assert_eq!(out.last(|c| c.messages), Some(4));
    assert_eq!(
        out.statuses(),
        [
            Some("g/2020-01-02".to_owned()),
            Some("g/2020-01-03".to_owned()),
            None
        ]
    );
}

#[test]
fn slack_bad_archives() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("export.zip");
    std::fs::write(&plain, "[]").unwrap();
    let err = importops::importer::slack::prepare(&plain, &limits(), &mut Collect::default())
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "Invalid or unsupported zip format. No END header found"
    );

    // An empty archive is not a failure for the Slack importer.
    let out = run_slack(&[]).unwrap();
    assert_eq!(out.steps(), Vec::<&str>::new());
    assert_eq!(out.last(|c| c.messages), Some(0));

    let archive = zip_of(&[("users.json", b"[]"), ("../../etc/x.json", b"[]")]);
    let err =
        importops::importer::slack::prepare(archive.path(), &limits(), &mut Collect::default())
            .err()
            .unwrap();
    assert!(err.to_string().contains("leaves the archive"), "{err}");

    let archive = zip_of(&[(
        "users.json",
        b"[{\"id\":\"U1\",\"name\":\"caf\xe9\",\"profile\":{}}]",
    )]);
    let err =
        importops::importer::slack::prepare(archive.path(), &limits(), &mut Collect::default())
            .err()
            .unwrap();
    assert!(err.to_string().contains("users.json is not UTF-8"), "{err}");

    let mut big = String::from("[");
    for i in 0..40_000 {
        if i > 0 {
            big.push(',');
        }
        big.push_str(r#"{"type":"message","ts":"1.0","user":"U1","text":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#);
    }
    big.push(']');
    let bomb = zip_of(&[
        (
            "groups.json",
            br#"[{"id":"G1","name":"g","creator":"U1","members":[]}]"#,
        ),
        ("g/2020-01-01.json", big.as_bytes()),
    ]);
    assert!(std::fs::metadata(bomb.path()).unwrap().len() < 64 * 1024);
    let err = importops::importer::slack::prepare(
        bomb.path(),
        &Limits { max_bytes: 1 << 20 },
        &mut Collect::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("more than 1048576 bytes"), "{err}");
}

#[test]
fn slack_generated_archive_matches_its_independent_counts() {
    let generated = archives::slack_archive(3, 50, 5, 12_345);
    let mut sink = Collect::default();
    importops::importer::slack::prepare(generated.archive.path(), &limits(), &mut sink).unwrap();
    let e = &generated.expected;
    assert_eq!(sink.total(), e.total);
    assert_eq!(sink.last(|c| c.users), Some(e.users));
    assert_eq!(sink.last(|c| c.channels), Some(e.channels));
    assert_eq!(sink.last(|c| c.messages), Some(e.messages));
    let staged = sink.records(DataType::Message);
    assert_eq!(staged.len() as u64, e.staged_messages);
    assert_eq!(
        staged
            .iter()
            .filter(|m| m.get("_importFile").is_some())
            .count() as u64,
        e.files
    );
    let user_ids: Vec<&str> = sink
        .records(DataType::User)
        .iter()
        .map(|u| u["importIds"][0].as_str().unwrap())
        .collect();
    assert_eq!(user_ids, e.user_ids);
    let names: Vec<&str> = sink
        .records(DataType::Channel)
        .iter()
        .filter(|c| c["t"] != "d")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, e.channel_names);
    // channels.json's 5, groups.json's group and the direct messages' entry.
    assert_eq!(e.selection_channels(), 7);
}

#[test]
fn slack_generation_of_200_000_messages_is_fast() {
    let started = std::time::Instant::now();
    let generated = archives::slack_archive(11, 200, 20, 200_000);
    let took = started.elapsed();
    assert_eq!(generated.expected.messages, 200_000);
    assert!(took.as_secs() < 20, "{took:?}");
}

// ---- Slack users ----

fn slack_users_file(text: &[u8]) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text).unwrap();
    f
}

#[test]
fn slack_users_rocketchat_fixture() {
    // Rocket.Chat's e2e fixture slack_export_users.csv.
    let f = slack_users_file(
        b"username,email,status,billing-active,has-2fa,has-sso,userid,fullname,displayname,expiration-timestamp\n\
user4.test,user4@email.com.br,Primary Owner,0,0,0,U03TVFGMHUY,user4.test,,\n\
user5.test,user5@email.com.br,Primary Owner,0,0,0,U0G9QF9C6,user5.test,,\n\
user6.test,user6@email.com.br,Primary Owner,0,0,0,U03TVFGMH,user6.test,,\n",
    );
    let mut sink = Collect::default();
    importops::importer::slack_users::prepare(f.path(), &limits(), &mut sink).unwrap();
    assert_eq!(
        sink.steps(),
        ["importer_preparing_users", "importer_user_selection"]
    );
    let users = sink.records(DataType::User);
    assert_eq!(users.len(), 3);
    assert_eq!(
        users[0],
        &json!({"emails":["user4@email.com.br"],"importIds":["user4@email.com.br"],"username":"user4.test","name":"user4.test","type":"user"})
    );
    assert_eq!(sink.total(), 3);
    assert_eq!(sink.last(|c| c.users), Some(3));
}

#[test]
fn slack_users_statuses_names_and_skips() {
    let f = slack_users_file(
        b"username,email,status,billing-active,has-2fa,has-sso,userid,fullname,displayname,expiration-timestamp\n\
a,a@x.com,Admin,1,0,0,U1,Full A,Disp A,\n\
b,b@x.com,Bot,1,0,0,U2,,Disp B,\n\
c,c@x.com,Deactivated,1,0,0,U3,,,\n\
d,,Member,1,0,0,U4,,,\n",
    );
    let mut sink = Collect::default();
    importops::importer::slack_users::prepare(f.path(), &limits(), &mut sink).unwrap();
    let users = sink.records(DataType::User);
    assert_eq!(users.len(), 3, "the row without an e-mail is skipped");
    assert_eq!(users[0]["roles"], json!(["admin"]));
    assert_eq!(users[0]["name"], "Full A");
    assert_eq!(users[1]["roles"], json!(["bot"]));
    assert_eq!(users[1]["type"], "bot");
    assert_eq!(users[1]["name"], "Disp B");
    assert_eq!(users[2]["deleted"], true);
    assert_eq!(users[2]["name"], "c");
    assert_eq!(sink.last(|c| c.users), Some(3));

    let (file, expected) = archives::slack_users_csv(40);
    let mut sink = Collect::default();
    importops::importer::slack_users::prepare(file.path(), &limits(), &mut sink).unwrap();
    let ids: Vec<&str> = sink
        .records(DataType::User)
        .iter()
        .map(|u| u["importIds"][0].as_str().unwrap())
        .collect();
    assert_eq!(ids, expected.user_ids);
    assert_eq!(sink.total(), expected.total);
}

#[test]
fn slack_users_bad_files() {
    // Only the header: nothing to import.
    let f = slack_users_file(b"username,email,status\n");
    let mut sink = Collect::default();
    importops::importer::slack_users::prepare(f.path(), &limits(), &mut sink).unwrap();
    assert_eq!(
        sink.steps(),
        ["importer_preparing_users", "importer_import_failed"]
    );
    assert_eq!(sink.total(), 0);

    let f = slack_users_file(b"username,email,status\na,a@x.com\n");
    let mut sink = Collect::default();
    let err = importops::importer::slack_users::prepare(f.path(), &limits(), &mut sink)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "Invalid Record Length: expect 3, got 2 on line 2"
    );
    assert!(sink.records(DataType::User).is_empty());

    let f = slack_users_file(b"username,email,status\nz\xfc,a@x.com,Member\n");
    let err =
        importops::importer::slack_users::prepare(f.path(), &limits(), &mut Collect::default())
            .err()
            .unwrap();
    assert!(err.to_string().contains("is not UTF-8 text"), "{err}");

    let f = slack_users_file(b"username,email,status\na,a@x.com,Member\n");
    let err = importops::importer::slack_users::prepare(
        f.path(),
        &Limits { max_bytes: 10 },
        &mut Collect::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("more than 10 bytes"), "{err}");
}
