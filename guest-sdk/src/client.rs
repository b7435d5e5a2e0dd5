//! [`ClientApp`]: handlers by message type.

use std::fmt;

use crate::context::Context;
use crate::error::AppError;
use crate::message::{message_type, Message};

/// A ClientApp handler: takes the instruction and the node's context, returns the reply
/// (built with [`Message::reply`]).
pub type Handler = Box<dyn Fn(Message, &mut Context) -> Result<Message, AppError>>;

/// A ClientApp: one handler per message type (Flower's `@app.train()`, `@app.evaluate()`,
/// `@app.query()`).
///
/// A message goes to the handler registered for its full type (`"train.fine-tune"`) if
/// there is one, else to the handler for the part before the first `.` (`"train"`). A
/// message type without a handler is an [`AppError`], which the host turns into a Flower
/// error reply.
///
/// ```
/// use sepal_sdk::prelude::*;
///
/// fn train(msg: Message, _ctx: &mut Context) -> Result<Message, AppError> {
///     let metrics = MetricRecord::new().with("num-examples", 10i64.into());
///     Ok(msg.reply(RecordDict::new().with("metrics", metrics.into())))
/// }
///
/// let app = ClientApp::new().train(train);
/// let mut ctx = Context::new(1, 7);
/// let reply = app.handle(Message::new(RecordDict::new(), 7, "train"), &mut ctx).unwrap();
/// assert!(reply.content().metric_record("metrics").is_some());
/// assert!(app.handle(Message::new(RecordDict::new(), 7, "query"), &mut ctx).is_err());
/// ```
///
/// In the app's crate, `sepal_sdk::export_client_app!(...)` makes it the component's
/// export.
#[derive(Default)]
pub struct ClientApp {
    handlers: Vec<(String, Handler)>,
}

impl fmt::Debug for ClientApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientApp").field("message_types", &self.message_types().collect::<Vec<_>>()).finish()
    }
}

impl ClientApp {
    /// A ClientApp with no handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `message_type`: either a base type (`train`, `evaluate`,
    /// `query`) or a full type (`train.fine-tune`). Registering a type again replaces the
    /// earlier handler.
    pub fn on<F>(mut self, message_type: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Message, &mut Context) -> Result<Message, AppError> + 'static,
    {
        let message_type = message_type.into();
        self.handlers.retain(|(t, _)| *t != message_type);
        self.handlers.push((message_type, Box::new(handler)));
        self
    }

    /// Registers the `train` handler.
    pub fn train<F>(self, handler: F) -> Self
    where
        F: Fn(Message, &mut Context) -> Result<Message, AppError> + 'static,
    {
        self.on(message_type::TRAIN, handler)
    }

    /// Registers the `evaluate` handler.
    pub fn evaluate<F>(self, handler: F) -> Self
    where
        F: Fn(Message, &mut Context) -> Result<Message, AppError> + 'static,
    {
        self.on(message_type::EVALUATE, handler)
    }

    /// Registers the `query` handler.
    pub fn query<F>(self, handler: F) -> Self
    where
        F: Fn(Message, &mut Context) -> Result<Message, AppError> + 'static,
    {
        self.on(message_type::QUERY, handler)
    }

    /// The registered message types, in registration order.
    pub fn message_types(&self) -> impl Iterator<Item = &str> {
        self.handlers.iter().map(|(t, _)| t.as_str())
    }

    fn handler(&self, message_type: &str) -> Option<&Handler> {
        let find = |wanted: &str| self.handlers.iter().find(|(t, _)| t == wanted).map(|(_, h)| h);
        find(message_type).or_else(|| {
            let base = message_type.split('.').next().unwrap_or(message_type);
            find(base)
        })
    }

    /// Whether a message of `message_type` has a handler.
    pub fn handles(&self, message_type: &str) -> bool {
        self.handler(message_type).is_some()
    }

    /// Runs the handler for `message`'s type.
    ///
    /// Errors if no handler is registered for it, or if the handler returns a message that
    /// is not a reply to `message` (build replies with [`Message::reply`]).
    pub fn handle(&self, message: Message, context: &mut Context) -> Result<Message, AppError> {
        let message_type = message.message_type().to_owned();
        let handler = self.handler(&message_type).ok_or_else(|| {
            let known: Vec<&str> = self.message_types().collect();
            AppError::new(format!(
                "the ClientApp has no handler for message type {message_type:?} \
                 (it handles {known:?})"
            ))
        })?;
        let instruction_id = message.message_id().to_owned();
        let reply = handler(message, context)?;
        if reply.reply_to_message_id() != instruction_id {
            return Err(AppError::new(format!(
                "the {message_type:?} handler returned a message that does not reply to the \
                 instruction (reply_to_message_id {:?}, expected {instruction_id:?}); build \
                 it with `msg.reply(content)`",
                reply.reply_to_message_id()
            )));
        }
        Ok(reply)
    }

    /// What the component's `handle` export does: decodes a `flwr.proto.Message` (content
    /// inline) and a `flwr.proto.Context`, runs [`ClientApp::handle`], and encodes the
    /// reply and the updated context.
    pub fn handle_proto(&self, message: &[u8], context: &[u8]) -> Result<(Vec<u8>, Vec<u8>), AppError> {
        self.handle_decoded(Message::from_proto_bytes(message), context)
    }

    /// [`ClientApp::handle_proto`] on a buffer the instruction may keep (its arrays are
    /// slices of it): what the component export uses, as the host hands it the bytes.
    pub fn handle_proto_buffer(&self, message: Vec<u8>, context: &[u8]) -> Result<(Vec<u8>, Vec<u8>), AppError> {
        self.handle_decoded(Message::from_proto_buffer(message), context)
    }

    fn handle_decoded(
        &self,
        message: Result<Message, AppError>,
        context: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), AppError> {
        let message = message.map_err(|e| AppError::new(format!("invalid instruction message: {}", e.message)))?;
        let mut context =
            Context::from_proto_bytes(context).map_err(|e| AppError::new(format!("invalid context: {}", e.message)))?;
        let reply = self.handle(message, &mut context)?;
        Ok((reply.into_proto_bytes(), context.into_proto_bytes()))
    }
}
