//! SPEC section 13, signals from the identity provider, through the real binary: OIDC
//! Back-Channel Logout, Shared Signals (CAEP/RISC) pushes, SCIM deprovisioning seen on its
//! way to the product; issuer keys from files and from a real JWKS server; every store, and
//! a Redis fleet.
//!
//! Tokens are signed with the fixture keys (tests/fixtures); signals are sent as identity
//! providers send them.

#[path = "../support/mod.rs"]
mod support;

mod backchannel;
mod idp;
mod keys;
mod product;
mod scim;
mod ssf;
mod stores;
