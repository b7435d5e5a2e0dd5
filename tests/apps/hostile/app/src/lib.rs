//! A hostile Flower app for Sepal's end-to-end sandbox tests (`tests/tests/hostile_wasm.rs`).
//!
//! Each attack on the sandbox is picked by config, so one FAB carries them all.
//!
//! # ClientApp
//!
//! A `query`, `train` or `evaluate` instruction names its attack in its `"config"` record's
//! `attack` (else the node config's `attack`; default `ok`). Attacks that the sandbox
//! should deny answer normally, with `{"result": ConfigRecord{"result": <what happened>}}`,
//! so the ServerApp sees what the app saw. Attacks that should end the call never answer.
//!
//! | attack | what it does | what the host should do |
//! |---|---|---|
//! | `ok` | replies `result = "ok"` | nothing |
//! | `loop` | spins forever | stop it at the deadline |
//! | `sleep` | sleeps for an hour (blocked in the host, not in Wasm) | stop it at the deadline |
//! | `bomb` | allocates until something stops it | stop it at the memory limit |
//! | `recurse` | unbounded recursion on the Wasm call stack | stop it at the stack limit |
//! | `recurse-shadow` | the same with a buffer in each frame (on Rust's shadow stack) | say the stack overflowed |
//! | `passwd` | reads `/etc/passwd`, replies the error text (`denied: ...`) | deny the read |
//! | `env` | replies how many environment variables and arguments it sees | show none |
//! | `socket` | connects to the config's `target` (`HOST:PORT`), replies the error text | deny it |
//! | `flood` / `flood:N` | prints forever / N lines on stdout and stderr, then replies | truncate the output |
//! | `panic` | `panic!("hostile panic")` | report the trap and the panic message |
//! | `garbage` | returns bytes that are no protobuf (component crate, past the SDK) | reject the reply |
//! | `empty` | returns an empty reply and context (component crate, past the SDK) | reject the reply |
//! | `sockets:N[:S]`, `handles:N`, `lines:N`, `big-reply:MIB`, `inject` | attacks on the host's shared resources: see [`resources`] | see [`resources`] |
//!
//! # ServerApp
//!
//! The run config's `attack` picks what the ServerApp does:
//!
//! - `fanout` (the default): a normal ServerApp. It waits for a node, then sends the first
//!   node one `query` instruction per entry of `client-attacks` (comma-separated), one at a
//!   time, and logs each outcome on one line: `CLIENT <attack> -> reply result="..."`,
//!   `CLIENT <attack> -> error code=<n> reason="..."` or `CLIENT <attack> -> no reply ...`.
//!   It ends with `FANOUT DONE <n> messages`.
//! - `loop`, `sleep`, `bomb`, `recurse`, `recurse-shadow`, `flood` / `flood:N`, `panic`
//!   (`"hostile server panic"`): as for the ClientApp.
//! - `passwd`, `env`, `socket`: log what the app sees (`SERVER <attack>: ...`) and finish.
//! - `sockets:N[:S]`, `handles:N`, `lines:N`, `inject`: as for the ClientApp ([`resources`]),
//!   logging the outcome as `SERVER <attack>: ...`; `big-reply:MIB` ends the run with a
//!   MIB MiB array in its state.
//! - `garbage`: returns a context that is no protobuf (component crate, past the SDK).
//! - `garbage-push`: pushes bytes that are no protobuf, and a message to node 0, through
//!   the grid, and logs what the grid answered (`SERVER garbage-push: ...`).
//! - Attacks on what runs share (the [`quota`] module), each logging one
//!   `SERVER <attack>: ...` line and finishing: `push-nowhere:N:MIB` (N pushes of MIB MiB
//!   to a node that does not exist), `push-hoard:N:MIB` (one push of N messages of MIB MiB
//!   to the first node, then a small one), `push-flood:N:BATCH` (N tiny `ok` messages to
//!   the first node, BATCH per push, then finish at once), `spin-nodes:K` (K `loop`
//!   messages to every node at once, waiting `reply-timeout` for their error replies).
//!
//! Everything here also builds natively; `cargo test` checks the harmless paths.

