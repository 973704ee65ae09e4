use super::*;

#[test]
fn a_command_is_an_array_of_bulk_strings() {
    let mut out = Vec::new();
    let key: &[u8] = b"gw:s:{room}";
    encode(&mut out, &[b"SET", key, b"a\r\nb"]);
    assert_eq!(
        out,
        b"*3\r\n$3\r\nSET\r\n$11\r\ngw:s:{room}\r\n$4\r\na\r\nb\r\n".to_vec()
    );
    // Appended, never replacing what the buffer held.
    encode(&mut out, &[b"PING"]);
    assert!(out.ends_with(
        b"*3\r\n$3\r\nSET\r\n$11\r\ngw:s:{room}\r\n$4\r\na\r\nb\r\n*1\r\n$4\r\nPING\r\n"
    ));
    let mut out = Vec::new();
    encode(&mut out, &[b"GET", b""]);
    assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n".to_vec());
    let mut out = Vec::new();
    encode(&mut out, &[]);
    assert_eq!(out, b"*0\r\n".to_vec());
}

#[test]
fn the_size_is_reserved_once_and_exactly() {
    let value = vec![0u8; 1000];
    let mut out = Vec::new();
    encode(&mut out, &[b"SET", b"k", &value]);
    assert_eq!(out.len(), 4 + 9 + 7 + 7 + 1000 + 2);
    assert_eq!(out.capacity(), out.len());
    // Ten-digit lengths and argument counts.
    let args: Vec<&[u8]> = vec![b"x"; 1234];
    let mut out = Vec::new();
    encode(&mut out, &args);
    assert_eq!(out.capacity(), out.len());
    assert!(out.starts_with(b"*1234\r\n$1\r\nx\r\n"));
}

#[test]
fn integer_arguments() {
    for (n, text) in [
        (0, "0"),
        (7, "7"),
        (-1, "-1"),
        (2000, "2000"),
        (i64::MAX, "9223372036854775807"),
        (i64::MIN, "-9223372036854775808"),
    ] {
        assert_eq!(&*Int::new(n), text.as_bytes());
    }
    let mut out = Vec::new();
    encode(
        &mut out,
        &[b"SET", b"lease", b"n1", b"NX", b"PX", &Int::new(2000)],
    );
    assert!(out.ends_with(b"$2\r\nPX\r\n$4\r\n2000\r\n"));
}

#[test]
fn a_pipeline_counts_its_commands() {
    let mut pipeline = Pipeline::new();
    assert!(pipeline.is_empty());
    pipeline.command(&[b"INCR", b"a"]).command(&[b"INCR", b"b"]);
    assert_eq!(pipeline.len(), 2);
    let mut expected = Vec::new();
    encode(&mut expected, &[b"INCR", b"a"]);
    encode(&mut expected, &[b"INCR", b"b"]);
    assert_eq!(pipeline.bytes(), &expected[..]);
    assert_eq!(pipeline.take(), (expected, 2));
    assert!(pipeline.is_empty());
    assert!(pipeline.bytes().is_empty());
}
