//! Archives made by the tests: small zips of given entries, and generated CSV and Slack exports
//! of N users, channels and messages (deterministic for a seed), each with the counts an import
//! of it must show, worked out here from what was written, never by running an importer.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

/// A zip in a temporary file, removed when dropped.
pub struct TempArchive {
    file: tempfile::TempPath,
}

impl TempArchive {
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The zip's bytes (to upload it).
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.file).expect("read the archive")
    }

    /// Keeps the file past the end of the test (for a server that reads it by path).
    pub fn keep(self) -> PathBuf {
        self.file.keep().expect("keep the archive")
    }
}

/// A zip of `entries` (name, content), deflated, in that order. A name ending in `/` is a
/// directory entry.
pub fn zip_of(entries: &[(&str, &[u8])]) -> TempArchive {
    let mut writer = ZipOut::new();
    for (name, content) in entries {
        if name.ends_with('/') {
            writer.dir(name);
        } else {
            writer.file(name, content);
        }
    }
    writer.finish()
}

/// Writes a zip entry by entry into a temporary file.
pub struct ZipOut {
    zip: zip::ZipWriter<std::fs::File>,
    file: tempfile::TempPath,
    options: SimpleFileOptions,
}

impl ZipOut {
    pub fn new() -> Self {
        let named = tempfile::Builder::new()
            .suffix(".zip")
            .tempfile()
            .expect("a temporary file");
        let (file, path) = named.into_parts();
        ZipOut {
            zip: zip::ZipWriter::new(file),
            file: path,
            options: SimpleFileOptions::default()
                .compression_method(CompressionMethod::Deflated)
                .compression_level(Some(1)),
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.zip
            .add_directory(name, self.options)
            .expect("a zip directory");
    }

    pub fn file(&mut self, name: &str, content: &[u8]) {
        self.zip
            .start_file(name, self.options)
            .expect("a zip entry");
        self.zip.write_all(content).expect("write a zip entry");
    }

    pub fn finish(self) -> TempArchive {
        self.zip.finish().expect("finish the zip");
        TempArchive { file: self.file }
    }
}

/// Part `i` of `total` split as evenly as possible over `parts`.
fn share(total: u64, parts: u64, i: u64) -> u64 {
    total.checked_div(parts).map_or(0, |q| {
        q + u64::from(i < total.checked_rem(parts).unwrap_or(0))
    })
}

/// A small deterministic generator (xorshift64*), so that a seed gives the same archive.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What an import of a generated archive must show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// `count.users`: user rows / entries of `users.json`.
    pub users: u64,
    /// `count.channels`.
    pub channels: u64,
    /// `count.messages`: every message row / array element in the message files.
    pub messages: u64,
    /// `count.contacts`.
    pub contacts: u64,
    /// `count.total`.
    pub total: u64,
    /// Staged messages: `getImportFileData`'s `message_count`.
    pub staged_messages: u64,
    /// `getImportFileData`'s users (`user_id` = `importIds[0]`), in archive order.
    pub user_ids: Vec<String>,
    /// `getImportFileData`'s channels other than direct messages, by name, in archive order.
    pub channel_names: Vec<String>,
    /// Whether `getImportFileData` lists the `__directMessages__` entry.
    pub has_direct_messages: bool,
    /// Staged messages that carry a file to download (`_importFile`).
    pub files: u64,
}

impl Expected {
    /// The length of `getImportFileData`'s `channels`: every channel that is not a direct
    /// message, and one `__directMessages__` entry when there are direct messages.
    pub fn selection_channels(&self) -> u64 {
        self.channel_names.len() as u64 + u64::from(self.has_direct_messages)
    }
}

/// A generated archive and what importing it must show.
pub struct Generated {
    pub archive: TempArchive,
    pub expected: Expected,
}