use std::hint::black_box;
use std::io::Write as _;
use std::time::Duration;

use sepal_sdk::prelude::*;
use sepal_sdk::{info, warn};

/// The config key naming the attack.
pub const ATTACK: &str = "attack";

/// Sends raw `flwr.proto.Message` bytes through the host's grid (the component crate
/// passes the `sepal:app/grid` import; natively there is none).
pub type RawPush = fn(&[Vec<u8>]) -> Result<Vec<String>, AppError>;

/// The ClientApp: every message type goes to the same attack dispatcher.
pub fn client_app() -> ClientApp {
    ClientApp::new().query(handle).train(handle).evaluate(handle)
}

/// The ServerApp; `raw_push` is used by the `garbage-push` attack.
pub fn server_app(raw_push: RawPush) -> ServerApp {
    ServerApp::new(move |grid, ctx| server_main(grid, ctx, raw_push))
}

/// The attack an instruction asks for: its `"config"` record's `attack`, else the node
/// config's, else `ok`.
pub fn client_attack(msg: &Message, ctx: &Context) -> String {
    msg.content()
        .config_record("config")
        .and_then(|c| c.get_str(ATTACK))
        .or_else(|| ctx.node_config.get_str(ATTACK))
        .unwrap_or("ok")
        .to_string()
}

/// What the ClientApp component returns instead of running the SDK, for the attacks the
/// SDK cannot express (`garbage`, `empty`): the raw (reply, context) bytes. `None` for
/// every other attack.
pub fn raw_client_output(message: &[u8], context: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let msg = Message::from_proto_bytes(message).ok()?;
    let ctx = Context::from_proto_bytes(context).ok()?;
    match client_attack(&msg, &ctx).as_str() {
        "garbage" => Some((vec![0xff; 64], vec![0xff; 64])),
        "empty" => Some((Vec::new(), Vec::new())),
        _ => None,
    }
}

/// What the ServerApp component returns instead of running the SDK: a context that is no
/// protobuf, for the `garbage` attack. `None` for every other attack.
pub fn raw_server_output(context: &[u8]) -> Option<Vec<u8>> {
    let ctx = Context::from_proto_bytes(context).ok()?;
    (ctx.run_config.get_str(ATTACK) == Some("garbage")).then(|| vec![0xff; 64])
}

fn handle(msg: Message, ctx: &mut Context) -> Result<Message, AppError> {
    let attack = client_attack(&msg, ctx);
    let config = msg.content().config_record("config");
    let target = config.and_then(|c| c.get_str("target")).or_else(|| ctx.run_config.get_str("target")).unwrap_or("");
    let (verb, arg) = attack.split_once(':').unwrap_or((attack.as_str(), ""));
    let result = match verb {
        "ok" => "ok".to_string(),
        "loop" => spin(),
        "sleep" => nap(),
        "bomb" => bomb(),
        "recurse" => recurse(black_box(u64::MAX)).to_string(),
        "recurse-shadow" => recurse_shadow(black_box(u64::MAX)).to_string(),
        "passwd" => read_passwd(),
        "env" => env_report(),
        "socket" => connect(target),
        "flood" => flood(arg.parse().ok()),
        "panic" => panic!("hostile panic"),
        "sockets" => resources::hold_sockets(num(arg, 0), num(arg, 1)),
        "handles" => resources::hold_handles(num(arg, 0)),
        "lines" => resources::tiny_lines(num(arg, 0)),
        "inject" => resources::inject(),
        "big-reply" => {
            let big = ArrayRecord::new().with("big", resources::big_array(num(arg, 0)));
            let record = ConfigRecord::new().with("result", format!("sent {} MiB", num(arg, 0)).into());
            return Ok(msg.reply(RecordDict::new().with("result", record.into()).with("big", big.into())));
        }
        other => return Err(AppError::new(format!("unknown attack {other:?}"))),
    };
    let record = ConfigRecord::new().with("result", result.into());
    Ok(msg.reply(RecordDict::new().with("result", record.into())))
}

