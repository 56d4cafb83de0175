use serde_json::{json, Value};

use super::Scan;

/// The scan of `text` fed in pieces of `piece` bytes.
fn scan(text: &str, piece: usize) -> Scan {
    let mut s = Scan::default();
    for chunk in text.as_bytes().chunks(piece) {
        s.feed(chunk);
    }
    s
}

/// The parsed tree's node count, keys included: what the scan estimates.
fn nodes(v: &Value) -> u64 {
    1 + match v {
        Value::Array(items) => items.iter().map(nodes).sum(),
        Value::Object(map) => map.values().map(|v| 1 + nodes(v)).sum(),
        _ => 0,
    }
}

#[test]
fn counts_the_values_of_the_parsed_tree_in_any_split() {
    let messages = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t", "arguments": {"a": [1, 2.5e3, -3, true, false, null, "x,y:[{}]"], "b": {}, "c": []}}}),
        json!([0, 0, 0, [0, [0, {"k": "v\"}\\"}]]]),
        json!("just a string with \\ and \" inside"),
        json!(12345),
    ];
    for m in &messages {
        let text = m.to_string();
        for piece in [1, 2, 3, 7, text.len()] {
            assert_eq!(
                scan(&text, piece).values(),
                nodes(m),
                "{text} in pieces of {piece}"
            );
        }
    }
    let spaced = "{ \"a\" : [ 1 , 2 ] ,\t\"b\" : null }";
    assert_eq!(
        scan(spaced, 1).values(),
        7,
        "object, a, array, 1, 2, b, null"
    );
}

#[test]
fn finds_the_top_level_id_wherever_it_is() {
    // The MCP TypeScript SDK writes `{method, params, jsonrpc, id}`: the id comes after the
    // arguments, which are what makes a message too large.
    let big = "x".repeat(100_000);
    let last = format!(
        r#"{{"method":"tools/call","params":{{"name":"t","arguments":{{"id":"inner","s":"{big}"}}}},"jsonrpc":"2.0","id":42}}"#
    );
    for piece in [1, 5, 4096, last.len()] {
        assert_eq!(scan(&last, piece).id(), json!(42), "pieces of {piece}");
    }
    assert_eq!(
        scan(r#"{"id":"req-7","method":"ping"}"#, 3).id(),
        json!("req-7")
    );
    assert_eq!(scan(r#"{"id" : -1.5e2 }"#, 1).id(), json!(-150.0));
    assert_eq!(scan(r#"{"id":"a\"b"}"#, 1).id(), json!("a\"b"));
    assert_eq!(
        scan(r#"{"id":1,"id":2}"#, 1).id(),
        json!(2),
        "the last one, as parsed"
    );
}

#[test]
fn an_id_that_is_absent_nested_or_not_an_id_is_null() {
    for text in [
        r#"{"method":"ping"}"#,
        r#"{"params":{"id":5},"method":"x"}"#,
        r#"[{"id":5}]"#,
        r#"{"idx":5,"xid":6,"i":7}"#,
        r#"{"id":{"n":1}}"#,
        r#"{"id":[1]}"#,
        r#"{"id":true}"#,
        r#"{"id":null}"#,
        r#"{"id":"#,
        r#"{"id":"unterminated"#,
    ] {
        assert_eq!(scan(text, 1).id(), Value::Null, "{text}");
    }
    let long = format!(r#"{{"id":"{}"}}"#, "9".repeat(100));
    assert_eq!(scan(&long, 7).id(), Value::Null, "too long to be an id");
}

#[test]
fn junk_and_depth_never_panic() {
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    assert_eq!(scan(&deep, 13).values(), 10_000);
    let deep_objects = "{\"a\":".repeat(300) + "1" + &"}".repeat(300);
    assert_eq!(scan(&deep_objects, 1).values(), 601);
    for junk in ["}}}]]]", "\\\"", ":::,,,", "\"\\", "tru", "\u{0}\u{7f}"] {
        scan(junk, 1);
    }
}
