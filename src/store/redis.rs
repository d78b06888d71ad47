//! The Redis store: one Redis shared by a fleet of gateways.
//!
//! Keys, all under `store.redis_key_prefix` (P):
//!
//! ```text
//! P workspaces         hash   workspace -> cutoff JSON
//! P users              hash   ["workspace","subject"] -> cutoff JSON
//! P subjects           hash   subject -> cutoff JSON (subject-wide, U*)
//! P sids               hash   ["workspace" or null,"sid"] -> {"expires_at","version"}
//! P sids:expiry        zset   the fields of P sids by expires_at (each commit prunes a few)
//! P seen:["iss","jti"] string an accepted signal, expiring when it may be forgotten
//! P scim_users         hash   ["workspace" or null,"id"] -> user
//! P schedules          hash   workspace -> scheduled logout JSON {"pending","version"}
//! P policies           hash   workspace -> policy JSON (document, updated_at/by, version)
//! P audit:<workspace>  list   audit record JSON, newest first
//! P audit              list   subject-wide audit records, in no workspace's trail
//! P changes            pub/sub channel: the records of every commit, as a JSON array
//! P outbox:...         the events outbox (see `outbox`)
//! P activity:instances          sorted set   instance -> unix ms of its last share
//! P activity:<instance>:<ws>    string       that instance's activity share (expires)
//! ```
//!
//! Every commit is one Lua script, so the compares (keep the higher cutoff), the writes,
//! the audit record, its outbox entries and the publish happen atomically on the server:
//! two gateways logging a workspace out at once cannot move its cutoff backwards, and an
//! event is queued exactly when its change is committed. The key layout is this
//! file's alone: the script is handed each effect with its key and field. The connections
//! themselves are owned by the sync task (`crate::sessions::keep_in_sync`), which
//! connects, resyncs and watches them; this type only uses the command connection it was
//! handed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::AsyncConnectionConfig;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use serde_json::json;

use super::{
    AuditRecord, Change, Committed, Effect, Outbox, PolicyDocument, Preserved, Record, ScimUser,
    Scope, StoreError, pair_field,
};
use crate::config::{RedisConfig, Replication};

mod link;
mod outbox;
mod reply;
mod restore;
mod scan;
mod wire;

/// Connecting (TCP, TLS, AUTH) may take this long before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A command (commit, one scan page, a ping) may take this long.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// The error the commit script answers for a signal it has accepted before.
const REPLAYED: &str = "REPLAYED";
/// The error the commit script answers when the scheduled logout a change is about is
/// no longer pending.
const NOT_PENDING: &str = "NOT_PENDING";
/// The error the commit script answers when a policy's `If-Match` version is stale.
const POLICY_CHANGED: &str = "POLICY_CHANGED";

/// Atomic and monotonic on the server. Versions come from the server clock (microseconds,
/// and always above the previous version), so a record written after Redis lost its data
/// still outranks every older copy the instances hold in memory. Numbers are formatted
/// with `%d` (cjson would round a 16-digit version) and JSON built by Rust is passed
/// through as text.
///
/// A signal accepted before is refused with `REPLAYED` before anything is written: a Lua
/// script is atomic but does not roll back, so every check comes first.
///
/// ARGV: the effects (JSON array, each with its `key` and `field`), the audit record JSON
/// (ending with `"sessions_valid_after":null}`; empty for a restore: no audit record,
/// no outbox entry),
/// the audit list key, the channel, the outbox routes (the sequence key, the ordering
/// group, and per webhook its events hash, group queue and due set).
const COMMIT_SCRIPT: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1])
local clock = now * 1000000 + tonumber(time[2])
local effects = cjson.decode(ARGV[1])
for _, effect in ipairs(effects) do
  if effect.kind == 'signal_seen' and redis.call('EXISTS', effect.key) == 1 then
    return redis.error_reply('REPLAYED')
  end
  if effect.kind == 'policy' and effect.if_version then
    local current = redis.call('HGET', effect.key, effect.field)
    local version = current and cjson.decode(current).version or 0
    if string.format('%d', version) ~= effect.if_version then
      return redis.error_reply('POLICY_CHANGED')
    end
  end