fn server_main(grid: &mut dyn Grid, ctx: &mut Context, raw_push: RawPush) -> Result<(), AppError> {
    let attack = ctx.run_config.get_str_or(ATTACK, "fanout").to_string();
    info!("hostile ServerApp: attack {attack}");
    let (verb, arg) = attack.split_once(':').unwrap_or((attack.as_str(), ""));
    match verb {
        "fanout" => return fanout(grid, ctx),
        "loop" => spin(),
        "sleep" => info!("SERVER sleep: {}", nap()),
        "bomb" => bomb(),
        "recurse" => info!("SERVER recurse: {}", recurse(black_box(u64::MAX))),
        "recurse-shadow" => info!("SERVER recurse-shadow: {}", recurse_shadow(black_box(u64::MAX))),
        "panic" => panic!("hostile server panic"),
        "passwd" => info!("SERVER passwd: {}", read_passwd()),
        "env" => info!("SERVER env: {}", env_report()),
        "socket" => info!("SERVER socket: {}", connect(ctx.run_config.get_str_or("target", ""))),
        "flood" => info!("SERVER flood: {}", flood(arg.parse().ok())),
        "push-nowhere" => info!("SERVER push-nowhere: {}", quota::push_nowhere(grid, num(arg, 0), num(arg, 1))),
        "push-hoard" => {
            let node = first_node(grid, ctx)?;
            info!("SERVER push-hoard: {}", quota::push_hoard(grid, node, num(arg, 0), num(arg, 1)));
        }
        "push-flood" => {
            let node = first_node(grid, ctx)?;
            info!("SERVER push-flood: {}", quota::push_flood(grid, node, num(arg, 0), num(arg, 1)));
        }
        "spin-nodes" => {
            let nodes = grid.wait_for_nodes(1, Some(reply_timeout(ctx)))?;
            info!("SERVER spin-nodes: {}", quota::spin_nodes(grid, &nodes, num(arg, 0), reply_timeout(ctx))?);
        }
        "sockets" => info!("SERVER {attack}: {}", resources::hold_sockets(num(arg, 0), num(arg, 1))),
        "handles" => info!("SERVER {attack}: {}", resources::hold_handles(num(arg, 0))),
        "lines" => info!("SERVER {attack}: {}", resources::tiny_lines(num(arg, 0))),
        "inject" => info!("SERVER {attack}: {}", resources::inject()),
        "big-reply" => {
            let big = ArrayRecord::new().with("big", resources::big_array(num(arg, 0)));
            ctx.state.insert("big", big.into());
            info!("SERVER {attack}: state of {} MiB", num(arg, 0));
        }
        "garbage-push" => {
            let raw = raw_push(&[vec![0xff; 32]]);
            info!("SERVER garbage-push: raw bytes -> {raw:?}");
            let to_nobody = Message::new(RecordDict::new(), 0, "query");
            info!("SERVER garbage-push: node 0 -> {:?}", grid.push_messages(vec![to_nobody]));
        }
        other => return Err(AppError::new(format!("unknown attack {other:?}"))),
    }
    Ok(())
}

