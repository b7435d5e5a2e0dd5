//! The PostgreSQL [`LinkState`] (`--database postgresql://user[:password]@host:port/db`):
//! state that several SuperLink replicas share.
//!
//! This file opens the database and hands each call to the driver; `bridge` is how a
//! synchronous call waits for the async driver, `sql` runs statements, `schema` holds the
//! migrations, and one module per area (`runs`, `logs`, `fabs`, `nodes`, `messages`,
//! `objects`) the SQL of its calls. Values are stored as the SQLite backend stores them
//! (its `codec`), and timestamps come from the SuperLink's clock, not the server's
//! `now()`, so both backends behave alike.
//!
//! # Replicas
//!
//! Every call is one transaction (READ COMMITTED) that is correct when SuperLinks in other
//! processes call at the same time: rows that a call reads and then changes are locked
//! (`FOR NO KEY UPDATE`, or `FOR UPDATE` where they are deleted), work that one caller
//! takes (a pending run, an instruction) is chosen with `FOR UPDATE SKIP LOCKED` so that
//! two replicas never take the same, and random ids are inserted with `ON CONFLICT DO
//! NOTHING` and drawn again on a clash. Payload objects live in a `bytea` table, so any
//! replica can serve any message's payload.
//!
//! Replicas also hear of each other's changes (`LISTEN`/`NOTIFY`) and lease each run's
//! ServerApp to one of them (`replicas`).
//!
//! # Connections
//!
//! A deadpool pool of tokio-postgres connections, over plain TCP (no TLS yet: keep the
//! server on a trusted network or loopback). Durability is the server's (a commit returns
//! once PostgreSQL has it, per its `synchronous_commit` setting).

mod bridge;
mod fabs;
mod logs;
mod messages;
mod nodes;
mod objects;
mod replicas;
mod runs;
mod schema;
mod sql;

use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use sepal_proto::pb;
use tokio_postgres::NoTls;

pub use schema::SCHEMA_VERSION;

use self::bridge::Bridge;
use super::{
    Change, ChangeSink, InstructionRejected, LinkState, LiveMessage, NewRun, Pick, ReplyLookup, ReplyRejected,
    StateError, StateResult, StoredMessage,
};

/// Most connections one SuperLink keeps open to the server.
const POOL_SIZE: usize = 16;

/// How long connecting may take before a call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a call waits for a free connection before it fails.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `database` (the `--database` value) names a PostgreSQL server.
pub fn is_postgres_url(database: &str) -> bool {
    database.starts_with("postgresql://") || database.starts_with("postgres://")
}

/// State kept in a PostgreSQL database; survives restarts and is shared by replicas.
pub struct PgState {
    pool: Pool,
    // Declared after `pool`: the pool's connections live on the bridge's runtime.
    bridge: Bridge,
    /// The URL without its password, for messages.
    name: String,
    /// Where the listening connection connects (not pooled: it stays in `LISTEN`).
    config: tokio_postgres::Config,
    /// This process among the replicas (its announcements carry it).
    me: String,
}

impl std::fmt::Debug for PgState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgState").field("database", &self.name).finish_non_exhaustive()
    }
}

impl PgState {
    /// Connects to the database at `url` and brings its schema up to date.
    ///
    /// Fails with [`StateError::Backend`], naming the address (without its password) and
    /// the cause, when the URL is malformed, the server cannot be reached or refuses the
    /// login, or the database holds a newer schema than this Sepal knows.
    pub fn open(url: &str) -> StateResult<Self> {
        let name = redact(url);
        let fail = |cause: String| StateError::Backend(format!("cannot use PostgreSQL database {name}: {cause}"));
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| fail(format!("bad URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("sepal-superlink");
        }
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(WAIT_TIMEOUT))
            .build()
            .map_err(|e| fail(format!("cannot create the connection pool: {e}")))?;
        let bridge = Bridge::new().map_err(|e| fail(e.to_string()))?;
        bridge.run(schema::migrate(pool.clone())).map_err(|e| fail(cause(e)))?;
        tracing::debug!(database = %name, version = SCHEMA_VERSION, "PostgreSQL state schema ready");
        let me = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        Ok(Self { pool, bridge, name, config, me })
    }

