//! Workspace policies in memory: step 6 of the acceptance rule (SPEC section 9).
//!
//! A policy is compiled once, when its record is applied: the allow-list becomes sorted
//! ranges (`ranges`), the claim paths are parsed. A request costs one map lookup when its
//! workspace has no policy, and never allocates.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::{Map, Value};

use crate::config::ClaimPath;
use crate::store::{PolicyDocument, Record, StoredPolicy};

mod parse;
mod ranges;

pub use parse::{FIELDS, PolicyError, parse_document};

use parse::parse_cidr;
use ranges::IpRanges;

/// Every workspace's policy in force, by workspace. A cleared policy stays as an empty
/// one, so its version still outranks older records.
#[derive(Debug, Default)]
pub struct Policies {
    workspaces: DashMap<Box<str>, Policy>,
}

/// A policy ready to enforce, with the document it came from.
#[derive(Debug, Clone)]
pub struct Policy {
    ips: Option<IpRanges>,
    claims: Box<[Requirement]>,
    max_age_secs: Option<i64>,
    stored: StoredPolicy,
}

/// One compiled `require_claims` entry.
#[derive(Debug, Clone)]
struct Requirement {
    /// `None` for a path that does not parse: never met.
    path: Option<ClaimPath>,
    any_of: Box<[String]>,
    /// The values, space-separated, when the claim is `acr`: RFC 9470's `acr_values`.
    acr_values: Option<Arc<str>>,
}

/// What step 6 looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub workspace: &'a str,
    pub client_ip: IpAddr,
    /// The token's claims.
    pub claims: &'a Map<String, Value>,
    /// `T`, the token's session time.
    pub session_time: f64,
}

/// Why a request fails its workspace's policy (SPEC section 1, step 6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    #[error("ip_not_allowed")]
    IpNotAllowed,
    #[error("sign_in_method_not_allowed")]
    SignInMethod {
        /// Set when the unmet claim is `acr`.
        acr_values: Option<Arc<str>>,
    },
    #[error("session_too_old")]
    TooOld { max_age_secs: i64 },
}

// === impl Policies ===

impl Policies {
    /// Step 6: the policy of the request's workspace, if it has one.
    pub fn check(&self, request: &Request<'_>, now: f64) -> Result<(), PolicyRefusal> {
        match self.workspaces.get(request.workspace) {
            Some(policy) => policy.check(request, now),
            None => Ok(()),
        }
    }

    /// Installs `stored` for `workspace` unless the same or a newer version is there;
    /// returns whether it did.
    pub fn apply(&self, workspace: &str, stored: StoredPolicy) -> bool {
        // Rare (a commit, a resync), so the key allocation of `entry` does not matter; the
        // entry lock makes compare and replace one step.
        match self.workspaces.entry(workspace.into()) {
            dashmap::Entry::Occupied(entry) if entry.get().stored.version >= stored.version => {
                false
            }
            entry => {
                entry.insert(Policy::compile(stored));
                true
            }
        }
    }

    /// The version of the policy held for `workspace`, if any.
    pub fn version(&self, workspace: &str) -> Option<u64> {
        self.workspaces.get(workspace).map(|p| p.stored.version)
    }

    /// Hands every policy held to `visit` (which must not call back into `self`).
    pub fn for_each(&self, mut visit: impl FnMut(Record)) {
        for entry in &self.workspaces {
            visit(Record::Policy {
                workspace: entry.key().to_string(),
                policy: entry.stored.clone(),
            });
        }
    }

    /// The policy of `workspace` as stored (version 0 and empty: none).
    pub fn get(&self, workspace: &str) -> StoredPolicy {
        self.workspaces
            .get(workspace)
            .map(|p| p.stored.clone())
            .unwrap_or_default()
    }
}

// === impl Policy ===

impl Policy {
    /// The enforced form of a stored policy. A CIDR or claim path that does not parse
    /// (never written by this gateway, which validates first) admits nothing: a policy
    /// fails closed.
    pub fn compile(stored: StoredPolicy) -> Self {
        let document = &stored.document;
        let ips = document.ip_allowlist.as_ref().map(|cidrs| {
            let nets: Vec<_> = cidrs.iter().filter_map(|c| parse_cidr(c)).collect();
            IpRanges::new(&nets)
        });
        let claims = document
            .require_claims
            .iter()
            .map(|rule| Requirement {
                path: ClaimPath::dotted(&rule.claim),
                any_of: rule.any_of.clone().into_boxed_slice(),
                acr_values: (rule.claim == "acr").then(|| rule.any_of.join(" ").into()),
            })
            .collect();
        Self {
            ips,
            claims,
            max_age_secs: document.max_session_age_secs,
            stored,
        }
    }

    /// A policy from a document not stored yet (the lockout guard's question).
    pub fn proposed(document: PolicyDocument) -> Self {
        Self::compile(StoredPolicy {
            document,
            ..StoredPolicy::default()
        })
    }

    /// The IP rule, then every required claim, then the session's age.
    pub fn check(&self, request: &Request<'_>, now: f64) -> Result<(), PolicyRefusal> {
        if self
            .ips
            .as_ref()
            .is_some_and(|ips| !ips.contains(request.client_ip))
        {
            return Err(PolicyRefusal::IpNotAllowed);
        }
        if let Some(unmet) = self.claims.iter().find(|r| !r.met(request.claims)) {
            let acr_values = unmet.acr_values.clone();
            return Err(PolicyRefusal::SignInMethod { acr_values });
        }
        match self.max_age_secs {
            Some(max) if now - request.session_time >= max as f64 => {
                Err(PolicyRefusal::TooOld { max_age_secs: max })
            }
            _ => Ok(()),
        }
    }
}

