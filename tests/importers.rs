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
    let bytes = std::fs::read(good.path()).unwrap();
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
