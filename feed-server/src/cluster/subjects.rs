//! The log's subjects, all in one stream: a partition's replicated events
//! (`feedline.r.<partition>`, applied by every node), its own events (`feedline.o.<p>.ev`) and
//! the fanout batches for its readers (`feedline.o.<p>.fan`), both applied only by its owner.

/// What the stream holds.
pub fn all() -> Vec<String> {
    vec![replicated_all(), "feedline.o.>".into()]
}
/// Every partition's events every node applies.
pub fn replicated_all() -> String {
    "feedline.r.>".into()
}
/// Events of partition `p` every node applies.
pub fn replicated(p: u32) -> String {
    format!("feedline.r.{p}")
}
/// Events of partition `p` only its owner applies.
pub fn owned(p: u32) -> String {
    format!("feedline.o.{p}.ev")
}
/// Fanout batches for readers of partition `p`.
pub fn fanout(p: u32) -> String {
    format!("feedline.o.{p}.fan")
}
/// Everything of partition `p` only its owner applies (its events and fanout batches): what
/// is dropped from the log once the partition's snapshots cover it.
pub fn owned_all(p: u32) -> String {
    format!("feedline.o.{p}.>")
}
/// What the owner of `partitions` consumes.
pub fn consumed_by_owner_of(partitions: &[u32]) -> Vec<String> {
    let mut v = vec![replicated_all()];
    v.extend(partitions.iter().map(|&p| owned_all(p)));
    v
}
/// Whether a message on `subject` is a fanout batch.
pub fn is_fanout(subject: &str) -> bool {
    subject.ends_with(".fan")
}
