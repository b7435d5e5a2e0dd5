//! The dispatch benchmark's ClientApp: answers each `query` with a one-entry metric record
//! (the instruction's sequence number), doing nothing else, so that what is measured is
//! the SuperNode's dispatch and not the app.

use sepal_sdk::prelude::*;

fn query(msg: Message, _ctx: &mut Context) -> Result<Message, AppError> {
    let seq = msg.content().config_record("config").and_then(|c| c.get_i64("seq")).unwrap_or(-1);
    Ok(msg.reply(RecordDict::new().with("metrics", MetricRecord::new().with("seq", seq.into()).into())))
}

sepal_sdk::export_client_app!(ClientApp::new().query(query));