    /// The database URL, without its password.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs one call's future on the driver's runtime and waits for it.
    fn call<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = StateResult<T>> + Send + 'static,
    ) -> StateResult<T> {
        self.bridge.run(f).map_err(|e| match e {
            StateError::Backend(m) => StateError::Backend(format!("state database {}: {m}", self.name)),
            other => other,
        })
    }
}

/// The text of an error, without the "state backend failed" prefix.
fn cause(e: StateError) -> String {
    match e {
        StateError::Backend(m) => m,
        other => other.to_string(),
    }
}

/// `url` with its password replaced by `***` (it ends up in logs and error messages).
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        // Unparseable: show no more than the scheme, since a password may be in the rest.
        Err(_) => format!("{}//…", url.split("//").next().unwrap_or_default()),
    }
}

/// A connection from the pool.
pub(super) async fn connect(pool: &Pool) -> StateResult<Object> {
    pool.get().await.map_err(|e| {
        let cause = match e {
            PoolError::Backend(e) => sql::describe(&e),
            PoolError::Timeout(_) => "timed out connecting or waiting for a free connection".into(),
            other => other.to_string(),
        };
        StateError::Backend(format!("PostgreSQL: cannot connect: {cause}"))
    })
}

// Each area function takes the pool and owned arguments: the future runs on the bridge's
// runtime, not on the caller's stack.
impl LinkState for PgState {
    fn create_run(&self, new: NewRun) -> StateResult<u64> {
        self.call(runs::create(self.pool.clone(), new))
    }

    fn run(&self, run_id: u64) -> StateResult<Option<pb::Run>> {
        self.call(runs::get(self.pool.clone(), run_id))
    }

    fn run_ids(&self) -> StateResult<Vec<u64>> {
        self.call(runs::ids(self.pool.clone()))
    }

    fn update_run_status(&self, run_id: u64, status: pb::RunStatus) -> StateResult<bool> {
        self.call(runs::update_status(self.pool.clone(), run_id, status))
    }

    fn claim_pending_run(&self) -> StateResult<Option<u64>> {
        self.call(runs::claim_pending(self.pool.clone()))
    }

    fn pending_run_ids(&self) -> StateResult<Vec<u64>> {
        self.call(runs::ids_with_status(self.pool.clone(), &[super::status::PENDING]))
    }

    fn active_run_ids(&self) -> StateResult<Vec<u64>> {
        self.call(runs::ids_with_status(self.pool.clone(), &[super::status::STARTING, super::status::RUNNING]))
    }

    fn ack_app_heartbeat(&self, run_id: u64, interval: f64) -> StateResult<bool> {
        self.call(runs::ack_heartbeat(self.pool.clone(), run_id, interval))
    }

    fn serverapp_context(&self, run_id: u64) -> StateResult<Option<pb::Context>> {
        self.call(runs::context(self.pool.clone(), run_id))
    }

    fn set_serverapp_context(&self, run_id: u64, context: pb::Context) -> StateResult<()> {
        self.call(runs::set_context(self.pool.clone(), run_id, context))
    }

    fn federation_options(&self, run_id: u64) -> StateResult<Option<pb::ConfigRecord>> {
        self.call(runs::federation_options(self.pool.clone(), run_id))
    }

    fn add_log(&self, run_id: u64, text: &str) -> StateResult<()> {
        self.call(logs::add(self.pool.clone(), run_id, text.to_string()))
    }

    fn logs_after(&self, run_id: u64, after: f64) -> StateResult<(String, f64)> {
        self.call(logs::after(self.pool.clone(), run_id, after))
    }

    fn store_fab(&self, hash: &str, content: Bytes) -> StateResult<()> {
        self.call(fabs::store(self.pool.clone(), hash.to_string(), content))
    }

    fn fab(&self, hash: &str) -> StateResult<Option<Bytes>> {
        self.call(fabs::get(self.pool.clone(), hash.to_string()))
    }

    fn create_node(&self, heartbeat_interval: f64) -> StateResult<u64> {
        self.call(nodes::create(self.pool.clone(), heartbeat_interval))
    }

