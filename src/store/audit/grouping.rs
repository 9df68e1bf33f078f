//! Grouping a summary's rows in memory, exactly as `read::grouped`'s statement groups them in
//! the database. For SQLite, which has no hash aggregation: its GROUP BY sorts every row, about
//! 0.7 µs a row here, and a week's summary by target reads 87k roll-up rows (25k targets) on
//! `audit_scale`'s million events: 60 ms to group there, against 12 ms to read them.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rusqlite::types::ValueRef;

/// One group: its key values (as text, in dimension order), count, first and last time, and
/// for actor groups a preview and the actor's name, for target groups the target's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub values: Vec<Option<String>>,
    pub count: i64,
    pub first: i64,
    pub last: i64,
    pub preview: Option<String>,
    pub actor_name: Option<String>,
    pub target_name: Option<String>,
}

/// Grouped counts, plus totals over every group (not only those returned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub groups: Vec<Group>,
    pub total_events: i64,
    pub total_groups: i64,
}

/// Most groups held in memory (a few hundred bytes each); a question with more is grouped by
/// the database instead, whose sorter spills to disk.
pub(super) const MAX_GROUPS: usize = 65_536;

/// Groups rows laid out as `read::grouped`'s rows statement selects them: the key values
/// (text or NULL), then `n`, `first_at`, `last_at`, `preview`, `actor_name`, `target_name`.
pub(super) struct Grouper {
    width: usize,
    /// Places in `groups`, found by the hash of their encoded key (each key stored once).
    index: HashTable<usize>,
    /// Seeded at random for each grouping (foldhash: fast, minimally DoS-resistant; the cap on
    /// groups bounds what colliding keys could cost).
    hasher: foldhash::quality::RandomState,
    groups: Vec<Bytes>,
    total_events: i64,
    /// The current row's key, reused so that rows of a known group allocate nothing.
    key: Vec<u8>,
    /// Most groups held (`MAX_GROUPS`).
    max: usize,
    /// More than `max` groups: the rows were not all read.
    overflowed: bool,
}

impl Grouper {
    pub(super) fn new(width: usize) -> Grouper {
        Grouper::with_max(width, MAX_GROUPS)
    }

    pub(super) fn with_max(width: usize, max: usize) -> Grouper {
        Grouper {
            width,
            index: HashTable::new(),
            hasher: foldhash::quality::RandomState::default(),
            groups: Vec::new(),
            total_events: 0,
            key: Vec::new(),
            max,
            overflowed: false,
        }
    }

    /// Adds one row; `false` once there are more groups than the most held (stop reading).
    pub(super) fn add(&mut self, r: &rusqlite::Row<'_>) -> rusqlite::Result<bool> {
        self.key.clear();
        for i in 0..self.width {
            encode(&mut self.key, text_at(r, i)?);
        }
        let w = self.width;
        let (n, first, last): (i64, i64, i64) = (r.get(w)?, r.get(w + 1)?, r.get(w + 2)?);
        let hash = self.hasher.hash_one(self.key.as_slice());
        let groups = &self.groups;
        let found = self
            .index
            .find(hash, |&at| *groups[at].key == *self.key)
            .copied();
        let at = match found {
            Some(at) => at,
            None => {
                if self.groups.len() == self.max {
                    self.overflowed = true;
                    return Ok(false);
                }
                let at = self.groups.len();
                self.groups.push(Bytes {
                    key: self.key.as_slice().into(),
                    hash,
                    count: 0,
                    first,
                    last,
                    preview: None,
                    actor_name: None,
                    target_name: None,
                });
                let groups = &self.groups;
                self.index.insert_unique(hash, at, |&i| groups[i].hash);
                at
            }
        };
        let g = &mut self.groups[at];
        // SUM, MIN and MAX as the statement takes them (a sum past i64 fails there too).
        g.count = g
            .count
            .checked_add(n)
            .ok_or(rusqlite::Error::IntegralValueOutOfRange(w, n))?;
        g.first = g.first.min(first);
        g.last = g.last.max(last);
        max_text(&mut g.preview, r, w + 3)?;
        max_text(&mut g.actor_name, r, w + 4)?;
        max_text(&mut g.target_name, r, w + 5)?;
        self.total_events = self
            .total_events
            .checked_add(n)
            .ok_or(rusqlite::Error::IntegralValueOutOfRange(w, n))?;
        Ok(true)
    }

