//! Native tests of the harmless paths (the attacks themselves are for the sandbox).

use sepal_sdk::prelude::*;
use sepal_sdk::testing::LocalGrid;

use crate::{client_app, client_attack, raw_client_output, raw_server_output, server_app, ATTACK};

fn no_raw_push(_: &[Vec<u8>]) -> Result<Vec<String>, AppError> {
    Err(AppError::new("no host grid natively"))
}

fn instruction(attack: &str) -> Message {
    let config = ConfigRecord::new().with(ATTACK, attack.into());
    let mut msg = Message::new(RecordDict::new().with("config", config.into()), 1000, "query");
    msg.metadata_mut().message_id = "instruction".into();
    msg
}

fn result_of(reply: &Message) -> &str {
    reply.content().config_record("result").and_then(|c| c.get_str("result")).expect("a result")
}

#[test]
fn the_attack_comes_from_the_instruction_else_the_node_config() {
    let ctx = Context::new(1, 1000).with_node_config(Config::new().with(ATTACK, "env"));
    assert_eq!(client_attack(&instruction("loop"), &ctx), "loop");
    assert_eq!(client_attack(&Message::new(RecordDict::new(), 1000, "query"), &ctx), "env");
    assert_eq!(client_attack(&Message::new(RecordDict::new(), 1000, "query"), &Context::new(1, 1000)), "ok");
}

#[test]
fn harmless_attacks_reply_and_unknown_ones_are_app_errors() {
    let app = client_app();
    let mut ctx = Context::new(1, 1000);
    assert_eq!(result_of(&app.handle(instruction("ok"), &mut ctx).unwrap()), "ok");
    assert_eq!(result_of(&app.handle(instruction("flood:3"), &mut ctx).unwrap()), "flooded 3 lines");
    assert_eq!(result_of(&app.handle(instruction("lines:3"), &mut ctx).unwrap()), "printed 3 lines");
    assert_eq!(result_of(&app.handle(instruction("inject"), &mut ctx).unwrap()), "injected");
    let sockets = app.handle(instruction("sockets:5"), &mut ctx).unwrap();
    assert_eq!(result_of(&sockets), "opened 0 sockets; then no WASI sockets natively");
    let big = app.handle(instruction("big-reply:1"), &mut ctx).unwrap();
    assert_eq!(result_of(&big), "sent 1 MiB");
    let array = big.content().array_record("big").and_then(|r| r.get("big")).expect("the big array");
    assert_eq!(array.dims(), vec![1 << 18]);
    let e = app.handle(instruction("nonsense"), &mut ctx).unwrap_err();
    assert!(e.message.contains("unknown attack \"nonsense\""), "{e}");
}

#[test]
fn garbage_and_empty_outputs_bypass_the_sdk() {
    let ctx = Context::new(1, 1000).into_proto_bytes();
    let raw = |attack: &str| raw_client_output(&instruction(attack).into_proto_bytes(), &ctx);
    assert_eq!(raw("garbage"), Some((vec![0xff; 64], vec![0xff; 64])));
    assert_eq!(raw("empty"), Some((Vec::new(), Vec::new())));
    assert_eq!(raw("ok"), None);

    let server_ctx =
        |attack: &str| Context::new(1, 1).with_run_config(Config::new().with(ATTACK, attack)).into_proto_bytes();
    assert_eq!(raw_server_output(&server_ctx("garbage")), Some(vec![0xff; 64]));
    assert_eq!(raw_server_output(&server_ctx("fanout")), None);
}

#[test]
fn fanout_sends_one_message_per_attack() {
    let mut grid = LocalGrid::new().with_run_config(
        Config::new().with(ATTACK, "fanout").with("client-attacks", "ok, flood:2,ok").with("reply-timeout", 5.0),
    );
    grid.add_node(client_app(), Config::new());
    grid.run(&server_app(no_raw_push)).unwrap();
    assert_eq!(grid.handled(), 3);
}

#[test]
fn garbage_push_reports_what_the_grid_said() {
    let mut grid = LocalGrid::new().with_run_config(Config::new().with(ATTACK, "garbage-push"));
    grid.add_node(client_app(), Config::new());
    grid.run(&server_app(no_raw_push)).unwrap();
    assert_eq!(grid.handled(), 0);
}