    fn delete_node(&self, node_id: u64) -> StateResult<()> {
        self.call(nodes::delete(self.pool.clone(), node_id))
    }

    fn ack_node_heartbeat(&self, node_id: u64, interval: f64) -> StateResult<bool> {
        let sql = "UPDATE node SET online_until = $2 WHERE node_id = $1";
        self.call(nodes::set_liveness(self.pool.clone(), node_id, interval, sql))
    }

    fn keep_node_online(&self, node_id: u64, interval: f64) -> StateResult<bool> {
        let sql = "UPDATE node SET online_until = GREATEST(online_until, $2) WHERE node_id = $1";
        self.call(nodes::set_liveness(self.pool.clone(), node_id, interval, sql))
    }

    fn online_nodes(&self) -> StateResult<Vec<u64>> {
        self.call(nodes::online(self.pool.clone()))
    }

    fn bind_public_key(&self, node_id: u64, key: &[u8]) -> StateResult<()> {
        self.call(nodes::bind_key(self.pool.clone(), node_id, key.to_vec()))
    }

    fn node_for_key(&self, key: &[u8]) -> StateResult<Option<u64>> {
        self.call(nodes::for_key(self.pool.clone(), key.to_vec()))
    }

    fn store_instruction(&self, msg: StoredMessage) -> StateResult<Result<String, InstructionRejected>> {
        self.call(messages::store_instruction(self.pool.clone(), msg))
    }

    fn next_instruction(&self, node_id: u64, pick: &Pick) -> StateResult<Option<StoredMessage>> {
        self.call(messages::next_instruction(self.pool.clone(), node_id, pick.clone()))
    }

    fn store_reply(&self, msg: StoredMessage) -> StateResult<Result<String, ReplyRejected>> {
        self.call(messages::store_reply(self.pool.clone(), msg))
    }

    fn take_replies(&self, instruction_ids: &[String]) -> StateResult<Vec<ReplyLookup>> {
        self.call(messages::take_replies(self.pool.clone(), instruction_ids.to_vec()))
    }

    fn delete_messages(&self, instruction_ids: &[String]) -> StateResult<()> {
        self.call(messages::delete(self.pool.clone(), instruction_ids.to_vec()))
    }

    fn instruction_ids_of_run(&self, run_id: u64) -> StateResult<Vec<String>> {
        self.call(messages::instruction_ids_of_run(self.pool.clone(), run_id))
    }

    fn instruction_count(&self, run_id: u64) -> StateResult<usize> {
        self.call(messages::instruction_count(self.pool.clone(), run_id))
    }

    fn drop_run_messages(&self, run_id: u64) -> StateResult<usize> {
        self.call(messages::drop_run(self.pool.clone(), run_id))
    }

    fn live_messages(&self) -> StateResult<Vec<LiveMessage>> {
        self.call(messages::live(self.pool.clone()))
    }

    fn keeps_objects(&self) -> bool {
        true
    }

    fn keep_objects(&self, objects: &[(String, Bytes)]) -> StateResult<()> {
        self.call(objects::keep(self.pool.clone(), objects.to_vec()))
    }

    fn kept_objects(&self, ids: &[String]) -> StateResult<Vec<(String, Bytes)>> {
        self.call(objects::kept(self.pool.clone(), ids.to_vec()))
    }

    fn forget_objects(&self, ids: &[String]) -> StateResult<()> {
        self.call(objects::forget(self.pool.clone(), ids.to_vec()))
    }

    fn kept_object_sizes(&self) -> StateResult<Vec<(String, u64)>> {
        self.call(objects::sizes(self.pool.clone()))
    }

    fn shared(&self) -> bool {
        true
    }

    fn announce(&self, change: Change) {
        self.bridge.spawn(replicas::announce(self.pool.clone(), replicas::encode(&self.me, change)));
    }

    fn listen(&self, sink: ChangeSink) -> StateResult<()> {
        self.bridge.spawn(replicas::listen(self.config.clone(), self.me.clone(), sink));
        Ok(())
    }

    fn lease_run(&self, run_id: u64, owner: &str, ttl: f64) -> StateResult<bool> {
        self.call(replicas::lease(self.pool.clone(), run_id, owner.to_string(), ttl))
    }
}