end
-- A cancel needs a schedule pending; applying one needs that very version pending.
for _, effect in ipairs(effects) do
  if effect.require_pending then
    local current = redis.call('HGET', effect.key, effect.field)
    local stored = current and cjson.decode(current)
    local pending = stored and stored.pending ~= nil and stored.pending ~= cjson.null
    if not pending or (effect.version and string.format('%d', stored.version) ~= effect.version) then
      return redis.error_reply('NOT_PENDING')
    end
  end
end
local first_cutoff = nil
local apply = {}

-- `wanted`, raised to what the hash already holds under `name` (values never move back),
-- and the next version of the field.
local function raised(effect, name, wanted)
  local version = 0
  local current = redis.call('HGET', effect.key, effect.field)
  if current then
    local stored = cjson.decode(current)
    wanted = math.max(wanted, stored[name])
    version = stored.version
  end
  return wanted, math.max(version + 1, clock)
end

function apply.cutoff(effect)
  local valid_after, version = raised(effect, 'valid_after', effect.valid_after)
  local cutoff = string.format('{"valid_after":%d,"preserved":%s,"version":%d}',
    valid_after, effect.preserved, version)
  redis.call('HSET', effect.key, effect.field, cutoff)
  first_cutoff = first_cutoff or valid_after
  return string.format('{"kind":"cutoff","scope":%s,"cutoff":%s}', effect.scope, cutoff)
end

function apply.revoked_sid(effect)
  local expires_at, version = raised(effect, 'expires_at', effect.expires_at)
  local revoked = string.format('{"expires_at":%d,"version":%d}', expires_at, version)
  redis.call('HSET', effect.key, effect.field, revoked)
  redis.call('ZADD', effect.index, expires_at, effect.field)
  local expired = redis.call('ZRANGEBYSCORE', effect.index, '-inf', '(' .. now, 'LIMIT', 0, 16)
  for _, field in ipairs(expired) do
    redis.call('HDEL', effect.key, field)
    redis.call('ZREM', effect.index, field)
  end
  return string.format('{"kind":"revoked_sid","workspace":%s,"sid":%s,"revoked":%s}',
    effect.workspace, effect.sid, revoked)
end

-- A record an instance holds, written as it is where it outranks the stored one (its
-- rank: the value named `rank`, if any, then the version). Published like any change.
function apply.restore(effect)
  local current = redis.call('HGET', effect.key, effect.field)
  if current then
    local stored = cjson.decode(current)
    local value = effect.rank and stored[effect.rank] or 0
    if value > effect.value or (value == effect.value and stored.version >= effect.version) then
      return nil
    end
  end
  redis.call('HSET', effect.key, effect.field, effect.stored)
  if effect.index then
    redis.call('ZADD', effect.index, effect.value, effect.field)
  end
  return effect.record
end

function apply.schedule(effect)
  local version = 0
  local current = redis.call('HGET', effect.key, effect.field)
  if current then
    version = cjson.decode(current).version
  end
  local schedule = string.format('{"pending":%s,"version":%d}', effect.pending,
    math.max(version + 1, clock))
  redis.call('HSET', effect.key, effect.field, schedule)
  return string.format('{"kind":"schedule","workspace":%s,"schedule":%s}',
    effect.workspace, schedule)
end

-- The cutoff, raised unless it already is at least the scheduled one (then it was set at
-- or after `at`, and its preserved session stands), then the schedule cleared: two
-- records, the cutoff first, joined as the message joins records.
function apply.fire_schedule(effect)
  local cutoff = redis.call('HGET', effect.cutoff_key, effect.cutoff_field)
  local stored = cutoff and cjson.decode(cutoff)
  if stored and stored.valid_after >= effect.valid_after then
    first_cutoff = first_cutoff or stored.valid_after
  else
    local version = stored and stored.version or 0
    cutoff = string.format('{"valid_after":%d,"preserved":%s,"version":%d}',
      effect.valid_after, effect.preserved, math.max(version + 1, clock))
    redis.call('HSET', effect.cutoff_key, effect.cutoff_field, cutoff)
    first_cutoff = first_cutoff or effect.valid_after
  end
  effect.pending = 'null'
  return string.format('{"kind":"cutoff","scope":%s,"cutoff":%s}', effect.scope, cutoff)
    .. ',' .. apply.schedule(effect)
