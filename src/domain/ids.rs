//! Document ids: Meteor's 17-character random ids and MongoDB's 24-hex ObjectIds.

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
