//! The outbox in Redis, shared by the fleet. Keys, per webhook id W (under the prefix P):
//!
//! ```text
//! P outbox:sequence          counter   commit order of queued events, store-wide
//! P outbox:W:events          hash      sequence -> audit record JSON (undelivered events)
//! P outbox:W:queue:<group>   list      sequences of one ordering group, oldest first
//! P outbox:W:due             zset      group -> when its head may be tried (ms, Redis clock)
//! P outbox:W:failures        hash      group -> failed attempts of its head
//! P outbox:W:claims          hash      group -> the claim on its head
//! ```
//!
//! The commit script queues each event (see `COMMIT_SCRIPT`). A claim moves the group's
//! due time one lease ahead, so no other instance takes it meanwhile; a holder that dies
//! leaves the lease to run out, and the next claim anywhere takes the event over. Finishing
//! removes the head only if it is still the claimed event, and reschedules only under the
//! holder's own claim, so a late answer from a holder whose lease was taken over never
//! removes or delays the wrong event. Every time comes from the Redis clock.

use std::time::Duration;

use serde_json::json;

use super::{Keys, RedisStore};
use crate::store::outbox::{Claimed, Delivery, group, millis};
use crate::store::{AuditRecord, StoreError};

/// The Redis clock in milliseconds, as `now` (every outbox script starts with it).
const NOW_MS: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function ms(n) return string.format('%d', n) end
"#;

