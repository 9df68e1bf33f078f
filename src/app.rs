//! `App`: the shared state built once at start and cloned (cheaply) into every transport.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::store::Store;
use crate::store::audit_writer::AuditWriter;

#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub audit: AuditWriter,
}

impl App {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