end

function apply.signal_seen(effect)
  redis.call('SET', effect.key, '1')
  redis.call('EXPIREAT', effect.key, effect.expires_at)
  return nil
end

function apply.policy(effect)
  local current = redis.call('HGET', effect.key, effect.field)
  local version = current and cjson.decode(current).version or 0
  local policy = string.format('{"document":%s,"updated_at":%s,"updated_by":%s,"version":%d}',
    effect.document, effect.updated_at, effect.updated_by, math.max(version + 1, clock))
  redis.call('HSET', effect.key, effect.field, policy)
  return string.format('{"kind":"policy","workspace":%s,"policy":%s}', effect.workspace, policy)
end

local records = {}
for _, effect in ipairs(effects) do
  local record = apply[effect.kind](effect)
  if record then
    records[#records + 1] = record
  end
end
-- A restore has no audit record (nor events): nothing happened, the store healed.
-- Otherwise the record ends with `"sessions_valid_after":null}`; it is patched as text,
-- because a cjson round trip would turn the empty arrays of a policy into objects.
local record = ARGV[2]
local outbox = {routes = {}}
if record ~= '' then
  if first_cutoff then
    record = string.sub(record, 1, -6) .. string.format('%d}', first_cutoff)
  end
  redis.call('LPUSH', ARGV[3], record)
  outbox = cjson.decode(ARGV[5])
end
if #outbox.routes > 0 then
  local sequence = string.format('%d', redis.call('INCR', outbox.sequence))
  local due = string.format('%d', math.floor(clock / 1000))
  for _, route in ipairs(outbox.routes) do
    redis.call('HSET', route.events, sequence, record)
    redis.call('RPUSH', route.queue, sequence)
    redis.call('ZADD', route.due, 'NX', due, outbox.group)
  end
end
local message = '[' .. table.concat(records, ',') .. ']'
local receivers = redis.call('PUBLISH', ARGV[4], message)
return {message, record, receivers}
"#;

/// The Redis client, its key names, and the link state the fleet task maintains.
pub struct RedisStore {
    target: link::Target,
    primary: link::Primary,
    replication: Replication,
    keys: Keys,
    script: redis::Script,
    /// The command connection of the current link; `None` while Redis is out of reach.
    conn: ArcSwapOption<MultiplexedConnection>,
    health: Health,
    resync: Duration,
    max_staleness: Option<Duration>,
    /// Which webhooks each commit's audit record is queued for.
    outbox: Outbox,
    outbox_scripts: outbox::Scripts,
    /// Names this process in its outbox claims.
    instance: String,
    /// TLS for the scans' own connections (`rediss://`).
    scan_tls: Option<tokio_rustls::TlsConnector>,
}

/// Key and channel names, each starting with the configured prefix.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
    workspaces: String,
    users: String,
    subjects: String,
    sids: String,
    sids_expiry: String,
    scim_users: String,
    schedules: String,
    policies: String,
    channel: String,
    activity_instances: String,
}

/// Whether this instance is in step with Redis, and since when.
#[derive(Debug)]
struct Health {
    /// The subscription is live and the last resync succeeded.
    up: AtomicBool,
    /// Milliseconds after `started` of the last proof of sync (0 until the first).
    last_sync: AtomicU64,
    started: Instant,
}

/// A live subscription to the change channel, owned by the fleet task.
pub struct Subscription {
    /// Pings go through here: a dead subscription must not look healthy.
    pub sink: PubSubSink,
    pub messages: PubSubStream,
    /// The address of the previous primary, when this link reached another one (Sentinel
    /// followed a failover).
    pub switched_from: Option<String>,
}

