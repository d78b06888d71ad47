//! `[signals]`: the identity providers whose signals may revoke sessions, and the product's
//! own SCIM endpoints the gateway watches (SPEC section 13). Validated here; the signals
//! room acts on them.

use std::collections::HashMap;

use jsonwebtoken::Algorithm;
use percent_encoding::percent_decode_str;

use super::raw::{OneOrMany, RawIssuer, RawKey, RawScim, RawSignals};
use super::validate::{KeyRules, invalid, key_config, warning};
use super::{ConfigError, ConfigWarning, KeyConfig, check_path, is_under};

/// Signals are signed with asymmetric keys only: no shared secret an identity provider
/// and every product would hold alike.
pub const SIGNAL_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// `[signals]`, validated.
#[derive(Debug, Clone, Default)]
pub struct SignalsConfig {
    /// `[[signals.issuers]]`, in file order; each `iss` at most once.
    pub issuers: Vec<IssuerConfig>,
    /// `[signals.scim]`; no `paths`: off.
    pub scim: ScimConfig,
}

/// One `[[signals.issuers]]` entry.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// `signals.issuers[N]`, for messages.
    pub name: String,
    /// The `iss` its signals carry.
    pub issuer: String,
    /// Its signals' `aud` must contain one of these.
    pub audience: Vec<String>,
    /// Where its keys come from (named `signals.issuers[N]`).
    pub key: KeyConfig,
    /// Its signals apply to this workspace only; `None`: subject-wide.
    pub workspace: Option<String>,
    /// Whether a signal may log a whole workspace out.
    pub allow_workspace_logout: bool,
    /// The env var whose value an SSF push's `Authorization` header must equal.
    pub push_authorization_env: Option<String>,
}

/// `[signals.scim]`, validated.
#[derive(Debug, Clone)]
pub struct ScimConfig {
    /// `signals.scim.paths`: the product's user resources.
    pub paths: Vec<ScimTemplate>,
    /// `signals.scim.subject_attribute`: the attribute matched against the user claim.
    pub subject_attribute: ScimAttribute,
    /// For templates without `{workspace}`; `None` there: subject-wide.
    pub workspace: Option<String>,
}

/// Which SCIM attribute names the user (`sessions.user_claim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimAttribute {
    Id,
    UserName,
    ExternalId,
}

/// A path template such as `/scim/v2/{workspace}/Users/{id}`: it covers the resource path
/// and its collection (the template without the trailing `/{id}`).
#[derive(Debug, Clone)]
pub struct ScimTemplate {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Workspace,
    Id,
}

/// A request path a template covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimMatch {
    /// The `{workspace}` segment, percent-decoded.
    pub workspace: Option<String>,
    /// The `{id}` segment, percent-decoded; `None` for the collection.
    pub id: Option<String>,
}

// === impl ScimConfig ===

impl Default for ScimConfig {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            subject_attribute: ScimAttribute::Id,
            workspace: None,
        }
    }
}

impl ScimConfig {
    /// The first template covering `path` (a checked request path), and what it captured.
    pub fn matches(&self, path: &str) -> Option<ScimMatch> {
        self.paths
            .iter()
            .find_map(|template| template.matches(path))
    }
}

// === impl ScimAttribute ===

impl ScimAttribute {
    fn parse(text: &str) -> Result<Self, ConfigError> {
        match text {
            "id" => Ok(Self::Id),
            "userName" => Ok(Self::UserName),
            "externalId" => Ok(Self::ExternalId),
            _ => Err(invalid(
                "signals.scim.subject_attribute",
                "must be \"id\", \"userName\" or \"externalId\"",
            )),
        }
    }

    /// The SCIM attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::UserName => "userName",
            Self::ExternalId => "externalId",
        }
    }
}

// === impl ScimTemplate ===

impl ScimTemplate {
    /// The template as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` is the resource (same segments) or the collection (all but `{id}`).
    pub fn matches(&self, path: &str) -> Option<ScimMatch> {
        let path = path.strip_suffix('/').unwrap_or(path);
        let given: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        let resource = given.len() == self.segments.len();
        if !resource && given.len() + 1 != self.segments.len() {
            return None;
        }
        let mut found = ScimMatch {
            workspace: None,
            id: None,
        };
        for (segment, text) in self.segments.iter().zip(&given) {
            let decoded = || Some(percent_decode_str(text).decode_utf8_lossy().into_owned());
            match segment {
                Segment::Literal(literal) if literal == text => {}
                Segment::Literal(_) => return None,
                _ if text.is_empty() => return None,
                Segment::Workspace => found.workspace = decoded(),
                Segment::Id => found.id = decoded(),
            }
        }
        Some(found)
    }

