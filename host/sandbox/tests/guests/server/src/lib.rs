//! A ServerApp for the sandbox tests. The context bytes are a command (UTF-8):
//!
//! - `round`: asks for node ids, sends one instruction per node with send-and-receive
//!   (timeout 5 s), pushes and pulls once more, and returns a summary
//! - `wait`: send-and-receive with an infinite timeout (the host must still end the run)
//! - `nan`: send-and-receive with a NaN timeout
//! - `loop`: spins forever
//! - `push-big:N:MIB`: one push of N messages of MIB MiB each; returns `pushed K`
//! - `push-empty:N`: one push of N empty messages (each costs the host's copy 24 bytes of
//!   the guest's 20); returns `pushed K`
//! - anything else: returns the context unchanged

wit_bindgen::generate!({
    path: "../../../../../guest-sdk/wit",
    world: "server",
});

use exports::sepal::app::server_app::{AppError, Guest};
use sepal::app::grid;
use sepal::app::log::{log, Level};
use std::hint::black_box;

struct Server;

impl Guest for Server {
    fn run(context: Vec<u8>) -> Result<Vec<u8>, AppError> {
        match context.as_slice() {
            b"round" => {
                let nodes = grid::node_ids()?;
                log(Level::Info, &format!("{} nodes online", nodes.len()));
                let messages: Vec<Vec<u8>> = nodes.iter().map(|n| format!("train {n}").into_bytes()).collect();
                let replies = grid::send_and_receive(&messages, 5.0)?;
                let ids = grid::push_messages(&[b"evaluate".to_vec()])?;
                let pulled = grid::pull_messages(&ids)?;
                println!("round done");
                let mut summary = format!(
                    "nodes={} replies={} ids={} pulled={}",
                    nodes.len(),
                    replies.len(),
                    ids.join(","),
                    pulled.len()
                );
                for reply in &replies {
                    summary.push('|');
                    summary.push_str(&String::from_utf8_lossy(reply));
                }
                Ok(summary.into_bytes())
            }
            b"wait" => {
                let replies = grid::send_and_receive(&[b"never answered".to_vec()], f64::INFINITY)?;
                Ok(format!("replies={}", replies.len()).into_bytes())
            }
            b"nan" => {
                let replies = grid::send_and_receive(&[b"x".to_vec()], f64::NAN)?;
                Ok(format!("replies={}", replies.len()).into_bytes())
            }
            b"loop" => {
                let mut x = 0u64;
                loop {
                    x = x.wrapping_add(black_box(1));
                    black_box(x);
                }
            }
            command => {
                let command = String::from_utf8_lossy(command);
                let number = |i: usize| command.split(':').nth(i).and_then(|w| w.parse::<usize>().ok()).unwrap_or(0);
                let messages: Vec<Vec<u8>> = if command.starts_with("push-big:") {
                    (0..number(1)).map(|i| vec![i as u8; number(2) << 20]).collect()
                } else if command.starts_with("push-empty:") {
                    vec![Vec::new(); number(1)]
                } else {
                    return Ok(context);
                };
                let ids = grid::push_messages(&messages)?;
                Ok(format!("pushed {}", ids.len()).into_bytes())
            }
        }
    }
}

export!(Server);