/// One published change: the records of a commit, as the commit script writes them.
#[derive(Debug)]
pub struct Published(Vec<Record>);

// === impl RedisStore ===

impl RedisStore {
    /// A client for `store.redis_url`; nothing is connected until the fleet task connects.
    pub fn open(config: &RedisConfig, outbox: Outbox) -> Result<Self, StoreError> {
        Ok(Self {
            target: link::Target::new(config)?,
            primary: link::Primary::new(),
            replication: config.replication,
            keys: Keys::new(&config.key_prefix),
            script: redis::Script::new(COMMIT_SCRIPT),
            conn: ArcSwapOption::empty(),
            health: Health::new(),
            resync: config.resync,
            max_staleness: config.max_staleness,
            outbox,
            outbox_scripts: outbox::Scripts::new(),
            instance: uuid::Uuid::now_v7().to_string(),
            scan_tls: wire::tls(config)?,
        })
    }

    /// Finds the primary (asking the Sentinels, if configured), opens the command
    /// connection and subscribes to the change channel on a second one. The command
    /// connection is used from now on; the subscription goes to the caller.
    pub async fn connect(&self) -> Result<Subscription, StoreError> {
        let config = connection_config(COMMAND_TIMEOUT);
        let client = within(COMMAND_TIMEOUT, self.target.primary()).await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let pubsub = within(CONNECT_TIMEOUT, client.get_async_pubsub()).await?;
        let (mut sink, messages) = pubsub.split();
        within(COMMAND_TIMEOUT, sink.subscribe(&self.keys.channel)).await?;
        self.conn.store(Some(conn.into()));
        let switched_from = self.primary.connected(client);
        Ok(Subscription {
            sink,
            messages,
            switched_from,
        })
    }

    /// Forgets the connections: commits fail fast until the next `connect`.
    pub fn disconnect(&self) {
        self.conn.store(None);
        self.primary.disconnected();
        self.health.up.store(false, Ordering::Release);
    }

    /// `store.resync_secs`: time between full resyncs.
    pub fn resync_interval(&self) -> Duration {
        self.resync
    }

    /// Records that this instance is in step with Redis now.
    pub fn mark_synced(&self) {
        self.health.synced();
    }

    /// Whether the link is up (connected, subscribed, resynced).
    pub fn is_up(&self) -> bool {
        self.health.up.load(Ordering::Acquire)
    }

    /// Time since this instance was last known to be in step (since start, before that).
    pub fn since_sync(&self) -> Duration {
        self.health.since_sync()
    }

    /// Out of step for longer than `store.max_staleness_secs` (never when that is off).
    pub fn is_stale(&self) -> bool {
        self.max_staleness
            .is_some_and(|max| !self.is_up() && self.since_sync() > max)
    }

    /// Round trip on both connections: a link that cannot answer is not in sync.
    pub async fn ping(&self, subscription: &mut Subscription) -> Result<(), StoreError> {
        let mut conn = self.command_connection()?;
        // A subscribed connection answers `["pong", ""]`, not `PONG`.
        within(COMMAND_TIMEOUT, subscription.sink.ping::<redis::Value>()).await?;
        if !self.target.follows_failovers() {
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            return Ok(());
        }
        // A demoted primary still answers (and serves reads): only `ROLE` tells.
        match redis::cmd("ROLE").query_async(&mut conn).await? {
            redis::Role::Primary { .. } => Ok(()),
            _ => Err(StoreError::Demoted),
        }
    }

