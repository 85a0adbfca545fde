//! The one log-on the commands share across invocations, kept in a session file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tapir_api::LogonRequest;
use tapir_client::{Client, ClientError};

use crate::cli::Global;
use crate::failure::Failure;

/// What the session file keeps.
#[derive(Serialize, Deserialize)]
struct Saved {
    url: String,
    application: String,
    token: String,
}

/// Where the log-on is kept.
pub(crate) fn session_file(g: &Global) -> PathBuf {
    if let Some(p) = &g.session_file {
        return p.clone();
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("tapir").join("session.json")
}

/// The log-on: the saved one if the service still knows it, else a new one (saved).
pub(crate) async fn client(g: &Global) -> Result<Client, Failure> {
    let path = session_file(g);
    let saved = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Saved>(&b).ok());
    if let Some(s) = saved
        && s.url == g.url
        && s.application == g.app
    {
        let c = Client::with_token(&g.url, &s.token)?;
        match c.session().await {
            Ok(_) => return Ok(c),
            Err(ClientError::Api { status: 401, .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let c = Client::logon(
        &g.url,
        &LogonRequest {
            application: g.app.clone(),
            secret: g.secret.clone(),
            profile: g.profile.clone(),
            shared: false,
        },
    )
    .await?;
    let saved = Saved {
        url: g.url.clone(),
        application: g.app.clone(),
        token: c.token().to_owned(),
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = serde_json::to_vec(&saved)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&path, b))
    {
        eprintln!(
            "tapir: warning: cannot keep the log-on in {}: {e}; the next command logs on again",
            path.display()
        );
    }
    Ok(c)
}
