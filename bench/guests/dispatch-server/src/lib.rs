//! The dispatch benchmark's ServerApp: sends `num-messages` tiny `query` instructions to
//! the one node, one at a time (send, wait for the reply, next), then ends.

use std::time::Duration;

use sepal_sdk::info;
use sepal_sdk::prelude::*;

fn server_main(grid: &mut dyn Grid, ctx: &mut Context) -> Result<(), AppError> {
    let messages = ctx.run_config.get_u64_or("num-messages", 2);
    let timeout = Duration::try_from_secs_f64(ctx.run_config.get_f64_or("reply-timeout", 120.0))
        .map_err(|e| AppError::new(format!("reply-timeout: {e}")))?;
    let node = grid.wait_for_nodes(1, Some(timeout))?[0];
    for seq in 0..messages {
        let config = ConfigRecord::new().with("seq", (seq as i64).into());
        let instruction = Message::new(RecordDict::new().with("config", config.into()), node, "query");
        let replies = grid.send_and_receive(vec![instruction], Some(timeout))?;
        match replies.first() {
            None => return Err(AppError::new(format!("no reply to message {seq} within {timeout:?}"))),
            Some(r) if r.has_error() => {
                return Err(AppError::new(format!("message {seq}: error reply {:?}", r.error())))
            }
            Some(_) => {}
        }
    }
    info!("DISPATCH done: {messages} messages to node {node}");
    Ok(())
}

sepal_sdk::export_server_app!(ServerApp::new(server_main));
