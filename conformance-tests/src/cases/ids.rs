//! A7. Stream ids: special characters never alias, maximum length, invalid ids.

use streamstore::{ErrorKind, StreamId, MAX_STREAM_ID_BYTES};

use crate::case::{case_list, Case, Outcome};
use crate::support::{expect_kind, put, read_all, texts, Ctx};
use crate::{ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    case_list!("ids";
        special_character_ids_do_not_alias,
        maximum_length_id_works,
        invalid_ids_are_rejected,
    )
}

async fn special_character_ids_do_not_alias(ctx: &Ctx) -> Outcome {
    let names = [
        "a/b", "a%2Fb", "a%2fb", "a b", "a  b", "a..b", "../a", "./a", "a\\b", "A", "a", "😀",
        "e\u{301}", "\u{e9}", "a'b", "a\"b", "a;b--", "%", "*", "a?b", "a#b", "\u{200b}",
    ];
    for (i, n) in names.iter().enumerate() {
        let id = ctx.id(n);
        put(&ctx.store, &id, &[&format!("{i}")]).await?;
    }
    for (i, n) in names.iter().enumerate() {
        let got = read_all(&ctx.store, &ctx.id(n), 0).await?;
        ensure_eq!(texts(&got), vec![format!("{i}")]);
        ensure_eq!(ctx.store.info(&ctx.id(n)).await?.stream, ctx.id(n));
    }
    Ok(())
}

async fn maximum_length_id_works(ctx: &Ctx) -> Outcome {
    let max = ctx.caps().max_stream_id_bytes.min(MAX_STREAM_ID_BYTES);
    let prefix = ctx.id("").as_str().to_owned();
    // Fill with a 4-byte character then pad with ASCII to exactly `max` bytes.
    let mut s = prefix.clone();
    while s.len() + 4 <= max {
        s.push('😀');
    }
    while s.len() < max {
        s.push('x');
    }
    let id = StreamId::new(&s)?;
    ensure_eq!(id.as_str().len(), max);
    put(&ctx.store, &id, &["long"]).await?;
    ensure_eq!(texts(&read_all(&ctx.store, &id, 0).await?), vec!["long"]);
    let mut other = s.clone();
    other.pop();
    other.push('y');
    let other = StreamId::new(&other)?;
    ensure!(
        read_all(&ctx.store, &other, 0).await?.is_empty(),
        "ids differing in the last byte alias"
    );
    let too_long = format!("{s}z");
    ensure!(too_long.len() > max, "test id is not over the limit");
    match StreamId::new(&too_long) {
        Err(e) => ensure_eq!(e.kind(), ErrorKind::InvalidArgument),
        Ok(id) => expect_kind(
            ctx.store
                .append(&id, vec![bytes::Bytes::new()], Default::default())
                .await,
            ErrorKind::InvalidArgument,
        )?,
    }
    Ok(())
}

async fn invalid_ids_are_rejected(_ctx: &Ctx) -> Outcome {
    for bad in [
        "",
        "\0",
        "a\0b",
        "a\nb",
        "\t",
        "a\u{7f}",
        "\u{85}x",
        "\u{1b}[31m",
    ] {
        expect_kind(StreamId::new(bad), ErrorKind::InvalidArgument)?;
    }
    expect_kind(
        StreamId::from_bytes(&[0x61, 0xff]),
        ErrorKind::InvalidArgument,
    )?;
    expect_kind(
        StreamId::new("x".repeat(MAX_STREAM_ID_BYTES + 1)),
        ErrorKind::InvalidArgument,
    )?;
    ensure!(
        StreamId::new("x".repeat(MAX_STREAM_ID_BYTES)).is_ok(),
        "an id of the maximum length was refused"
    );
    Ok(())
}