    fn parse(text: &str, admin_prefix: &str) -> Result<Self, ConfigError> {
        const KEY: &str = "signals.scim.paths";
        let refuse = |why: &str| Err(invalid(KEY, format!("{text:?} {why}")));
        if !text.starts_with('/') || check_path(text).is_err() {
            return refuse("must be a clean absolute path such as /scim/v2/Users/{id}");
        }
        if is_under(text, admin_prefix) {
            return refuse("is under admin.path_prefix, which is never forwarded");
        }
        let segments: Vec<Segment> = text[1..]
            .split('/')
            .map(|segment| match segment {
                "{workspace}" => Segment::Workspace,
                "{id}" => Segment::Id,
                literal => Segment::Literal(literal.to_string()),
            })
            .collect();
        let count = |wanted: &Segment| segments.iter().filter(|s| *s == wanted).count();
        let bad_literal = segments.iter().any(|s| {
            matches!(s, Segment::Literal(l) if l.is_empty() || l.contains('{') || l.contains('}'))
        });
        if bad_literal || count(&Segment::Workspace) > 1 {
            return refuse("may hold {workspace} once and {id}, each as a whole segment");
        }
        if segments.last() != Some(&Segment::Id) || count(&Segment::Id) != 1 {
            return refuse("must end with /{id}, the SCIM resource id");
        }
        if !segments.iter().any(|s| matches!(s, Segment::Literal(_))) {
            return refuse("needs a fixed segment, such as /Users/{id}");
        }
        Ok(Self {
            text: text.to_string(),
            segments,
        })
    }

    fn has_workspace(&self) -> bool {
        self.segments.contains(&Segment::Workspace)
    }
}

