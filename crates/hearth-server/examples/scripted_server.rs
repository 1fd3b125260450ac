//! Serves the API in front of `ScriptedModels` (the stand-in for the engine that the wire-format
//! tests use), so client-compatibility scripts can be tried without model weights:
//!
//! ```text
//! cargo run -p hearth-server --example scripted_server -- 127.0.0.1:11435
//! HEARTH_URL=http://127.0.0.1:11435 HEARTH_MODEL=smollm2:135m pytest crates/hearth-server/tests/clients
//! ```

use std::sync::Arc;

use hearth_server::{AppState, ServerConfig, router};

#[path = "../tests/it/scripted.rs"]
mod scripted;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:11435".to_owned());
    let state = AppState::new(
        Arc::new(scripted::ScriptedModels::default()),
        ServerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("scripted Hearth API on http://{}", listener.local_addr()?);
    axum::serve(listener, router(state)).await?;
    Ok(())
}
