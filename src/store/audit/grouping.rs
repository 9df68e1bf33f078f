//! Grouping a summary's rows in memory, exactly as `read::grouped`'s statement groups them in
//! the database. For SQLite, which has no hash aggregation: its GROUP BY sorts every row, about
//! 0.7 µs a row here, and a week's summary by target reads 87k roll-up rows (25k targets) on
//! `audit_scale`'s million events: 60 ms to group there, against 12 ms to read them.

use std::collections::HashMap;

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
    /// Each group's key, encoded (`encode`), to its place in `groups`.
    index: HashMap<Box<[u8]>, usize>,
    groups: Vec<Group>,
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
            index: HashMap::new(),
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
        let at = match self.index.get(self.key.as_slice()) {
            Some(&at) => at,
            None => {
                if self.groups.len() == self.max {
                    self.overflowed = true;
                    return Ok(false);
                }
                let values = (0..w)
                    .map(|i| text_at(r, i)?.map(owned).transpose())
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                self.groups.push(Group {
                    values,
                    count: 0,
                    first,
                    last,
                    ..Group::default()
                });
                self.index
                    .insert(self.key.clone().into_boxed_slice(), self.groups.len() - 1);
                self.groups.len() - 1
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
        self.total_events = self.total_events.saturating_add(n);
        Ok(true)
    }

    /// The groups, largest first, then latest last seen, then by key (NULL first), at most
    /// `limit` of them (a negative limit is none, as in SQLite), with totals over all;
    /// `None` if the rows held too many groups to finish here.
    pub(super) fn finish(self, limit: Option<i64>) -> Option<Summary> {
        if self.overflowed {
            return None;
        }
        let mut groups = self.groups;
        let total_groups = groups.len() as i64;
        let order = |a: &Group, b: &Group| {
            b.count
                .cmp(&a.count)
                .then(b.last.cmp(&a.last))
                .then_with(|| a.values.cmp(&b.values))
        };
        match limit.and_then(|l| usize::try_from(l).ok()) {
            Some(0) => groups.clear(),
            Some(l) if l < groups.len() => {
                groups.select_nth_unstable_by(l - 1, order);
                groups.truncate(l);
            }
            _ => {}
        }
        groups.sort_unstable_by(order);
        Some(Summary {
            groups,
            total_events: self.total_events,
            total_groups,
        })
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

fn owned(b: &[u8]) -> rusqlite::Result<String> {
    Ok(std::str::from_utf8(b)?.to_owned())
}

/// `MAX(column)` over text: NULLs ignored, the greatest by bytes (SQLite's BINARY collation).
fn max_text(cur: &mut Option<String>, r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<()> {
    if let Some(b) = text_at(r, i)?
        && cur.as_ref().is_none_or(|c| b > c.as_bytes())
    {
        *cur = Some(owned(b)?);
    }
    Ok(())
}
