//! The compact binary encoding of log entries, shared by the log store (on
//! disk) and the internal network (on the wire): event bytes are carried as
//! they are, never re-encoded.
//!
//! ```text
//! entry   := term u64 | index u64 | kind u8 | payload
//!            kind 0 blank | 1 command | 2 membership (JSON)
//! command := tag u8 (1 events, 2 snapshot) | context_len u32 | context
//!            | count u32 | (len u32 | bytes)*
//!          | tag u8 (3 admin) | JSON of the admin command
//!          | tag u8 (4 batch) | count u32 | (len u32 | command)*
//! ```
//!
//! A batch holds events and snapshot commands only, never another batch.

use std::io;

use bytes::Bytes;
use openraft::EntryPayload;
use openraft::entry::RaftEntry;
use openraft::vote::leader_id_std::CommittedLeaderId;

use super::types::{Entry, GroupCommand, LogId, Membership};

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

pub(crate) fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Encodes a command compactly (events stay raw bytes):
/// `tag u8 | context_len u32 | context | count u32 | (len u32 | bytes)*`.
fn encode_command(out: &mut Vec<u8>, command: &GroupCommand) -> io::Result<()> {
    let (tag, context, items): (u8, &str, Vec<&Bytes>) = match command {
        GroupCommand::AppendEvents { context, events } => (1, context, events.iter().collect()),
        GroupCommand::AppendSnapshot { context, snapshot } => (2, context, vec![snapshot]),
        GroupCommand::Admin(admin) => {
            out.push(3);
            return serde_json::to_writer(out, admin).map_err(io::Error::other);
        }
        GroupCommand::Batch(commands) => {
            out.push(4);
            put_u32(out, commands.len() as u32);
            for command in commands {
                if matches!(command, GroupCommand::Batch(_)) {
                    return Err(invalid("a batch inside a batch".into()));
                }
                let at = out.len();
                put_u32(out, 0);
                encode_command(out, command)?;
                let len = (out.len() - at - 4) as u32;
                out[at..at + 4].copy_from_slice(&len.to_le_bytes());
            }
            return Ok(());
        }
    };
    out.push(tag);
    put_u32(out, context.len() as u32);
    out.extend_from_slice(context.as_bytes());
    put_u32(out, items.len() as u32);
    for item in items {
        put_u32(out, item.len() as u32);
        out.extend_from_slice(item);
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> io::Result<&'a [u8]> {
        let end = self.at.checked_add(len).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| invalid("a log record is shorter than its fields".into()))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(raw))
    }

    fn u64(&mut self) -> io::Result<u64> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }
}

fn decode_command(reader: &mut Reader<'_>, body: &Bytes) -> io::Result<GroupCommand> {
    decode_command_in(reader, body, body.len(), true)
}

/// Decodes the command that ends at `end`; a batch only where `batch_allowed`.
fn decode_command_in(
    reader: &mut Reader<'_>,
    body: &Bytes,
    end: usize,
    batch_allowed: bool,
) -> io::Result<GroupCommand> {
    let tag = reader.u8()?;
    if tag == 3 {
        // A batched command may claim fewer bytes than its own tag.
        let record = body.get(reader.at..end).ok_or_else(|| invalid("an admin record is cut short".into()))?;
        let admin = serde_json::from_slice(record).map_err(|e| invalid(format!("admin record: {e}")))?;
        reader.at = end;
        return Ok(GroupCommand::Admin(admin));
    }
    if tag == 4 && batch_allowed {
        let count = reader.u32()? as usize;
        let mut commands = Vec::with_capacity(count.min(body.len() / 8));
        for _ in 0..count {
            let len = reader.u32()? as usize;
            let command_end = reader.at.checked_add(len).filter(|e| *e <= end);
            let command_end = command_end.ok_or_else(|| invalid("a batched command is cut short".into()))?;
            let command = decode_command_in(reader, body, command_end, false)?;
            if reader.at != command_end {
                return Err(invalid("a batched command does not fill its length".into()));
            }
            commands.push(command);
        }
        return Ok(GroupCommand::Batch(commands));
    }
    let context_len = reader.u32()? as usize;
    let context = std::str::from_utf8(reader.take(context_len)?)
        .map_err(|_| invalid("a log record's context is not UTF-8".into()))?
        .to_owned();
    let count = reader.u32()? as usize;
    let mut items = Vec::with_capacity(count.min(body.len() / 4));
    for _ in 0..count {
        let len = reader.u32()? as usize;
        let start = reader.at;
        reader.take(len)?;
        items.push(body.slice(start..start + len));
    }
    match (tag, items.len()) {
        (1, _) => Ok(GroupCommand::AppendEvents { context, events: items }),
        (2, 1) => Ok(GroupCommand::AppendSnapshot { context, snapshot: items.swap_remove(0) }),
        _ => Err(invalid(format!("unknown log command tag {tag}"))),
    }
}

