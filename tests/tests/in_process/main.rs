//! In-process tests: Sepal's SuperLink, SuperNodes and app processes started in this test
//! binary by the kit ([`sepal_tests::kit`]), driven over real gRPC on loopback as Flower's
//! components would drive them. One binary for all of them (they share the kit and the
//! link step).

mod bad_input;
mod cli;
mod fleet_auth;
mod held_pulls;
mod inline_objects;
mod launcher;
mod log_parity;
mod process_mode;
mod python_clientapps;
mod reply_uploads;
mod supernode;
mod tls;
