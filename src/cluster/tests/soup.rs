//! The byte soup: random replies come back equal however they are split; random garbage
//! gives the same replies and the same end whole and in pieces, and never a panic.

use super::*;

#[test]
fn random_replies_split_anywhere_come_back_equal() {
    let mut rng = Rng::new(0x5eed_0001);
    let mut bytes = 0;
    for round in 0..2000 {
        let replies: Vec<Reply> = (0..1 + rng.below(8))
            .map(|_| random_reply(&mut rng, 4))
            .collect();
        let mut stream = Vec::new();
        for reply in &replies {
            encode_reply(reply, &mut stream);
        }
        bytes += stream.len();
        let expected = Decoded {
            replies: replies.clone(),
            end: Ok(0),
        };
        assert_eq!(decode_whole(&stream, &LIMITS), expected, "round {round}");
        assert_eq!(
            decode_in_pieces(&stream, &LIMITS, &mut rng),
            expected,
            "round {round}"
        );
        // Cut short anywhere: the replies before the cut, and the rest held as incomplete.
        let cut = rng.below(stream.len());
        let whole = decode_whole(&stream[..cut], &LIMITS);
        assert!(replies.starts_with(&whole.replies));
        assert!(whole.end.is_ok());
        assert_eq!(decode_in_pieces(&stream[..cut], &LIMITS, &mut rng), whole);
    }
    assert!(bytes > 100_000, "the soup was thin: {bytes} bytes");
}

#[test]
fn garbage_never_panics_and_ends_alike_however_split() {
    let mut rng = Rng::new(0x5eed_0002);
    let limits = [
        LIMITS,
        RespLimits {
            max_bulk: 8,
            max_reply: 48,
            max_array: 3,
            max_depth: 2,
        },
    ];
    let mut errors = 0;
    for round in 0..20_000 {
        let stream = garbage(&mut rng);
        let limits = &limits[round % 2];
        let whole = decode_whole(&stream, limits);
        errors += usize::from(whole.end.is_err());
        assert_eq!(
            decode_in_pieces(&stream, limits, &mut rng),
            whole,
            "round {round}: {stream:?}"
        );
    }
    // The garbage is garbage often enough to exercise the refusals.
    assert!(errors > 5000, "only {errors} errors");
}
