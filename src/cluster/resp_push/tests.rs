use super::*;

fn bulk(bytes: &[u8]) -> Reply {
    Reply::bulk(bytes)
}

fn array(items: Vec<Reply>) -> Reply {
    Reply::Array(Some(items))
}

#[test]
fn messages() {
    let message = array(vec![bulk(b"message"), bulk(b"gw:s:{a}"), bulk(b"\r\n{}")]);
    assert_eq!(
        push(&message),
        Some(Push::Message {
            channel: b"gw:s:{a}",
            payload: b"\r\n{}"
        })
    );
    let pmessage = array(vec![
        bulk(b"pmessage"),
        bulk(b"gw:*"),
        bulk(b"gw:ctl"),
        bulk(b"x"),
    ]);
    assert_eq!(
        push(&pmessage),
        Some(Push::PatternMessage {
            pattern: b"gw:*",
            channel: b"gw:ctl",
            payload: b"x"
        })
    );
}

#[test]
fn subscriptions_and_pongs() {
    let subscribe = array(vec![bulk(b"subscribe"), bulk(b"c"), Reply::Integer(1)]);
    assert_eq!(
        push(&subscribe),
        Some(Push::Subscribed {
            pattern: false,
            name: b"c",
            count: 1
        })
    );
    let psubscribe = array(vec![bulk(b"psubscribe"), bulk(b"c*"), Reply::Integer(2)]);
    assert_eq!(
        push(&psubscribe),
        Some(Push::Subscribed {
            pattern: true,
            name: b"c*",
            count: 2
        })
    );
    let unsubscribe = array(vec![bulk(b"unsubscribe"), bulk(b"c"), Reply::Integer(0)]);
    assert_eq!(
        push(&unsubscribe),
        Some(Push::Unsubscribed {
            pattern: false,
            name: Some(b"c"),
            count: 0
        })
    );
    // UNSUBSCRIBE with nothing subscribed names no channel.
    let none = array(vec![
        bulk(b"punsubscribe"),
        Reply::Bulk(None),
        Reply::Integer(0),
    ]);
    assert_eq!(
        push(&none),
        Some(Push::Unsubscribed {
            pattern: true,
            name: None,
            count: 0
        })
    );
    assert_eq!(
        push(&array(vec![bulk(b"pong"), bulk(b"")])),
        Some(Push::Pong(b""))
    );
}

#[test]
fn anything_else_is_no_push() {
    for reply in [
        Reply::Simple(b"OK".to_vec()),
        Reply::Integer(1),
        Reply::Array(None),
        array(Vec::new()),
        // The kind is a bulk string, lowercase, with exactly its fields.
        array(vec![
            Reply::Simple(b"message".to_vec()),
            bulk(b"c"),
            bulk(b"p"),
        ]),
        array(vec![bulk(b"MESSAGE"), bulk(b"c"), bulk(b"p")]),
        array(vec![bulk(b"message"), bulk(b"c")]),
        array(vec![bulk(b"message"), bulk(b"c"), bulk(b"p"), bulk(b"q")]),
        array(vec![bulk(b"message"), Reply::Bulk(None), bulk(b"p")]),
        array(vec![bulk(b"message"), bulk(b"c"), Reply::Integer(1)]),
        array(vec![bulk(b"subscribe"), bulk(b"c"), bulk(b"1")]),
        array(vec![
            bulk(b"subscribe"),
            Reply::Bulk(None),
            Reply::Integer(0),
        ]),
        array(vec![bulk(b"pong")]),
        array(vec![bulk(b"smessage"), bulk(b"c"), bulk(b"p")]),
    ] {
        assert_eq!(push(&reply), None, "{reply:?}");
    }
}
