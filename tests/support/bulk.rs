//! Embedded stores written in bulk, in the store's table layout (src/store/embedded.rs):
//! the product writes one change per transaction, far too slow to make a million.

use std::path::Path;

use redb::{Database, TableDefinition};

const WORKSPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("workspace_cutoffs");
const USERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("user_cutoffs");

/// Users are spread over this many workspaces.
pub const USER_WORKSPACES: usize = 10_000;

/// The workspace `(ws-{i % USER_WORKSPACES}, user-{i})` of user `i` and its subject;
/// workspace cutoff `i` is on `ws-{i}`.
pub fn names(i: usize) -> (String, String) {
    (format!("ws-{}", i % USER_WORKSPACES), format!("user-{i}"))
}

/// Writes `count` workspace cutoffs and `count` user cutoffs in one transaction;
/// `records(i)` gives the stored JSON of workspace cutoff `i` and of user cutoff `i`.
pub fn write_store(path: &Path, count: usize, records: impl Fn(usize) -> (Vec<u8>, Vec<u8>)) {
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut workspaces = txn.open_table(WORKSPACES).unwrap();
        let mut users = txn.open_table(USERS).unwrap();
        for i in 0..count {
            let (workspace, user) = records(i);
            let (name, subject) = names(i);
            workspaces
                .insert(format!("ws-{i}").as_str(), workspace.as_slice())
                .unwrap();
            users
                .insert((name.as_str(), subject.as_str()), user.as_slice())
                .unwrap();
        }
    }
    txn.commit().unwrap();
}
