//! `viewport-server serve`.

use super::ServeArgs;
use crate::store::Store;
use crate::{AppState, Config};
use anyhow::{bail, Context};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
    let public_url = args.public_url.clone().unwrap_or_else(|| format!("{scheme}://{}", args.listen)).trim_end_matches('/').to_string();
    if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
        bail!("--public-url must start with http:// or https:// (got {public_url:?})");
    }
    if args.public_url.is_none() && args.listen.ip().is_unspecified() {
        tracing::warn!(
            "listening on {} without --public-url: pass --public-url with the address users reach, or links and form origin checks will not match",
            args.listen
        );
    }
    let db_name = crate::store::DbSpec::parse(&args.db).map(|d| d.display()).unwrap_or_else(|_| args.db.clone());
    let db = args.db.clone();
    // The PostgreSQL client blocks: connect (and migrate) off the async executor.
    let store = tokio::task::spawn_blocking(move || Store::connect(&db)).await?.with_context(|| format!("opening the database {db_name}"))?;
    let mut config = Config::new(public_url.clone());
    config.retention_days = args.retention_days;
    config.relay_token_ttl_secs = args.relay_token_ttl;
    config.pairing_per_minute = args.pairing_rate_per_minute;
    config.trusted_proxies = args.trusted_proxies.clone();
    config.write_budget = crate::quota::WriteBudget { machine_per_min: args.write_budget_machine, org_per_min: args.write_budget_org };
    config.stored_quota = crate::store::StoredQuota { machine_bytes: args.stored_quota_machine, org_bytes: args.stored_quota_org };
    let state = tokio::task::spawn_blocking(move || AppState::new(store, config)).await??;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is another server running there? pick another with --listen)", args.listen))?;
    let addr = listener.local_addr()?;
    // TLS: the certificate is checked before anything is served.
    let tls = |l: tokio::net::TcpListener| match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            crate::tls::TlsListener::new(l, cert.clone(), key.clone()).map(Listening::Tls).map_err(|e| e.context("--tls-cert/--tls-key"))
        }
        _ => Ok(Listening::Plain(l)),
    };
    let listener = tls(listener)?;
    tracing::info!("listening on {scheme}://{addr} (db: {db_name})");
    if public_url != format!("{scheme}://{addr}") {
        tracing::info!("public URL: {public_url}");
    }
    if let Some(url) = state.setup_url() {
        tracing::info!("no user yet: open {url} to create the first account and workspace (link valid until restart)");
    }
    let _background = state.spawn_background();
    // One shutdown signal for both listeners: close the relay connections with 1001 first.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let s = state.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        s.shutdown_relay(std::time::Duration::from_secs(2)).await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let relay = match args.relay_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for --relay-listen (pick another address)"))?;
            tracing::info!("relay listening on {scheme}://{} (/ws only)", l.local_addr()?);
            let l = tls(l)?;
            let app = crate::relay_app(state.clone());
            let rx = stop_rx.clone();
            Some(tokio::spawn(async move { l.serve(app, stopped(rx)).await }))
        }
        None => None,
    };
    listener.serve(crate::app(state), stopped(stop_rx)).await?;
    if let Some(r) = relay {
        r.await??;
    }
    Ok(())
}

/// A listening socket, plain or TLS.
enum Listening {
    Plain(tokio::net::TcpListener),
    Tls(crate::tls::TlsListener),
}

impl Listening {
    async fn serve(self, app: axum::Router, stop: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        match self {
            Listening::Plain(l) => axum::serve(l, app).with_graceful_shutdown(stop).await,
            // tap_io keeps ConnectInfo<SocketAddr> for a listener of our own.
            Listening::Tls(l) => axum::serve(l.tap_io(|_| ()), app).with_graceful_shutdown(stop).await,
        }
    }
}

/// Ctrl-C, or SIGTERM on Unix (service managers).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}