    /// Runs the commit script: check, compare, write, audit and publish in one step on the
    /// server; then, with `store.redis_min_replicas`, waits for the replicas.
    pub(super) async fn commit(&self, change: &Change) -> Result<Committed, StoreError> {
        let effects = change
            .effects
            .iter()
            .map(|effect| self.keys.wire(effect))
            .collect::<Result<Vec<_>, _>>()?;
        // The script fills in the cutoff; it expects the field last and null.
        let audit = &AuditRecord {
            sessions_valid_after: None,
            ..change.audit.clone()
        };
        let outbox = self.keys.outbox(audit, &self.outbox.routes(audit))?;
        let audit = serde_json::to_string(audit)?;
        let audit_key = self.keys.audit(change.audit.workspace.as_deref());
        let run = async |conn: &mut MultiplexedConnection| {
            self.run_script(conn, &effects, [&audit, &audit_key, &outbox])
                .await
        };
        let ((message, record, receivers), acknowledged) = self.replicated(run).await?;
        let committed = Committed {
            records: Published::decode(message.as_bytes())?.0,
            audit: serde_json::from_str(&record)?,
            notified: Some(receivers),
        };
        match acknowledged {
            Some(acknowledged) if acknowledged < u64::from(self.replication.min_replicas) => {
                Err(StoreError::Unreplicated {
                    committed: Box::new(committed),
                    acknowledged,
                    wanted: self.replication.min_replicas,
                })
            }
            _ => Ok(committed),
        }
    }

    /// One run of the commit script; `[audit, audit_key, outbox]` empty for a restore.
    pub(super) async fn run_script(
        &self,
        conn: &mut MultiplexedConnection,
        effects: &[serde_json::Value],
        [audit, audit_key, outbox]: [&str; 3],
    ) -> Result<(String, String, u64), StoreError> {
        self.script
            .arg(serde_json::to_string(effects)?)
            .arg(audit)
            .arg(audit_key)
            .arg(&self.keys.channel)
            .arg(outbox)
            .invoke_async(conn)
            .await
            .map_err(|error| {
                // Redis answers a script's error reply as `ERR REPLAYED` (older) or
                // `REPLAYED` (newer): either names the signal as replayed.
                let named = |name| error.code() == Some(name) || error.detail() == Some(name);
                if named(REPLAYED) {
                    StoreError::Replayed
                } else if named(POLICY_CHANGED) {
                    StoreError::PolicyChanged
                } else if named(NOT_PENDING) {
                    StoreError::NotPending
                } else {
                    StoreError::Redis(error)
                }
            })
    }

    /// Publishes this instance's activity shares, `(workspace, share)` pairs, each kept for
    /// `ttl`. Not a change of state: nothing to audit, nothing to publish.
    pub async fn share_activity(
        &self,
        instance: &str,
        shares: &[(String, String)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.command_connection()?;
        let now = unix_millis();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let instances = &self.keys.activity_instances;
        let mut pipe = redis::pipe();
        pipe.zadd(instances, instance, now).ignore();
        // Instances gone for longer than a share lives are forgotten.
        pipe.zrembyscore(instances, "-inf", now.saturating_sub(ttl_ms))
            .ignore();
        pipe.pexpire(instances, i64::try_from(ttl_ms).unwrap_or(i64::MAX))
            .ignore();
        for (workspace, share) in shares {
            let key = self.keys.activity(instance, workspace);
            pipe.pset_ex(key, share, ttl_ms).ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// The latest activity shares of `workspace` by every instance but `except` that
    /// shared within `ttl`.
    pub async fn activity(
        &self,
        workspace: &str,
        except: &str,
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.command_connection()?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let fresh = unix_millis().saturating_sub(ttl_ms);
        let instances: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&self.keys.activity_instances)
            .arg(fresh)
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        let keys: Vec<String> = instances
            .iter()
            .filter(|instance| instance.as_str() != except)
            .map(|instance| self.keys.activity(instance, workspace))
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let shares: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        Ok(shares.into_iter().flatten().collect())
    }

    /// `HSET` of every pair at once: idempotent, so no script is needed.
    pub(super) async fn remember_scim_users(&self, users: &[ScimUser]) -> Result<(), StoreError> {
        let mut conn = self.command_connection()?;
        let mut command = redis::cmd("HSET");
        command.arg(&self.keys.scim_users);
        for user in users {
            command
                .arg(pair_field(&user.workspace, &user.id)?)
                .arg(&user.user);
        }
        command.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    pub(super) async fn scim_user(
        &self,
        workspace: Option<&str>,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.command_connection()?;
        Ok(redis::cmd("HGET")
            .arg(&self.keys.scim_users)
            .arg(pair_field(&workspace, &id)?)
            .query_async(&mut conn)
            .await?)
    }

    /// The newest `limit` audit records of `workspace`, newest first.
    pub(super) async fn audit(
        &self,
        workspace: &str,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let Some(last) = limit.checked_sub(1) else {
            return Ok(Vec::new());
        };
        let mut conn = self.command_connection()?;
        let records: Vec<String> = redis::cmd("LRANGE")
            .arg(self.keys.audit(Some(workspace)))
            .arg(0)
            .arg(last)
            .query_async(&mut conn)
            .await?;
        records
            .iter()
            .map(|record| Ok(serde_json::from_str(record)?))
            .collect()
    }

    fn command_connection(&self) -> Result<MultiplexedConnection, StoreError> {
        self.conn
            .load()
            .as_deref()
            .cloned()
            .ok_or(StoreError::Unavailable)
    }
}

/// Connection and response timeouts of a connection (a response may take `response`).
fn connection_config(response: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response))
}

/// `future`, or `StoreError::Timeout` after `limit`.
async fn within<T, E: Into<StoreError>>(
    limit: Duration,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| StoreError::Timeout)?
        .map_err(Into::into)
}