/// Encodes an entry.
pub fn encode_entry(entry: &Entry) -> io::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(encoded_len_hint(entry));
    encode_entry_into(&mut body, entry)?;
    Ok(body)
}

/// Appends the encoding of `entry` to `out`.
pub fn encode_entry_into(out: &mut Vec<u8>, entry: &Entry) -> io::Result<()> {
    put_u64(out, entry.log_id.leader_id.term);
    put_u64(out, entry.log_id.index);
    match &entry.payload {
        EntryPayload::Blank => out.push(0),
        EntryPayload::Normal(command) => {
            out.push(1);
            encode_command(out, command)?;
        }
        EntryPayload::Membership(membership) => {
            out.push(2);
            serde_json::to_writer(&mut *out, membership).map_err(io::Error::other)?;
        }
    }
    Ok(())
}

/// About the encoded size of an entry (exact for event commands), so that
/// encoding allocates once.
pub fn encoded_len_hint(entry: &Entry) -> usize {
    fn command_len(command: &GroupCommand) -> usize {
        match command {
            GroupCommand::AppendEvents { context, events } => {
                9 + context.len() + events.iter().map(|e| 4 + e.len()).sum::<usize>()
            }
            GroupCommand::AppendSnapshot { context, snapshot } => 13 + context.len() + snapshot.len(),
            GroupCommand::Admin(_) => 256,
            GroupCommand::Batch(commands) => 5 + commands.iter().map(|c| 4 + command_len(c)).sum::<usize>(),
        }
    }
    17 + match &entry.payload {
        EntryPayload::Normal(command) => command_len(command),
        _ => 256,
    }
}