// === impl Requirement ===

impl Requirement {
    /// A string claim equal to one of the values, or an array of strings holding one;
    /// anything else (missing, a number, an object) fails.
    fn met(&self, claims: &Map<String, Value>) -> bool {
        let accepted = |value: &Value| {
            value
                .as_str()
                .is_some_and(|text| self.any_of.iter().any(|a| a == text))
        };
        match self.path.as_ref().and_then(|path| path.lookup(claims)) {
            Some(Value::Array(items)) => items.iter().any(accepted),
            Some(value) => accepted(value),
            None => false,
        }
    }
}

// === impl PolicyRefusal ===

impl PolicyRefusal {
    /// The wire name of the reason.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::IpNotAllowed => "ip_not_allowed",
            Self::SignInMethod { .. } => "sign_in_method_not_allowed",
            Self::TooOld { .. } => "session_too_old",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ClaimRule;
    use serde_json::json;

    fn policy(document: PolicyDocument) -> Policy {
        Policy::proposed(document)
    }

    fn request<'a>(ip: &str, claims: &'a Map<String, Value>, time: f64) -> Request<'a> {
        Request {
            workspace: "acme",
            client_ip: ip.parse().unwrap(),
            claims,
            session_time: time,
        }
    }

    fn rule(claim: &str, any_of: &[&str]) -> ClaimRule {
        ClaimRule {
            claim: claim.into(),
            any_of: any_of.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn max_age_fails_at_exactly_the_boundary_second() {
        let p = policy(PolicyDocument {
            max_session_age_secs: Some(60),
            ..Default::default()
        });
        let claims = Map::new();
        assert_eq!(
            p.check(&request("10.0.0.1", &claims, 1000.0), 1059.999),
            Ok(())
        );
        assert_eq!(
            p.check(&request("10.0.0.1", &claims, 1000.0), 1060.0),
            Err(PolicyRefusal::TooOld { max_age_secs: 60 })
        );
    }

    #[test]
    fn claims_accept_strings_and_arrays_and_refuse_other_types() {
        let p = policy(PolicyDocument {
            require_claims: vec![rule("org.login.amr", &["mfa", "saml"])],
            ..Default::default()
        });
        let check = |claims: Value| {
            let claims = claims.as_object().unwrap().clone();
            p.check(&request("10.0.0.1", &claims, 0.0), 1.0)
        };
        assert_eq!(check(json!({"org": {"login": {"amr": "saml"}}})), Ok(()));
        assert_eq!(
            check(json!({"org": {"login": {"amr": ["pwd", "mfa"]}}})),
            Ok(())
        );
        let refused = Err(PolicyRefusal::SignInMethod { acr_values: None });
        assert_eq!(check(json!({"org": {"login": {"amr": ["pwd"]}}})), refused);
        assert_eq!(check(json!({"org": {"login": {"amr": "pwd"}}})), refused);
        assert_eq!(check(json!({"org": {"login": {"amr": 1}}})), refused);
        assert_eq!(
            check(json!({"org": {"login": {"amr": {"mfa": true}}}})),
            refused
        );
        assert_eq!(check(json!({"org": {"login": {}}})), refused);
        assert_eq!(check(json!({"org": "x"})), refused);
    }

    #[test]
    fn an_unmet_acr_names_the_acceptable_values() {
        let p = policy(PolicyDocument {
            require_claims: vec![rule("acr", &["urn:mfa", "phr"])],
            ..Default::default()
        });
        let claims = Map::new();
        assert_eq!(
            p.check(&request("10.0.0.1", &claims, 0.0), 1.0),
            Err(PolicyRefusal::SignInMethod {
                acr_values: Some("urn:mfa phr".into())
            })
        );
    }

    #[test]
    fn the_ip_rule_comes_first_and_no_rule_admits_everyone() {
        let p = policy(PolicyDocument {
            ip_allowlist: Some(vec!["10.0.0.0/8".into()]),
            max_session_age_secs: Some(60),
            ..Default::default()
        });
        let claims = Map::new();
        assert_eq!(
            p.check(&request("11.0.0.1", &claims, 0.0), 1e9),
            Err(PolicyRefusal::IpNotAllowed)
        );
        assert_eq!(
            p.check(&request("::ffff:10.1.2.3", &claims, 0.0), 1.0),
            Ok(())
        );
        let none = policy(PolicyDocument::default());
        assert_eq!(none.check(&request("1.1.1.1", &claims, 0.0), 1e9), Ok(()));
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let policies = Policies::default();
        let stored = |version, age| StoredPolicy {
            document: PolicyDocument {
                max_session_age_secs: Some(age),
                ..Default::default()
            },
            version,
            ..Default::default()
        };
        assert!(policies.apply("acme", stored(2, 120)));
        assert!(!policies.apply("acme", stored(1, 60)));
        assert!(!policies.apply("acme", stored(2, 60)));
        assert_eq!(
            policies.get("acme").document.max_session_age_secs,
            Some(120)
        );
        assert_eq!(policies.get("other"), StoredPolicy::default());
    }
}