fn unix_millis() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since_epoch.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// === impl Keys ===

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            workspaces: format!("{prefix}workspaces"),
            users: format!("{prefix}users"),
            subjects: format!("{prefix}subjects"),
            sids: format!("{prefix}sids"),
            sids_expiry: format!("{prefix}sids:expiry"),
            scim_users: format!("{prefix}scim_users"),
            schedules: format!("{prefix}schedules"),
            policies: format!("{prefix}policies"),
            channel: format!("{prefix}changes"),
            activity_instances: format!("{prefix}activity:instances"),
        }
    }

    /// An instance id never contains `:`, so each (instance, workspace) has its own key.
    fn activity(&self, instance: &str, workspace: &str) -> String {
        format!("{}activity:{instance}:{workspace}", self.prefix)
    }

    /// A workspace's trail; subject-wide records go to a list no workspace reads.
    fn audit(&self, workspace: Option<&str>) -> String {
        match workspace {
            Some(workspace) => format!("{}audit:{workspace}", self.prefix),
            None => format!("{}audit", self.prefix),
        }
    }

    /// The hash and field holding `scope`'s cutoff. A user's field is a JSON pair, so any
    /// workspace or subject text maps to exactly one field.
    fn cutoff_field(&self, scope: &Scope) -> Result<(&str, String), StoreError> {
        Ok(match scope {
            Scope::Workspace(workspace) => (&self.workspaces, workspace.clone()),
            Scope::User { workspace, subject } => (&self.users, pair_field(workspace, subject)?),
            Scope::Subject(subject) => (&self.subjects, subject.clone()),
        })
    }

    /// An effect as the commit script takes it: its kind, key and field, and the JSON it
    /// writes passed as text.
    fn wire(&self, effect: &Effect) -> Result<serde_json::Value, StoreError> {
        match effect {
            Effect::Cutoff {
                scope,
                valid_after,
                preserved,
            } => {
                let (key, field) = self.cutoff_field(scope)?;
                Ok(json!({
                    "kind": "cutoff",
                    "key": key,
                    "field": field,
                    "scope": serde_json::to_string(scope)?,
                    "valid_after": valid_after,
                    "preserved": serde_json::to_string(preserved)?,
                }))
            }
            Effect::RevokedSid {
                workspace,
                sid,
                expires_at,
            } => Ok(json!({
                "kind": "revoked_sid",
                "key": self.sids,
                "field": pair_field(workspace, sid)?,
                "index": self.sids_expiry,
                "workspace": serde_json::to_string(workspace)?,
                "sid": serde_json::to_string(sid)?,
                "expires_at": expires_at,
            })),
            Effect::SignalSeen {
                issuer,
                jti,
                expires_at,
            } => Ok(json!({
                "kind": "signal_seen",
                "key": format!("{}seen:{}", self.prefix, pair_field(issuer, jti)?),
                "expires_at": expires_at,
            })),
            Effect::Restore { record } => self.restore(record),
            Effect::Schedule { workspace, pending } => Ok(json!({
                "kind": "schedule",
                "key": self.schedules,
                "field": workspace,
                "workspace": serde_json::to_string(workspace)?,
                "pending": serde_json::to_string(pending)?,
                "require_pending": pending.is_none(),
            })),
            Effect::FireSchedule {
                workspace,
                version,
                valid_after,
                preserved,
            } => self.wire_fire_schedule(workspace, *version, *valid_after, preserved),
            Effect::Policy {
                workspace,
                document,
                updated_at,
                updated_by,
                if_version,
            } => self.wire_policy(workspace, document, (updated_at, updated_by), *if_version),
        }
    }

    /// A due schedule applied as a workspace cutoff, only while `version` is still the
    /// pending one.
    fn wire_fire_schedule(
        &self,
        workspace: &str,
        version: u64,
        valid_after: i64,
        preserved: &Option<Preserved>,
    ) -> Result<serde_json::Value, StoreError> {
        Ok(json!({
            "kind": "fire_schedule",
            "key": self.schedules,
            "field": workspace,
            "workspace": serde_json::to_string(workspace)?,
            "require_pending": true,
            // Text: cjson would round a 16-digit version.
            "version": version.to_string(),
            "cutoff_key": self.workspaces,
            "cutoff_field": workspace,
            "scope": serde_json::to_string(&Scope::Workspace(workspace.to_string()))?,
            "valid_after": valid_after,
            "preserved": serde_json::to_string(preserved)?,
        }))
    }

    /// A policy replaced whole, refused in the script when `if_version` is stale.
    fn wire_policy(
        &self,
        workspace: &str,
        document: &PolicyDocument,
        (updated_at, updated_by): (&String, &Option<String>),
        if_version: Option<u64>,
    ) -> Result<serde_json::Value, StoreError> {
        let mut wire = json!({
            "kind": "policy",
            "key": self.policies,
            "field": workspace,
            "workspace": serde_json::to_string(workspace)?,
            "document": serde_json::to_string(document)?,
            "updated_at": serde_json::to_string(updated_at)?,
            "updated_by": serde_json::to_string(updated_by)?,
        });
        // Absent rather than null (cjson's null is true in Lua); a text, because cjson
        // would round a 16-digit version.
        if let Some(version) = if_version {
            wire["if_version"] = json!(version.to_string());
        }
        Ok(wire)
    }

    /// The record stored in `hash` under `field`: the inverse of `cutoff_field` and of the
    /// `revoked_sid` layout.
    fn record(&self, hash: &str, field: &str, value: &[u8]) -> Result<Option<Record>, StoreError> {
        let scope = match hash {
            h if h == self.workspaces => Scope::Workspace(field.to_string()),
            h if h == self.subjects => Scope::Subject(field.to_string()),
            h if h == self.users => {
                let (workspace, subject) = super::decode::pair(field)?;
                Scope::User { workspace, subject }
            }
            h if h == self.schedules => {
                return Ok(Some(Record::Schedule {
                    workspace: field.to_string(),
                    schedule: serde_json::from_slice(value)?,
                }));
            }
            h if h == self.policies => {
                let (workspace, policy) = (field.to_string(), serde_json::from_slice(value)?);
                return Ok(Some(Record::Policy { workspace, policy }));
            }
            h if h == self.sids => {
                let (workspace, sid) = serde_json::from_str(field)?;
                let revoked = serde_json::from_slice(value)?;
                return Ok(Some(Record::RevokedSid {
                    workspace,
                    sid,
                    revoked,
                }));
            }
            _ => return Ok(None),
        };
        let cutoff = super::decode::cutoff(value)?;
        Ok(Some(Record::Cutoff { scope, cutoff }))
    }
}