/// `[signals]`: every issuer, then the SCIM observer.
pub(super) fn signals(
    raw: RawSignals,
    admin_prefix: &str,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<SignalsConfig, ConfigError> {
    let mut named: HashMap<String, String> = HashMap::new();
    let mut issuers = Vec::with_capacity(raw.issuers.len());
    for (index, raw) in raw.issuers.into_iter().enumerate() {
        let issuer = issuer(format!("signals.issuers[{index}]"), raw, warnings)?;
        if let Some(first) = named.insert(issuer.issuer.clone(), issuer.name.clone()) {
            return Err(invalid(
                &format!("{}.issuer", issuer.name),
                format!("{:?} is already configured by {first}", issuer.issuer),
            ));
        }
        issuers.push(issuer);
    }
    Ok(SignalsConfig {
        issuers,
        scim: scim(raw.scim, admin_prefix, warnings)?,
    })
}

fn issuer(
    name: String,
    raw: RawIssuer,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<IssuerConfig, ConfigError> {
    let at = |field: &str| format!("{name}.{field}");
    let key = issuer_key(&name, &raw, warnings)?;
    let issuer = raw
        .issuer
        .filter(|iss| !iss.is_empty())
        .ok_or_else(|| invalid(&at("issuer"), "is required: the iss of its signals"))?;
    let audience = audience(&at("audience"), raw.audience)?;
    for (field, value) in [
        ("workspace", &raw.workspace),
        ("push_authorization_env", &raw.push_authorization_env),
    ] {
        if value.as_ref().is_some_and(String::is_empty) {
            return Err(invalid(&at(field), "must not be empty when set"));
        }
    }
    Ok(IssuerConfig {
        key,
        name,
        issuer,
        audience,
        workspace: raw.workspace,
        allow_workspace_logout: raw.allow_workspace_logout,
        push_authorization_env: raw.push_authorization_env,
    })
}

/// `audience`: a non-empty string, or a list of them.
fn audience(key: &str, raw: Option<OneOrMany>) -> Result<Vec<String>, ConfigError> {
    let audience = match raw {
        None => Vec::new(),
        Some(OneOrMany::One(aud)) => vec![aud],
        Some(OneOrMany::Many(list)) => list,
    };
    if audience.is_empty() || audience.iter().any(String::is_empty) {
        let why = "is required: the aud its signals carry (a string or a list)";
        return Err(invalid(key, why));
    }
    Ok(audience)
}

/// The issuer's key source, checked as a `[[jwt.keys]]` entry would be (without HMAC).
fn issuer_key(
    name: &str,
    raw: &RawIssuer,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<KeyConfig, ConfigError> {
    let sources = [&raw.jwks_url, &raw.jwks_file, &raw.public_key_file];
    if sources.iter().filter(|source| source.is_some()).count() != 1 {
        return Err(invalid(
            name,
            "set exactly one of jwks_url, jwks_file, public_key_file (signals use asymmetric keys only)",
        ));
    }
    let key = RawKey {
        kid: raw.kid.clone(),
        algorithm: raw.algorithm.clone(),
        public_key_file: raw.public_key_file.clone(),
        jwks_file: raw.jwks_file.clone(),
        jwks_url: raw.jwks_url.clone(),
        refresh_secs: raw.refresh_secs,
        ca_file: raw.ca_file.clone(),
        ..RawKey::default()
    };
    let rules = KeyRules {
        algorithms: &SIGNAL_ALGORITHMS,
        listed_in: "the signal algorithms (RS256, PS256, ES256, EdDSA)",
    };
    key_config(name.to_string(), key, &rules, warnings)
}

fn scim(
    raw: RawScim,
    admin_prefix: &str,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<ScimConfig, ConfigError> {
    let subject_attribute = ScimAttribute::parse(&raw.subject_attribute)?;
    if raw.workspace.as_ref().is_some_and(String::is_empty) {
        return Err(invalid(
            "signals.scim.workspace",
            "must not be empty when set",
        ));
    }
    let paths = raw
        .paths
        .iter()
        .map(|text| ScimTemplate::parse(text, admin_prefix))
        .collect::<Result<Vec<_>, _>>()?;
    if raw.workspace.is_some() && paths.iter().all(ScimTemplate::has_workspace) {
        let why = match paths.is_empty() {
            true => "ignored: signals.scim.paths is empty",
            false => "ignored: every template names its {workspace}",
        };
        warnings.push(warning("signals.scim.workspace", why));
    }
    Ok(ScimConfig {
        workspace: raw.workspace.filter(|_| !paths.is_empty()),
        paths,
        subject_attribute,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(text: &str) -> ScimTemplate {
        ScimTemplate::parse(text, "/_sessiongate").unwrap()
    }

    #[test]
    fn a_template_covers_its_resource_and_its_collection() {
        let users = template("/scim/v2/{workspace}/Users/{id}");
        let found = |ws: &str, id: Option<&str>| ScimMatch {
            workspace: Some(ws.into()),
            id: id.map(str::to_string),
        };
        assert_eq!(
            users.matches("/scim/v2/acme/Users/2819c223"),
            Some(found("acme", Some("2819c223")))
        );
        assert_eq!(
            users.matches("/scim/v2/a%20b/Users/x%7Cy"),
            Some(found("a b", Some("x|y")))
        );
        assert_eq!(
            users.matches("/scim/v2/acme/Users"),
            Some(found("acme", None))
        );
        assert_eq!(
            users.matches("/scim/v2/acme/Users/"),
            Some(found("acme", None))
        );
        for other in [
            "/scim/v2/acme/Groups/1",
            "/scim/v2/acme/Users/1/x",
            "/scim/v2//Users/1",
            "/scim/v2",
            "/",
        ] {
            assert_eq!(users.matches(other), None, "{other}");
        }
    }

    #[test]
    fn bad_templates_are_refused_naming_the_key() {
        for bad in [
            "scim/Users/{id}",
            "/scim/Users",
            "/scim/{id}/Users",
            "/scim/{workspace}/{workspace}/Users/{id}",
            "/scim/{tenant}/Users/{id}",
            "/scim//Users/{id}",
            "/{id}",
            "/scim/../Users/{id}",
            "/_sessiongate/scim/{id}",
        ] {
            let error = ScimTemplate::parse(bad, "/_sessiongate").unwrap_err();
            assert!(
                error.to_string().starts_with("signals.scim.paths"),
                "{bad}: {error}"
            );
        }
    }
}
