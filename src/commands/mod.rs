//! What each `openptl` subcommand does, one file per command family; the
//! flags are in `cli.rs`, the service itself in `server.rs`, the benchmarks
//! in `bench/`.

pub mod backup;
pub mod copy;
pub mod export;
pub mod generate;
pub mod import;
pub mod openapi;
pub mod serve;
pub mod token;
pub mod verify;