    /// The groups, largest first, then latest last seen, then by key (NULL first), at most
    /// `limit` of them (a negative limit is none, as in SQLite), with totals over all (none at
    /// a limit of 0, where the statement returns no row);
    /// `None` if the rows held too many groups to finish here.
    pub(super) fn finish(self, limit: Option<i64>) -> Option<rusqlite::Result<Summary>> {
        if self.overflowed {
            return None;
        }
        let mut groups = self.groups;
        let total_groups = groups.len() as i64;
        let order = |a: &Bytes, b: &Bytes| {
            b.count
                .cmp(&a.count)
                .then(b.last.cmp(&a.last))
                .then_with(|| values(&a.key).cmp(values(&b.key)))
        };
        match limit.and_then(|l| usize::try_from(l).ok()) {
            // The statement then returns no row, and so no totals either.
            Some(0) => return Some(Ok(Summary::default())),
            Some(l) if l < groups.len() => {
                groups.select_nth_unstable_by(l - 1, order);
                groups.truncate(l);
            }
            _ => {}
        }
        groups.sort_unstable_by(order);
        // Text is decoded where the statement decodes it: in the rows it returns.
        let groups = match groups.into_iter().map(Bytes::decoded).collect() {
            Ok(groups) => groups,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(Summary {
            groups,
            total_events: self.total_events,
            total_groups,
        }))
    }
}

/// A key value, so that distinct tuples of values never encode alike: NULL as one byte, text
/// as a marker, its length and its bytes.
fn encode(key: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => key.push(0),
        Some(b) => {
            key.push(1);
            key.extend_from_slice(&(b.len() as u64).to_le_bytes());
            key.extend_from_slice(b);
        }
    }
}

/// The values `encode` wrote into `key`, in order.
fn values(mut key: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    std::iter::from_fn(move || {
        let (&tag, rest) = key.split_first()?;
        if tag == 0 {
            key = rest;
            return Some(None);
        }
        let (len, rest) = rest.split_first_chunk::<8>()?;
        let (value, rest) = rest.split_at_checked(u64::from_le_bytes(*len) as usize)?;
        key = rest;
        Some(Some(value))
    })
}

/// Column `i` as text or NULL (what `CAST(… AS TEXT)` and the name columns give).
fn text_at<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<&'r [u8]>> {
    match r.get_ref(i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Text(b) => Ok(Some(b)),
        other => Err(rusqlite::Error::InvalidColumnType(
            i,
            r.as_ref().column_name(i)?.to_owned(),
            other.data_type(),
        )),
    }
}

/// A group as read: its text as bytes, compared as SQLite compares text (BINARY collation).
struct Bytes {
    /// The key values, encoded (`encode`).
    key: Box<[u8]>,
    hash: u64,
    count: i64,
    first: i64,
    last: i64,
    preview: Option<Vec<u8>>,
    actor_name: Option<Vec<u8>>,
    target_name: Option<Vec<u8>>,
}

impl Bytes {
    fn decoded(self) -> rusqlite::Result<Group> {
        let text = |b: Option<Vec<u8>>| b.map(String::from_utf8).transpose();
        Ok(Group {
            values: values(&self.key)
                .map(|v| {
                    v.map(|b| std::str::from_utf8(b).map(str::to_owned))
                        .transpose()
                })
                .collect::<Result<_, _>>()?,
            count: self.count,
            first: self.first,
            last: self.last,
            preview: text(self.preview).map_err(|e| e.utf8_error())?,
            actor_name: text(self.actor_name).map_err(|e| e.utf8_error())?,
            target_name: text(self.target_name).map_err(|e| e.utf8_error())?,
        })
    }
}

/// `MAX(column)` over text: NULLs ignored, the greatest by bytes (SQLite's BINARY collation).
fn max_text(cur: &mut Option<Vec<u8>>, r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<()> {
    if let Some(b) = text_at(r, i)?
        && cur.as_deref().is_none_or(|c| b > c)
    {
        *cur = Some(b.to_vec());
    }
    Ok(())
}
