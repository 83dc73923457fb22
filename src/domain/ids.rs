//! Document ids: Meteor's 17-character random ids and MongoDB's 24-hex ObjectIds.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;

/// The alphabet of Meteor's `Random.id()`: no 0, 1, I, O, V, l, o, u (easily confused).
const METEOR_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";
const METEOR_ID_LEN: usize = 17;

/// A new Meteor id from the operating system's random source.
pub fn new_meteor_id() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..METEOR_ID_LEN)
        .map(|_| METEOR_ALPHABET[rng.gen_range(0..METEOR_ALPHABET.len())] as char)
        .collect()
}

/// This process's part of the ObjectIds it makes: 5 random bytes, drawn once.
static OBJECT_ID_PROCESS: LazyLock<[u8; 5]> = LazyLock::new(|| rand::rngs::OsRng.r#gen());

/// The counter of the ObjectIds this process makes, 24 bits used, starting at a random value.
static OBJECT_ID_COUNTER: LazyLock<AtomicU32> =
    LazyLock::new(|| AtomicU32::new(rand::rngs::OsRng.gen_range(0..1 << 24)));

/// A new ObjectId as 24 lowercase hex digits, made as MongoDB's drivers make them
/// (`new ObjectId().toHexString()`): 4 bytes of seconds since the epoch (big-endian), 5 bytes
/// random for this process, and a 3-byte counter; so ids sort by the second they were made in
/// (docs/compatibility.md#1-endpoint).
pub fn new_object_id() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as u32;
    let count = OBJECT_ID_COUNTER.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&seconds.to_be_bytes());
    bytes[4..9].copy_from_slice(&*OBJECT_ID_PROCESS);
    bytes[9..].copy_from_slice(&count.to_be_bytes()[1..]);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn is_meteor_id(s: &str) -> bool {
    s.len() == METEOR_ID_LEN && s.bytes().all(|b| METEOR_ALPHABET.contains(&b))
}

pub fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An id Rocket.Chat could have written for a document.
pub fn is_document_id(s: &str) -> bool {
    is_meteor_id(s) || is_object_id(s)
}

/// A document id packed losslessly into 128 bits, so that a million ids seen in one batch take
/// little memory: a Meteor id at 6 bits a character, an ObjectId at 5 (its hex digits keep
/// their case, as they are distinct ids), the top bit telling the two apart. `None` for
/// anything else.
pub fn pack_document_id(s: &str) -> Option<u128> {
    if is_meteor_id(s) {
        Some(s.bytes().fold(0, |acc, b| {
            let digit = METEOR_ALPHABET.iter().position(|&a| a == b).unwrap_or(0);
            acc << 6 | digit as u128
        }))
    } else if is_object_id(s) {
        let packed = s.bytes().fold(0u128, |acc, b| {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                _ => b - b'A' + 16,
            };
            acc << 5 | u128::from(digit)
        });
        Some(1 << 127 | packed)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_meteor_ids_and_differ() {
        let a = new_meteor_id();
        let b = new_meteor_id();
        assert!(is_meteor_id(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn new_object_ids_are_mongodb_object_ids_in_creation_order() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let ids: Vec<String> = (0..1000).map(|_| new_object_id()).collect();
        for id in &ids {
            assert!(is_object_id(id), "{id}");
            assert_eq!(id.to_lowercase(), *id);
        }
        // The timestamp is the first 4 bytes, in seconds.
        let seconds = u64::from_str_radix(&ids[0][..8], 16).unwrap();
        assert!(
            seconds >= before && seconds <= before + 2,
            "{seconds} vs {before}"
        );
        // The process part is the same in every id; the counter goes up (mod 2^24; other
        // tests running at the same time may take values in between).
        assert!(ids.iter().all(|id| id[8..18] == ids[0][8..18]));
        let counters: Vec<u32> = ids
            .iter()
            .map(|id| u32::from_str_radix(&id[18..], 16).unwrap())
            .collect();
        for pair in counters.windows(2) {
            let step = pair[1].wrapping_sub(pair[0]) & 0x00ff_ffff;
            assert!((1..100_000).contains(&step), "{pair:?}");
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn recognises_both_id_forms() {
        assert!(is_document_id("MJxTRZsYdho8Ww2qq"));
        assert!(is_document_id("64d69545ee8ae821983005f5"));
        assert!(!is_document_id("64d69545ee8ae821983005fz"));
        assert!(!is_document_id("MJxTRZsYdho8Ww2q"));
        assert!(
            !is_document_id("MJxTRZsYdho8Ww2q0"),
            "0 is not in Meteor's alphabet"
        );
        assert!(!is_document_id(""));
    }

    #[test]
    fn packed_ids_differ_when_the_ids_do() {
        let ids = [
            "MJxTRZsYdho8Ww2qq",
            "MJxTRZsYdho8Ww2qr",
            "22222222222222222",
            "zzzzzzzzzzzzzzzzz",
            "64d69545ee8ae821983005f5",
            "64D69545EE8AE821983005F5",
            "000000000000000000000000",
            "ffffffffffffffffffffffff",
            "FFFFFFFFFFFFFFFFFFFFFFFF",
        ];
        let packed: std::collections::HashSet<u128> =
            ids.iter().map(|id| pack_document_id(id).unwrap()).collect();
        assert_eq!(packed.len(), ids.len());
        assert_eq!(pack_document_id("short"), None);
        assert_eq!(pack_document_id("MJxTRZsYdho8Ww2q0"), None);
    }
}