/// A CSV import zip: `users.csv` with `users` rows, `channels.csv` with `channels` rows (each
/// with a folder of messages), `messages` channel messages spread over the channels (one file
/// per channel, two for every third channel), and `dms` direct messages between users.
pub fn csv_archive(seed: u64, users: u64, channels: u64, messages: u64, dms: u64) -> Generated {
    let mut rng = Rng::new(seed);
    let mut zip = ZipOut::new();
    let mut expected = Expected::default();

    let usernames: Vec<String> = (0..users.max(1))
        .map(|i| format!("user.{seed}.{i}"))
        .collect();
    if users > 0 {
        let mut text = String::new();
        for (i, name) in usernames.iter().enumerate() {
            // Spaces around fields are trimmed by the importer.
            let _ = writeln!(text, " {name} , {name}@example.com , User {i} ");
        }
        zip.file("users.csv", text.as_bytes());
        expected.users = users;
        expected.user_ids = usernames.clone();
    }

    let names: Vec<String> = (0..channels).map(|i| format!("channel-{i}")).collect();
    if channels > 0 {
        let mut text = String::new();
        for (i, name) in names.iter().enumerate() {
            let owner = &usernames[rng.below(usernames.len() as u64) as usize];
            let kind = if i % 3 == 0 { "private" } else { "public" };
            let a = &usernames[rng.below(usernames.len() as u64) as usize];
            let b = &usernames[rng.below(usernames.len() as u64) as usize];
            let _ = writeln!(text, "\"{name}\",\"{owner}\",\"{kind}\",\"{a};{b}\"");
        }
        zip.file("channels.csv", text.as_bytes());
        expected.channels = channels;
        expected.channel_names = names.clone();
    }

    // Channel messages: channel c gets an equal share; every third channel's share is split
    // over two files.
    if channels > 0 {
        let mut ts = 1_700_000_000_000u64;
        for (c, name) in names.iter().enumerate() {
            let share = share(messages, channels, c as u64);
            let files: u64 = if c % 3 == 2 { 2 } else { 1 };
            let mut written = 0;
            for f in 0..files {
                let count = if f + 1 == files {
                    share - written
                } else {
                    share / 2
                };
                written += count;
                let mut text = String::new();
                for m in 0..count {
                    let author = &usernames[rng.below(usernames.len() as u64) as usize];
                    ts += 1 + rng.below(5000);
                    let _ = writeln!(text, "{author},{ts},\"message {m}, of \"\"{name}\"\"\"");
                }
                zip.file(&format!("{name}/messages{f}.csv"), text.as_bytes());
            }
        }
        expected.messages += messages;
        expected.staged_messages += messages;
    }

    if dms > 0 {
        let mut text = String::new();
        for m in 0..dms {
            let a = rng.below(usernames.len() as u64) as usize;
            let b = (a + 1 + rng.below(usernames.len().max(2) as u64 - 1) as usize)
                % usernames.len().max(1);
            let _ = writeln!(
                text,
                "{},{},{},dm {m}",
                usernames[a],
                usernames[b],
                1_600_000_000_000u64 + m
            );
        }
        zip.file("directmessages/messages.csv", text.as_bytes());
        expected.messages += dms;
        expected.staged_messages += dms;
        expected.has_direct_messages = true;
    }

    expected.total = expected.users + expected.channels + expected.messages + expected.contacts;
    Generated {
        archive: zip.finish(),
        expected,
    }
}

