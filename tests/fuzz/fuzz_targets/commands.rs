//! tapird's command socket fed any text message, in-process (`tapir_server::answer_command`, what
//! the socket answers): every reply is a JSON object with a status that is no server fault (as in
//! the `api` target) and, when the message
//! had a readable `id` (a number or a string), that very id; a refused request changes nothing the
//! engine holds.
//!
//! A message the socket accepts runs on the API's router like any request; when one changed what
//! the engine holds, the service is started afresh for the next input, so that inputs do not add up.
#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;

// The API target's fixture: its configuration and what counts as a server fault.
#[allow(dead_code)]
#[path = "shared/api_fixture.rs"]
mod fixture;

use fixture::{CONFIG, is_server_fault};

/// One service with one log-on (its token), on its own runtime.
struct Service {
    runtime: tokio::runtime::Runtime,
    engine: tapir::Engine,
    app: axum::Router,
    token: String,
}

impl Service {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (engine, app, token) = runtime.block_on(async {
            let config = tapir_config::Config::parse(CONFIG).expect("config");
            let running = config.start().await.expect("engine");
            let store = tapir_server::open_store(&config).expect("store");
            let state = tapir_server::AppState::new(running.engine.clone(), &config, store, None);
            let app = tapir_server::router(state, config.server.body_limit);
            let logon = r#"{"id":0,"method":"POST","path":"/v1/sessions","body":{"application":"alice","secret":"a-secret"}}"#;
            let reply = tapir_server::answer_command(&app, "", logon).await;
            let reply: serde_json::Value = serde_json::from_str(&reply).expect("json");
            let token = reply["body"]["token"].as_str().expect("a token").to_owned();
            (running.engine, app, token)
        });
        Self {
            runtime,
            engine,
            app,
            token,
        }
    }

    fn holding(&self) -> (usize, usize, usize, usize, usize, String) {
        let s = self.engine.stats();
        (
            s.sessions,
            s.calls,
            s.call_handles,
            s.line_handles,
            s.pending_requests,
            format!("{:?}", self.engine.routes()),
        )
    }
}

static SERVICE: Mutex<Option<Service>> = Mutex::new(None);

/// A JSON object's fields, their values unread.
type Fields = std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>;

/// The keys of a JSON object, in order, repeats kept.
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Keys, M::Error> {
                let mut keys = Vec::new();
                while let Some((k, serde::de::IgnoredAny)) = map.next_entry::<String, _>()? {
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(Visit)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut slot = SERVICE.lock().unwrap_or_else(|e| e.into_inner());
    let service = slot.get_or_insert_with(Service::start);
    let before = service.holding();
    let reply = service.runtime.block_on(tapir_server::answer_command(
        &service.app,
        &service.token,
        text,
    ));
    // Read with the id as raw text: the socket echoes it verbatim, and JSON allows numbers no
    // float holds (`1E999`).
    let fields: Fields = serde_json::from_str(&reply)
        .unwrap_or_else(|e| panic!("a reply that is not a JSON object ({e}): {reply}"));
    let status = fields
        .get("status")
        .and_then(|s| s.get().parse::<u16>().ok())
        .unwrap_or_else(|| panic!("a reply without a status: {reply}"));
    let body: serde_json::Value = fields
        .get("body")
        .map(|b| serde_json::from_str(b.get()).expect("a JSON body"))
        .unwrap_or_default();
    assert!(!is_server_fault(status, &body), "{text:?}: {reply}");
    // The id comes back as it was sent, when there was one to read: one `id`, a number or a
    // string (a message naming two is ambiguous, and refused without one).
    let one_id = serde_json::from_str::<Keys>(text)
        .is_ok_and(|k| k.0.iter().filter(|k| *k == "id").count() == 1);
    let sent = serde_json::from_str::<Fields>(text)
        .ok()
        .filter(|_| one_id)
        .and_then(|mut m| m.remove("id"))
        .filter(|id| matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9')));
    if let Some(id) = sent {
        assert_eq!(
            fields.get("id").map(|r| r.get()),
            Some(id.get()),
            "{text:?}: {reply}"
        );
    }
    let after = service.holding();
    if status >= 400 {
        assert_eq!(
            before, after,
            "{text:?} was refused ({status}) but changed the engine"
        );
    } else if before != after {
        *slot = None;
    }
});
