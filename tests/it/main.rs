//! Integration tests: ONE binary that starts the real server on 127.0.0.1:0 and talks TLS
//! to it. Every issued certificate is checked by OpenSSL and x509-parser.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod admin_certs;
mod admin_people;
mod admin_roles;
mod admin_setup;
mod architecture;
mod cli;
mod connections;
mod data_dir;
mod demo;
mod enroll;
mod est;
mod fuzz_seeds;
mod http2;
mod mail;
mod metrics;
mod observe;
mod outside;
mod pkcs12;
mod revocation;
mod serverkeygen;
mod smtp;
mod support;
mod throttle;
