//! Every case, grouped by the letters of the research notes' case list (A basics, B ranges,
//! C pagination, D expectations and concurrency, E idempotency, F trim/delete/retention, G limits,
//! H waits and subscriptions, I listing, J lifecycle). `docs/contract.md` names, for each rule, the
//! cases that check it.

mod basics;
mod concurrency;
mod durable;
mod expect;
mod follow_delete;
mod idempotency;
mod ids;
mod lifecycle;
mod limits;
mod list;
mod many_waiters;
mod ranges;
mod retention;
mod seal;
mod subscribe;
mod trim_delete;
mod waits;

use crate::case::Case;

/// All cases, in a fixed order.
pub fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(basics::cases());
    all.extend(ids::cases());
    all.extend(ranges::cases());
    all.extend(expect::cases());
    all.extend(concurrency::cases());
    all.extend(idempotency::cases());
    all.extend(seal::cases());
    all.extend(trim_delete::cases());
    all.extend(limits::cases());
    all.extend(waits::cases());
    all.extend(many_waiters::cases());
    all.extend(durable::cases());
    all.extend(subscribe::cases());
    all.extend(follow_delete::cases());
    all.extend(list::cases());
    all.extend(retention::cases());
    all.extend(lifecycle::cases());
    all
}