/// Decodes an entry (event bytes are slices of `body`, not copies).
pub fn decode_entry(body: Bytes) -> io::Result<Entry> {
    let mut reader = Reader { bytes: &body, at: 0 };
    let term = reader.u64()?;
    let index = reader.u64()?;
    let log_id = LogId::new(CommittedLeaderId::new(term), index);
    let payload = match reader.u8()? {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Normal(decode_command(&mut reader, &body)?),
        2 => {
            let membership: Membership =
                serde_json::from_slice(&body[reader.at..]).map_err(|e| invalid(format!("membership record: {e}")))?;
            EntryPayload::Membership(membership)
        }
        kind => return Err(invalid(format!("unknown log record kind {kind}"))),
    };
    Ok(Entry::new(log_id, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(command: GroupCommand) -> Entry {
        Entry::new(LogId::new(CommittedLeaderId::new(3), 17), EntryPayload::Normal(command))
    }

    fn events(context: &str, items: &[&'static [u8]]) -> GroupCommand {
        GroupCommand::AppendEvents { context: context.into(), events: items.iter().map(|b| Bytes::from(*b)).collect() }
    }

    #[test]
    fn a_batch_of_transactions_round_trips_in_order() {
        let batch = GroupCommand::Batch(vec![
            events("orders", &[b"a", b"bb"]),
            GroupCommand::AppendSnapshot { context: "orders".into(), snapshot: Bytes::from_static(b"snap") },
            events("billing", &[]),
            events("orders", &[b"ccc"]),
        ]);
        let encoded = encode_entry(&entry(batch.clone())).unwrap();
        assert_eq!(encoded.len(), encoded_len_hint(&entry(batch.clone())), "the size hint is exact for events");
        let decoded = decode_entry(Bytes::from(encoded)).unwrap();
        assert_eq!(decoded.payload, EntryPayload::Normal(batch));
    }

    #[test]
    fn nested_or_cut_batches_are_refused() {
        let nested = GroupCommand::Batch(vec![GroupCommand::Batch(vec![])]);
        assert!(encode_entry(&entry(nested)).is_err());
        let encoded = encode_entry(&entry(GroupCommand::Batch(vec![events("c", &[b"xyz"])]))).unwrap();
        for cut in [encoded.len() - 1, encoded.len() - 5, 22] {
            assert!(decode_entry(Bytes::from(encoded[..cut].to_vec())).is_err(), "cut at {cut}");
        }
    }
}

#[cfg(test)]
mod crafted {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// A batch entry whose one command claims `len` bytes and starts with `tag`.
    fn batch_of(len: u32, tag: u8, rest: &[u8]) -> Bytes {
        let mut body = Vec::new();
        put_u64(&mut body, 1);
        put_u64(&mut body, 1);
        body.push(1); // a normal entry
        body.push(4); // a batch
        put_u32(&mut body, 1);
        put_u32(&mut body, len);
        body.push(tag);
        body.extend_from_slice(rest);
        Bytes::from(body)
    }

    #[test]
    fn a_batched_command_shorter_than_its_tag_is_refused_not_a_panic() {
        // The admin command claims no bytes at all, yet its tag follows.
        assert!(decode_entry(batch_of(0, 3, b"{}")).is_err());
        assert!(decode_entry(batch_of(0, 1, &[0; 12])).is_err());
    }

    /// Every prefix, every single-byte change and a run of pseudo-random
    /// mutations of valid entries decode to a value or an error, never a
    /// panic (a peer's bytes and a damaged log file are both untrusted).
    #[test]
    fn no_mutation_of_a_valid_entry_makes_the_decoder_panic() {
        let members = [("node-1".to_owned(), ranvier_wire::Role::Primary)].into();
        let admin = GroupCommand::Admin(crate::cluster::model::AdminCommand::CreateGroup { name: "g".into(), members });
        let samples = [
            GroupCommand::AppendEvents { context: "orders".into(), events: vec![Bytes::from_static(b"abc")] },
            GroupCommand::Batch(vec![
                GroupCommand::AppendEvents { context: "a".into(), events: vec![Bytes::from_static(b"x")] },
                GroupCommand::AppendSnapshot { context: "b".into(), snapshot: Bytes::from_static(b"yz") },
            ]),
            admin,
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for command in samples {
            let entry = Entry::new(LogId::new(CommittedLeaderId::new(2), 9), EntryPayload::Normal(command));
            let encoded = encode_entry(&entry).unwrap();
            for cut in 0..encoded.len() {
                let _ = decode_entry(Bytes::from(encoded[..cut].to_vec()));
            }
            for at in 0..encoded.len() {
                for value in [0u8, 1, 3, 4, 0x7f, 0xff] {
                    let mut changed = encoded.clone();
                    changed[at] = value;
                    let _ = decode_entry(Bytes::from(changed));
                }
            }
            for _ in 0..5_000 {
                let mut changed = encoded.clone();
                for _ in 0..=(next() % 4) {
                    let at = (next() as usize) % changed.len();
                    changed[at] = next() as u8;
                }
                let _ = decode_entry(Bytes::from(changed));
            }
        }
    }
}