/// The `i`-th `:`-separated number of an attack's argument (0 if absent).
fn num(arg: &str, i: usize) -> usize {
    arg.split(':').nth(i).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The run config's `reply-timeout`.
fn reply_timeout(ctx: &Context) -> Duration {
    Duration::try_from_secs_f64(ctx.run_config.get_f64_or("reply-timeout", 60.0).max(0.0)).unwrap_or(Duration::MAX)
}

/// The lowest node id, once a node is connected.
fn first_node(grid: &mut dyn Grid, ctx: &Context) -> Result<u64, AppError> {
    let nodes = grid.wait_for_nodes(1, Some(reply_timeout(ctx)))?;
    Ok(nodes.iter().copied().min().ok_or("no node")?)
}

/// Sends the first node one instruction per `client-attacks` entry and logs each outcome.
fn fanout(grid: &mut dyn Grid, ctx: &mut Context) -> Result<(), AppError> {
    let rc = &ctx.run_config;
    let attacks: Vec<String> = rc
        .get_str_or("client-attacks", "ok")
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    let target = rc.get_str_or("target", "").to_string();
    let timeout = Duration::try_from_secs_f64(rc.get_f64_or("reply-timeout", 60.0).max(0.0)).unwrap_or(Duration::MAX);
    let nodes = grid.wait_for_nodes(1, Some(timeout))?;
    let node = nodes.iter().copied().min().ok_or("no node")?;
    info!("fanout: {} attacks on node {node}", attacks.len());
    for attack in &attacks {
        let config = ConfigRecord::new().with(ATTACK, attack.as_str().into()).with("target", target.as_str().into());
        let instruction = Message::new(RecordDict::new().with("config", config.into()), node, "query");
        let replies = grid.send_and_receive(vec![instruction], Some(timeout))?;
        match replies.first() {
            None => warn!("CLIENT {attack} -> no reply within {timeout:?}"),
            Some(reply) => match reply.error() {
                Some(e) => info!("CLIENT {attack} -> error code={} reason={:?}", e.code, e.reason),
                None => {
                    let result =
                        reply.content().config_record("result").and_then(|c| c.get_str("result")).unwrap_or("<none>");
                    info!("CLIENT {attack} -> reply result={result:?}");
                }
            },
        }
    }
    info!("FANOUT DONE {} messages", attacks.len());
    Ok(())
}

/// Spins forever.
fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

/// Sleeps for an hour: blocked in the host (a WASI call), not spinning in Wasm.
fn nap() -> String {
    std::thread::sleep(Duration::from_secs(3600));
    "woke up after an hour".to_string()
}

/// Allocates (and touches) 4 MiB at a time, forever.
fn bomb() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 4 << 20];
        if let Some(last) = chunk.last_mut() {
            *last = 1;
        }
        hoard.push(black_box(chunk));
    }
}

/// Recursion `depth` deep whose frames live on the Wasm call stack only (no local has its
/// address taken), so it exhausts the engine's stack.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    recurse(depth - 1).wrapping_mul(3).wrapping_add(depth)
}

/// Recursion `depth` deep with a 64-byte local whose address escapes, so every frame also
/// takes room on the shadow stack Rust keeps in linear memory (as real recursive code with
/// buffers on the stack does); that stack runs out before the engine's.
#[inline(never)]
fn recurse_shadow(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    let mut frame = [0u8; 64];
    frame[0] = depth as u8;
    black_box(&mut frame);
    recurse_shadow(depth - 1).wrapping_add(u64::from(frame[0]))
}

fn read_passwd() -> String {
    match std::fs::read_to_string("/etc/passwd") {
        Ok(text) => format!("READ {} bytes: {}", text.len(), text.lines().next().unwrap_or("")),
        Err(e) => format!("denied: {:?}: {e}", e.kind()),
    }
}

fn env_report() -> String {
    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    format!(
        "vars={} home={} path={} args={} names={vars:?}",
        vars.len(),
        std::env::var_os("HOME").is_some(),
        std::env::var_os("PATH").is_some(),
        std::env::args().count()
    )
}

fn connect(target: &str) -> String {
    match std::net::TcpStream::connect(target) {
        Ok(mut stream) => {
            let _ = stream.write_all(b"hello from a hostile app");
            format!("CONNECTED to {target}")
        }
        Err(e) => format!("denied: {:?}: {e}", e.kind()),
    }
}

/// Prints `lines` lines on stdout and on stderr (`None`: forever).
fn flood(lines: Option<u64>) -> String {
    let mut i = 0u64;
    while lines.is_none_or(|n| i < n) {
        println!("flood line {i} on stdout ................................................");
        eprintln!("flood line {i} on stderr ................................................");
        i += 1;
    }
    format!("flooded {i} lines")
}

pub mod quota;
pub mod resources;

#[cfg(test)]
mod tests;
