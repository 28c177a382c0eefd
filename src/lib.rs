//! The `openptl` package as a library: the service ([`server::Server`],
//! which tests can start in-process on port 0) and every command of the
//! binary (`src/main.rs` only parses the command line and dispatches).
//!
//! `cli.rs` defines the command line; `server.rs` wires the log, the
//! application, HTTP and gRPC into a service; `commands/` holds one file
//! per command family; `bench/` the benchmarks; `open.rs` opens a data
//! directory for the tools; `demo.rs` makes the synthetic alliance and
//! `tracker_csv.rs` reads tracker extracts.

pub mod bench;
pub mod cli;
pub mod commands;
pub mod demo;
pub mod open;
pub mod server;
pub mod tracker_csv;
