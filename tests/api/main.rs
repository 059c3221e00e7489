//! Integration tests: the ledger on real databases (both engines) and the API through its
//! real HTTP endpoint. One binary, one module per concern (zero2prod).

mod append_path;
mod authorization;
mod event_log;
mod exports;
mod flow;
mod hostile;
mod http_spec;
mod personal_data;
mod schema;
mod statements;
