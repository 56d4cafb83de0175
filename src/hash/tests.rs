use super::*;

#[test]
fn sha256_known_answers() {
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(
        sha256_hex(&vec![b'a'; 1_000_000]),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
}

/// Every length from 0 to 199 (all padding cases around the 55/56/64-byte block edges), checked
/// as one digest of the concatenated digests, computed independently with Python's hashlib.
#[test]
fn sha256_every_padding_length() {
    let mut acc = String::new();
    for n in 0..200usize {
        let data: Vec<u8> = (0..n).map(|i| ((i * 7 + n) % 256) as u8).collect();
        acc.push_str(&sha256_hex(&data));
    }
    assert_eq!(
        sha256_hex(acc.as_bytes()),
        "b8f5d54cfd1cbbcae2003d1365d9fab7e5bc61813fa3486ee6a6a6bf38db4745"
    );
}

#[test]
fn canonical_json_sorts_keys_at_every_level() {
    let a: Value =
        serde_json::from_str(r#"{"b": 1, "a": {"y": [2, {"k": 1, "j": 2}], "x": "s"}}"#).unwrap();
    let b: Value =
        serde_json::from_str(r#"{"a": {"x": "s", "y": [2, {"j": 2, "k": 1}]}, "b": 1}"#).unwrap();
    assert_eq!(
        canonical_json(&a),
        r#"{"a":{"x":"s","y":[2,{"j":2,"k":1}]},"b":1}"#
    );
    assert_eq!(canonical_json(&a), canonical_json(&b));
    assert_eq!(hash_value(&a), hash_value(&b));
    assert_eq!(hash_value(&a).len(), 16);
}