// === impl Health ===

impl Health {
    fn new() -> Self {
        Self {
            up: AtomicBool::new(false),
            last_sync: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn synced(&self) {
        let millis = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_sync.store(millis, Ordering::Release);
        self.up.store(true, Ordering::Release);
    }

    fn since_sync(&self) -> Duration {
        let at = self.last_sync.load(Ordering::Acquire);
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(at))
    }
}

// === impl Published ===

impl Published {
    /// Decodes a message of the change channel.
    pub fn decode(payload: &[u8]) -> Result<Self, StoreError> {
        Ok(Self(serde_json::from_slice(payload)?))
    }

    /// The records of the commit, in order.
    pub fn into_records(self) -> Vec<Record> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoff_fields_round_trip_any_text() {
        let keys = Keys::new("p:");
        let cutoff = r#"{"valid_after":1,"preserved":null,"version":1}"#;
        for scope in [
            Scope::Workspace("acme \"x\"".into()),
            Scope::User {
                workspace: "a\",\"b".into(),
                subject: "auth0|42".into(),
            },
            Scope::Subject("bob@example.com".into()),
        ] {
            let (hash, field) = keys.cutoff_field(&scope).unwrap();
            let record = keys.record(hash, &field, cutoff.as_bytes()).unwrap();
            assert!(matches!(record, Some(Record::Cutoff { scope: s, .. }) if s == scope));
        }
        // A value is taken as bytes: one that is not UTF-8 is unreadable, never a cutoff.
        let bad = b"{\"valid_after\":1,\"preserved\":{\"session_id\":\"\xff\",\"expires_at\":2},\"version\":1}";
        assert!(keys.record("p:workspaces", "acme", bad).is_err());
        assert_eq!(keys.audit(Some("acme")), "p:audit:acme");
        assert_eq!(keys.audit(None), "p:audit");
    }

