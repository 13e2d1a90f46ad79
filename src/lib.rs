//! estgate: a certificate enrollment server (EST, browser self-enrollment, administration)
//! over one registration authority. See DESIGN.md for the map; `main.rs` only composes.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod app;
pub mod ca;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod mail;
pub mod metrics;
pub mod ra;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod web;