/// ARGV: due, queue prefix, events, failures, claims, limit, lease ms, claimant.
/// Returns the claimed heads `{group, sequence, record, failures, token}` and how many ms
/// until the earliest due time (-1 when nothing is queued).
const CLAIM: &str = r#"
local claimed = {}
local groups = redis.call('ZRANGEBYSCORE', ARGV[1], '-inf', ms(now), 'LIMIT', 0, ARGV[6])
for _, group in ipairs(groups) do
  local sequence = redis.call('LINDEX', ARGV[2] .. group, 0)
  if sequence then
    local token = ARGV[8] .. ':' .. ms(now) .. ':' .. sequence
    redis.call('ZADD', ARGV[1], ms(now + tonumber(ARGV[7])), group)
    redis.call('HSET', ARGV[5], group, token)
    local failures = redis.call('HGET', ARGV[4], group) or '0'
    local record = redis.call('HGET', ARGV[3], sequence) or ''
    claimed[#claimed + 1] = {group, sequence, record, failures, token}
  else
    redis.call('ZREM', ARGV[1], group)
  end
end
local next_due = -1
local first = redis.call('ZRANGE', ARGV[1], 0, 0, 'WITHSCORES')
if first[2] then
  next_due = math.max(0, tonumber(first[2]) - now)
end
return {claimed, ms(next_due)}
"#;

/// ARGV: due, queue, events, failures, claims, group, sequence, token.
const FINISH: &str = r#"
if redis.call('LINDEX', ARGV[2], 0) == ARGV[7] then
  redis.call('LPOP', ARGV[2])
  redis.call('HDEL', ARGV[3], ARGV[7])
  redis.call('HDEL', ARGV[4], ARGV[6])
end
if redis.call('HGET', ARGV[5], ARGV[6]) == ARGV[8] then
  redis.call('HDEL', ARGV[5], ARGV[6])
  if redis.call('LLEN', ARGV[2]) > 0 then
    redis.call('ZADD', ARGV[1], ms(now), ARGV[6])
  else
    redis.call('ZREM', ARGV[1], ARGV[6])
  end
end
return 1
"#;

/// ARGV: due, queue, events, failures, claims, group, sequence, token, delay ms.
const RETRY: &str = r#"
if redis.call('HGET', ARGV[5], ARGV[6]) ~= ARGV[8] then
  return 0
end
redis.call('HDEL', ARGV[5], ARGV[6])
if redis.call('LINDEX', ARGV[2], 0) == ARGV[7] then
  redis.call('HINCRBY', ARGV[4], ARGV[6], 1)
  redis.call('ZADD', ARGV[1], ms(now + tonumber(ARGV[9])), ARGV[6])
elseif redis.call('LLEN', ARGV[2]) > 0 then
  redis.call('ZADD', ARGV[1], ms(now), ARGV[6])
else
  redis.call('ZREM', ARGV[1], ARGV[6])
end
return 1
"#;

/// The outbox scripts, loaded once per process.
pub(super) struct Scripts {
    claim: redis::Script,
    finish: redis::Script,
    retry: redis::Script,
}

/// One webhook's keys.
struct WebhookKeys {
    due: String,
    queue_prefix: String,
    events: String,
    failures: String,
    claims: String,
}

/// A claimed head as the claim script returns it.
type ClaimedHead = (String, u64, Vec<u8>, u32, String);

// === impl Scripts ===

impl Scripts {
    pub(super) fn new() -> Self {
        let script = |body: &str| redis::Script::new(&format!("{NOW_MS}{body}"));
        Self {
            claim: script(CLAIM),
            finish: script(FINISH),
            retry: script(RETRY),
        }
    }
}

// === impl Keys ===

impl Keys {
    fn webhook(&self, id: &str) -> WebhookKeys {
        let base = format!("{}outbox:{id}:", self.prefix);
        WebhookKeys {
            due: format!("{base}due"),
            queue_prefix: format!("{base}queue:"),
            events: format!("{base}events"),
            failures: format!("{base}failures"),
            claims: format!("{base}claims"),
        }
    }

    /// ARGV[5] of the commit script: where `audit` is queued, one route per webhook.
    pub(super) fn outbox(
        &self,
        audit: &AuditRecord,
        webhooks: &[String],
    ) -> Result<String, StoreError> {
        let group = group(audit)?;
        let routes: Vec<_> = webhooks
            .iter()
            .map(|id| {
                let keys = self.webhook(id);
                json!({
                    "events": keys.events,
                    "queue": format!("{}{group}", keys.queue_prefix),
                    "due": keys.due,
                })
            })
            .collect();
        let outbox = json!({
            "sequence": format!("{}outbox:sequence", self.prefix),
            "group": group,
            "routes": routes,
        });
        Ok(outbox.to_string())
    }
}

// === impl WebhookKeys ===

impl WebhookKeys {
    /// ARGV 1-5 of finish and retry, the delivery's own queue included.
    fn for_delivery(&self, delivery: &Delivery) -> [String; 5] {
        [
            self.due.clone(),
            format!("{}{}", self.queue_prefix, delivery.group),
            self.events.clone(),
            self.failures.clone(),
            self.claims.clone(),
        ]
    }
}

// === impl RedisStore ===

impl RedisStore {
    /// Claims up to `limit` due heads of `webhook` for `lease`.
    pub(in crate::store) async fn claim(
        &self,
        webhook: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Claimed, StoreError> {
        let mut conn = self.command_connection()?;
        let keys = self.keys.webhook(webhook);
        let (heads, next_due): (Vec<ClaimedHead>, i64) = self
            .outbox_scripts
            .claim
            .arg(&keys.due)
            .arg(&keys.queue_prefix)
            .arg(&keys.events)
            .arg(&keys.failures)
            .arg(&keys.claims)
            .arg(limit)
            .arg(millis(lease))
            .arg(&self.instance)
            .invoke_async(&mut conn)
            .await?;
        let deliveries = heads
            .into_iter()
            .map(|(group, sequence, record, failures, token)| Delivery {
                webhook: webhook.to_string(),
                group,
                sequence,
                record: record.into(),
                failures,
                token,
            })
            .collect();
        let next_due = u64::try_from(next_due).ok().map(Duration::from_millis);
        Ok(Claimed {
            deliveries,
            next_due,
        })
    }

    /// Removes the delivered (or dropped) head, if it still is the head.
    pub(in crate::store) async fn finish(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let mut conn = self.command_connection()?;
        let keys = self.keys.webhook(&delivery.webhook).for_delivery(delivery);
        let _: i64 = self
            .outbox_scripts
            .finish
            .arg(&keys)
            .arg(&delivery.group)
            .arg(delivery.sequence)
            .arg(&delivery.token)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Tries the head again `after` from now, if this instance still holds its claim.
    pub(in crate::store) async fn retry(
        &self,
        delivery: &Delivery,
        after: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.command_connection()?;
        let keys = self.keys.webhook(&delivery.webhook).for_delivery(delivery);
        let _: i64 = self
            .outbox_scripts
            .retry
            .arg(&keys)
            .arg(&delivery.group)
            .arg(delivery.sequence)
            .arg(&delivery.token)
            .arg(millis(after))
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Undelivered events of `webhook`, fleet-wide.
    pub(in crate::store) async fn pending(&self, webhook: &str) -> Result<u64, StoreError> {
        let mut conn = self.command_connection()?;
        let count = redis::cmd("HLEN")
            .arg(self.keys.webhook(webhook).events)
            .query_async(&mut conn)
            .await?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Action;

    #[test]
    fn outbox_routes_name_one_queue_per_workspace() {
        let keys = Keys::new("p:");
        let audit = AuditRecord::example("acme", Action::LogoutAll);
        let outbox: serde_json::Value =
            serde_json::from_str(&keys.outbox(&audit, &["w1".into()]).unwrap()).unwrap();
        assert_eq!(outbox["sequence"], "p:outbox:sequence");
        assert_eq!(outbox["group"], "\"acme\"");
        assert_eq!(outbox["routes"][0]["queue"], "p:outbox:w1:queue:\"acme\"");
        assert_eq!(outbox["routes"][0]["due"], "p:outbox:w1:due");
    }
}
