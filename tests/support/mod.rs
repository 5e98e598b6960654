//! Real parts for integration tests, one module per concern:
//!
//! - [`upstream`]: the echo upstream and what it saw; [`dpop_api`]: its
//!   checks as an API that takes DPoP-bound tokens;
//! - [`app`]: cloakroom in this process ([`App`]) or as its own ([`Process`]);
//! - [`drain`]: a replica asked to stop with a request in flight;
//! - [`net`]: free ports, raw socket exchanges, the HTTP client;
//! - [`browser`]: a minimal browser with a cookie jar per origin;
//! - [`idp`]: the real IdP, and the [`idp::World`] of replicas around it;
//! - [`fake_idp`]: an IdP that forges what a real one never would;
//! - [`redis`], [`pki`]: real `redis-server`s, and certificates for them;
//! - [`logs`]: the process's log lines, captured;
//! - [`nginx`]: a real nginx in front of cloakroom (forward-auth);
//! - [`npm`]: the npm packages of a directory, installed when missing;
//! - [`store_contract`]: what every session store must do, run per store;
//! - [`wait`]: polling until something holds, within a bound.
// Each test binary uses a part of this.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod browser;
pub mod dbsc;
pub mod dpop_api;
pub mod drain;
pub mod fake_idp;
pub mod idp;
pub mod logs;
pub mod net;
pub mod nginx;
pub mod npm;
pub mod pki;
pub mod playwright;
pub mod redis;
pub mod store_contract;
pub mod upstream;
pub mod wait;

pub use app::{config, App, Bound, Process, COOKIE_KEY};
pub use browser::{Browser, Page, SESSION_COOKIE};
pub use net::{client, client_builder, free_addr, free_port, raw, raw_json};
pub use upstream::{bearer_at, bearer_claims, echoed, echoed_headers, Upstream};