    #[test]
    fn schedules_load_and_decode_as_the_script_writes_them() {
        let keys = Keys::new("p:");
        let cleared = r#"{"pending":null,"version":1795916000123456}"#;
        let record = keys
            .record("p:schedules", "acme \"x\"", cleared.as_bytes())
            .unwrap();
        let Some(Record::Schedule {
            workspace,
            schedule,
        }) = record
        else {
            panic!("a schedule record expected: {record:?}");
        };
        assert_eq!(workspace, "acme \"x\"");
        assert_eq!(
            (schedule.pending, schedule.version),
            (None, 1795916000123456)
        );
        let fired = format!(
            r#"[{{"kind":"cutoff","scope":{{"workspace":"acme"}},"cutoff":{{"valid_after":1795916001,"preserved":null,"version":7}}}},{{"kind":"schedule","workspace":"acme","schedule":{cleared}}}]"#
        );
        let records = Published::decode(fired.as_bytes()).unwrap().into_records();
        assert!(matches!(
            records.as_slice(),
            [Record::Cutoff { .. }, Record::Schedule { .. }]
        ));
    }

    #[test]
    fn published_changes_decode_to_their_records() {
        let payload = br#"[{"kind":"cutoff","scope":{"workspace":"acme","subject":"bob"},"cutoff":{"valid_after":1795916001,"preserved":null,"version":1795916000123456}}]"#;
        let records = Published::decode(payload).unwrap().into_records();
        let [Record::Cutoff { scope, cutoff }] = records.as_slice() else {
            panic!("one cutoff record expected: {records:?}");
        };
        assert_eq!(
            *scope,
            Scope::User {
                workspace: "acme".into(),
                subject: "bob".into()
            }
        );
        assert_eq!(cutoff.valid_after, 1795916001);
        assert_eq!(cutoff.version, 1795916000123456);
    }
}