/// A Slack export zip: `users.json` (`users` users, one of them a bot), `channels.json` with
/// `channels` public channels and one without a creator (not imported), `groups.json` with one
/// private group, `dms.json` with one DM, and `messages` messages spread over the public
/// channels' folders, one file per day of at most 1 000 messages. About one message in 20 is a
/// `channel_join` (staged), one in 50 has two files (two extra hidden messages), one in 100 is
/// a `bot_add` (not staged), one in 200 is a thread reply; every tenth has reactions.
pub fn slack_archive(seed: u64, users: u64, channels: u64, messages: u64) -> Generated {
    let mut rng = Rng::new(seed);
    let mut zip = ZipOut::new();
    let mut expected = Expected::default();
    let users = users.max(1);
    let user_ids: Vec<String> = (0..users).map(|i| format!("U{seed:04}{i:06}")).collect();

    let mut text = String::from("[");
    for (i, id) in user_ids.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let bot = i == 1;
        let _ = write!(
            text,
            r#"{{"id":"{id}","name":"slack.user{i}","deleted":false,"is_bot":{bot},"tz_offset":-10800,"profile":{{"real_name":"Slack User {i}","email":"slack.user{i}@example.com","image_512":"https://avatars.example.com/{id}.png","status_text":"","title":"Title {i}"}}}}"#
        );
    }
    text.push(']');
    zip.file("users.json", text.as_bytes());
    expected.users = users;
    expected.user_ids = user_ids.clone();

    let channel_ids: Vec<String> = (0..channels).map(|i| format!("C{seed:04}{i:06}")).collect();
    let channel_names: Vec<String> = (0..channels)
        .map(|i| format!("slack-channel-{i}"))
        .collect();
    let mut text = String::from("[");
    for i in 0..channels as usize {
        let creator = &user_ids[rng.below(users) as usize];
        let member = &user_ids[rng.below(users) as usize];
        let _ = write!(
            text,
            r#"{{"id":"{}","name":"{}","created":1500000000,"creator":"{creator}","is_archived":false,"is_general":{},"members":["{creator}","{member}","USLACKBOT"],"topic":{{"value":"topic {i}","creator":"","last_set":0}},"purpose":{{"value":"","creator":"","last_set":0}}}},"#,
            channel_ids[i],
            channel_names[i],
            i == 0
        );
    }
    text.push_str(r#"{"id":"CNOCREATOR","name":"no-creator","created":1500000000,"creator":null,"members":[]}]"#);
    zip.file("channels.json", text.as_bytes());
    let group = format!("G{seed:04}000000");
    zip.file(
        "groups.json",
        format!(
            r#"[{{"id":"{group}","name":"private-group","created":1500000000,"creator":"{}","is_archived":true,"members":["{}"]}}]"#,
            user_ids[0], user_ids[0]
        )
        .as_bytes(),
    );
    let dm = format!("D{seed:04}000000");
    zip.file(
        "dms.json",
        format!(
            r#"[{{"id":"{dm}","created":1500000000,"members":["{}","{}"]}}]"#,
            user_ids[0],
            user_ids[users as usize - 1]
        )
        .as_bytes(),
    );
    expected.channels = channels + 2;
    expected.channel_names = channel_names.clone();
    expected.channel_names.push("private-group".into());
    expected.has_direct_messages = true;

    if channels > 0 {
        let mut n = 0u64;
        for (c, name) in channel_names.iter().enumerate() {
            let share = share(messages, channels, c as u64);
            let mut day = 0u64;
            let mut left = share;
            while left > 0 {
                let count = left.min(1000);
                left -= count;
                let mut text = String::with_capacity(count as usize * 200);
                text.push('[');
                let mut parent: Option<String> = None;
                for m in 0..count {
                    if m > 0 {
                        text.push(',');
                    }
                    n += 1;
                    let ts = format!("{}.{:06}", 1_600_000_000 + day * 86_400 + m, n % 1_000_000);
                    let user = &user_ids[rng.below(users) as usize];
                    if n.is_multiple_of(100) {
                        let _ = write!(
                            text,
                            r#"{{"type":"message","subtype":"bot_add","ts":"{ts}","user":"{user}","text":"added an integration"}}"#
                        );
                    } else if n.is_multiple_of(20) {
                        let _ = write!(
                            text,
                            r#"{{"type":"message","subtype":"channel_join","ts":"{ts}","user":"{user}","text":"<@{user}> has joined the channel"}}"#
                        );
                        expected.staged_messages += 1;
                    } else {
                        let _ = write!(
                            text,
                            r#"{{"type":"message","ts":"{ts}","user":"{user}","text":"Hello &lt;world&gt; <@{user}> number {n} in <#{}|{name}>""#,
                            channel_ids[c]
                        );
                        if n.is_multiple_of(10) {
                            let _ = write!(
                                text,
                                r#","reactions":[{{"name":"thumbsup","users":["{user}","USLACKBOT"],"count":2}},{{"name":"tada","users":["{user}"],"count":1}}]"#
                            );
                        }
                        if n % 50 == 1 {
                            let _ = write!(
                                text,
                                r#","files":[{{"id":"F{n}a","name":"a.png","size":10,"url_private_download":"https://files.example.com/F{n}a"}},{{"id":"F{n}b","name":"b.txt","size":20,"url_private_download":"https://files.example.com/F{n}b","is_external":false}}]"#
                            );
                            expected.staged_messages += 2;
                            expected.files += 2;
                        }
                        match &parent {
                            Some(p) if n % 200 == 3 => {
                                let _ = write!(text, r#","thread_ts":"{p}""#);
                            }
                            _ => {}
                        }
                        text.push('}');
                        expected.staged_messages += 1;
                        if parent.is_none() {
                            parent = Some(ts.clone());
                        }
                    }
                }
                text.push(']');
                let date = 20_200_101 + day;
                zip.file(&format!("{name}/{date}.json"), text.as_bytes());
                expected.messages += count;
                day += 1;
            }
        }
    }

    expected.total = expected.users + expected.channels + expected.messages;
    Generated {
        archive: zip.finish(),
        expected,
    }
}

/// A Slack users CSV (not a zip): the export's header and `users` rows; every fifth is a
/// `Deactivated` user, the second a `Bot`, the third an `Admin`, and one row has no e-mail
/// (skipped). Returns the file and its expected counts.
pub fn slack_users_csv(users: u64) -> (TempArchive, Expected) {
    let named = tempfile::Builder::new()
        .suffix(".csv")
        .tempfile()
        .expect("a temporary file");
    let (mut file, path) = named.into_parts();
    let mut text = String::from(
        "username,email,status,billing-active,has-2fa,has-sso,userid,fullname,displayname,expiration-timestamp\n",
    );
    let mut expected = Expected::default();
    for i in 0..users {
        let status = match i {
            1 => "Bot",
            2 => "Admin",
            _ if i % 5 == 4 => "Deactivated",
            _ => "Member",
        };
        let _ = writeln!(
            text,
            "csv.user{i},csv.user{i}@example.com,{status},1,0,0,U{i:08},Csv User {i},,"
        );
        expected.user_ids.push(format!("csv.user{i}@example.com"));
    }
    text.push_str("no.email,,Member,1,0,0,UNOEMAIL,,,\n");
    file.write_all(text.as_bytes()).expect("write the CSV");
    expected.users = users;
    expected.total = users;
    (TempArchive { file: path }, expected)
}
