//! tapir's configuration file: services (of the built-in provider kinds), locations, profiles and
//! routes, in TOML; the embedded default that runs on simulated providers; and building a running
//! [`Engine`] from it.
//!
//! The schema, key by key, is in `docs/configuration.md`; [`EMBEDDED`] is the annotated default.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tapir_config::ConfigError> {
//! let config = tapir_config::Config::parse(r#"
//!     [services.pbx]
//!     kind = "simswitch"
//!     extensions = [{ number = "100", name = "Alice" }, { number = "200", name = "Bob" }]
//!
//!     [profiles.default]
//!     services = ["pbx"]
//! "#)?;
//! let running = config.start().await?;
//! assert_eq!(running.engine.lines().len(), 2);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tapir::core::media::MediaModes;
use tapir::core::route::DefaultRoute;
use tapir::profile::{Profile, Service};
use tapir::translate::Location;
use tapir::{Engine, Error};
use tapir_modem::device::SimModem;
use tapir_modem::network::{FarEnd as ModemFarEnd, Network};
use tapir_modem::provider::ModemProvider;
use tapir_simswitch::{FarEnd, ParkLot, SimSwitch};
use tapir_sip::{SipLine, SipProvider, SipSettings, SipTiming};

/// The embedded default configuration (simulated PBX and modems), used when no file is given.
pub const EMBEDDED: &str = include_str!("default.toml");

/// Why a configuration was refused. Nothing is started for a refused configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not valid TOML for the schema (unknown key, wrong type …), with where.
    #[error("configuration: {0}")]
    Syntax(String),
    /// The values do not fit together or are out of range; names the key.
    #[error("configuration: {key}: {reason}")]
    Invalid {
        /// The key, e.g. `services.pbx.outside[2]`.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The engine refused the result (or no provider could start).
    #[error("configuration: {0}")]
    Engine(Error),
}

impl From<Error> for ConfigError {
    fn from(e: Error) -> Self {
        Self::Engine(e)
    }
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// A parsed configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The profile a log-on that names none uses.
    #[serde(default = "default_profile")]
    pub default_profile: String,
    /// Engine settings.
    #[serde(default)]
    pub engine: EngineSettings,
    /// Services by name; each table has a `kind` and the kind's settings.
    #[serde(default)]
    pub services: BTreeMap<String, toml::Table>,
    /// Locations by name.
    #[serde(default)]
    pub locations: BTreeMap<String, LocationSettings>,
    /// Profiles by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileSettings>,
    /// The route table.
    #[serde(default)]
    pub routes: RouteSettings,
    /// The network service (`tapird`).
    #[serde(default)]
    pub server: ServerSettings,
    /// Call detail records (`tapird` keeps them in `cdr.db` in its data directory).
    #[serde(default)]
    pub cdr: CdrSettings,
    /// Applications allowed to log on over the network, by name.
    #[serde(default)]
    pub applications: BTreeMap<String, ApplicationSettings>,
}

/// `[server]`: the network service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address and port to listen on.
    #[serde(default = "listen")]
    pub listen: String,
    /// Events kept per session for clients that reconnect; older ones are trimmed.
    #[serde(default = "journal_events")]
    pub journal_events: usize,
    /// The largest request body accepted, in bytes.
    #[serde(default = "body_limit")]
    pub body_limit: usize,
    /// Where the store (`tapird.db`: event journals, route changes) is kept. Absent: `tapird` uses
    /// `$XDG_DATA_HOME/tapir` (or `~/.local/share/tapir`); an engine embedded without one keeps its
    /// store in memory.
    #[serde(default)]
    pub data_dir: Option<std::path::PathBuf>,
    /// How long journal events and ended log-ons are kept, in seconds.
    #[serde(default = "journal_max_age_secs")]
    pub journal_max_age_secs: u64,
}

fn listen() -> String {
    "127.0.0.1:7878".into()
}
fn journal_events() -> usize {
    10_000
}
fn body_limit() -> usize {
    64 * 1024
}
fn journal_max_age_secs() -> u64 {
    24 * 60 * 60
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: listen(),
            journal_events: journal_events(),
            body_limit: body_limit(),
            data_dir: None,
            journal_max_age_secs: journal_max_age_secs(),
        }
    }
}

/// `[cdr]`: call detail records.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdrSettings {
    /// Whether records are kept at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Records of calls that started longer ago than this many days are deleted; 0 keeps them all.
    #[serde(default = "cdr_max_age_days")]
    pub max_age_days: u64,
    /// Beyond this many records the oldest are deleted; 0 sets no limit.
    #[serde(default = "cdr_max_records")]
    pub max_records: u64,
    /// At most this many records are written per transaction.
    #[serde(default = "cdr_batch")]
    pub batch: usize,
}

fn cdr_max_age_days() -> u64 {
    90
}
fn cdr_max_records() -> u64 {
    10_000_000
}
fn cdr_batch() -> usize {
    1024
}

impl Default for CdrSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_age_days: cdr_max_age_days(),
            max_records: cdr_max_records(),
            batch: cdr_batch(),
        }
    }
}

/// `[applications.NAME]`: an application that may log on over the network.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSettings {
    /// What it presents to log on.
    pub secret: String,
    /// The profiles it may log on with; empty: any.
    #[serde(default)]
    pub profiles: Vec<String>,
}

fn default_profile() -> String {
    tapir::profile::DEFAULT_PROFILE.to_owned()
}

/// `[engine]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// Events a session's queue holds before a slow reader is told it lost some.
    #[serde(default = "queue_capacity")]
    pub event_queue_capacity: usize,
    /// Seconds the engine waits for a provider method before the operation fails with a time-out.
    #[serde(default = "provider_deadline_secs")]
    pub provider_deadline_secs: u64,
}

fn provider_deadline_secs() -> u64 {
    tapir::DEFAULT_PROVIDER_DEADLINE.as_secs()
}

fn queue_capacity() -> usize {
    tapir::DEFAULT_EVENT_QUEUE_CAPACITY
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            event_queue_capacity: queue_capacity(),
            provider_deadline_secs: provider_deadline_secs(),
        }
    }
}

/// `[locations.NAME]`: the fields of [`Location`].
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct LocationSettings {
    #[serde(default)]
    pub name: String,
    pub country: String,
    #[serde(default)]
    pub area_code: String,
    #[serde(default)]
    pub local_access: String,
    #[serde(default)]
    pub long_distance_access: String,
    pub long_distance_prefix: Option<String>,
    pub international_prefix: Option<String>,
    #[serde(default)]
    pub toll_prefixes: Vec<String>,
    #[serde(default)]
    pub cancel_call_waiting: String,
    #[serde(default)]
    pub pulse: bool,
}

impl LocationSettings {
    fn location(&self, key: &str) -> Location {
        Location {
            name: if self.name.is_empty() {
                key.to_owned()
            } else {
                self.name.clone()
            },
            country: self.country.clone(),
            area_code: self.area_code.clone(),
            local_access: self.local_access.clone(),
            long_distance_access: self.long_distance_access.clone(),
            long_distance_prefix: self.long_distance_prefix.clone(),
            international_prefix: self.international_prefix.clone(),
            toll_prefixes: self.toll_prefixes.clone(),
            cancel_call_waiting: self.cancel_call_waiting.clone(),
            pulse: self.pulse,
        }
    }
}

/// `[profiles.NAME]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSettings {
    /// The services, by name.
    pub services: Vec<String>,
    /// Line patterns (see [`Profile::lines`](tapir::Profile#structfield.lines)); empty: every line.
    #[serde(default)]
    pub lines: Vec<String>,
    /// A location's name.
    pub location: Option<String>,
}

/// `[routes]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// `"first-owner"` (the default), `"reject"` or `"app:NAME"`.
    pub default: Option<String>,
    /// Call class → application name.
    #[serde(default)]
    pub classes: BTreeMap<String, String>,
}

/// A running configuration: the engine, and the simulated parts tests and demonstrations drive.
pub struct Running {
    /// The engine.
    pub engine: Engine,
    /// Simulated PBXs by service name (to ring extensions from outside, say).
    pub switches: BTreeMap<String, SimSwitch>,
    /// Simulated telephone networks of `modem-sim` services, by service name.
    pub networks: BTreeMap<String, Network>,
    /// SIP services' providers, by service name (for their registrations, say).
    pub sip: BTreeMap<String, std::sync::Arc<SipProvider>>,
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Self {
        // The embedded text is checked by this crate's tests; a failure here is a build defect.
        Self::parse(EMBEDDED).expect("the embedded configuration parses")
    }

    /// Parses a configuration text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))
    }

    /// Reads and parses a configuration file.
    pub async fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|source| ConfigError::Io {
                path: path.to_owned(),
                source,
            })?;
        Self::parse(&text)
    }

    /// Checks every value and starts the engine with the configured services, profiles and routes.
    /// Must run inside a tokio runtime. Nothing is started if a value is wrong.
    pub async fn start(&self) -> Result<Running, ConfigError> {
        self.start_with(None).await
    }

    /// As [`start`](Config::start), handing the engine's call detail records to `cdr_sink`.
    pub async fn start_with(
        &self,
        cdr_sink: Option<std::sync::Arc<dyn tapir::core::cdr::CdrSink>>,
    ) -> Result<Running, ConfigError> {
        for (name, app) in &self.applications {
            if app.secret.is_empty() {
                return Err(invalid(
                    format!("applications.{name}.secret"),
                    "must not be empty",
                ));
            }
            if let Some(p) = app
                .profiles
                .iter()
                .find(|p| !self.profiles.contains_key(*p))
            {
                return Err(invalid(
                    format!("applications.{name}.profiles"),
                    format!("no profile called {p:?}"),
                ));
            }
        }
        if self.server.journal_events == 0 {
            return Err(invalid("server.journal_events", "must be at least 1"));
        }
        if self.server.journal_max_age_secs == 0 {
            return Err(invalid("server.journal_max_age_secs", "must be at least 1"));
        }
        if self.cdr.batch == 0 {
            return Err(invalid("cdr.batch", "must be at least 1"));
        }
        if self.engine.provider_deadline_secs == 0 {
            return Err(invalid(
                "engine.provider_deadline_secs",
                "must be at least 1",
            ));
        }
        let mut builder = Engine::builder()
            .event_queue_capacity(self.engine.event_queue_capacity)
            .provider_deadline(Duration::from_secs(self.engine.provider_deadline_secs));
        if let Some(sink) = cdr_sink {
            builder = builder.cdr_sink(sink);
        }
        let mut switches = BTreeMap::new();
        let mut networks = BTreeMap::new();
        let mut sip = BTreeMap::new();
        // Kind settings are all checked before any simulated device is attached.
        let mut kinds = Vec::new();
        for (name, table) in &self.services {
            kinds.push((name, ServiceSettings::parse(name, table)?));
        }
        let locations: BTreeMap<&String, Location> = self
            .locations
            .iter()
            .map(|(k, l)| (k, l.location(k)))
            .collect();
        for (k, l) in &locations {
            l.check()
                .map_err(|e| invalid(format!("locations.{k}"), e.to_string()))?;
        }
        let mut profiles = Vec::new();
        for (name, p) in &self.profiles {
            let mut profile =
                Profile::new(p.services.iter().cloned()).lines(p.lines.iter().cloned());
            if let Some(l) = &p.location {
                let location = locations.get(l).ok_or_else(|| {
                    invalid(
                        format!("profiles.{name}.location"),
                        format!("no location called {l:?}"),
                    )
                })?;
                profile = profile.location(location.clone());
            }
            profiles.push((name.clone(), profile));
        }
        let default_route = match self.routes.default.as_deref() {
            None => DefaultRoute::FirstOwner,
            Some(d) => d
                .parse()
                .map_err(|e: Error| invalid("routes.default", e.to_string()))?,
        };
        for class in self.routes.classes.keys() {
            tapir::core::route::validate_class(class)
                .map_err(|e| invalid(format!("routes.classes.{class:?}"), e.to_string()))?;
        }

        for (name, kind) in kinds {
            let mut service = Service::new(name.clone());
            if let Some(d) = &kind.display_name {
                service = service.display_name(d.clone());
            }
            if let Some(m) = kind.max_sessions {
                service = service.max_sessions(m);
            }
            service = match kind.kind {
                Kind::SimSwitch(s) => {
                    let switch = s.build(name)?;
                    switches.insert(name.clone(), switch.clone());
                    service.provider(switch)
                }
                Kind::ModemSim(m) => {
                    let network = Network::new();
                    for f in &m.far_ends {
                        network.far_end(f.number.clone(), f.far_end());
                    }
                    for (i, modem) in m.modems.iter().enumerate() {
                        let device = if modem.voice {
                            SimModem::builder()
                        } else {
                            SimModem::builder().data_only()
                        };
                        let (stream, _signals) =
                            device.attach(&network, &modem.number).map_err(|e| {
                                invalid(format!("services.{name}.modems[{i}]"), e.to_string())
                            })?;
                        service = service.provider(
                            ModemProvider::over(stream)
                                .name(format!("{name}-{}", modem.number))
                                .number(modem.number.clone())
                                .incoming_media(modem.incoming.media())
                                .build(),
                        );
                    }
                    networks.insert(name.clone(), network);
                    service
                }
                Kind::Modem(m) => service.provider(
                    ModemProvider::serial(m.port.clone())
                        .name(name.clone())
                        .number(m.number.clone().unwrap_or_default())
                        .incoming_media(m.incoming.media())
                        .build(),
                ),
                Kind::Sip(provider) => {
                    let provider = std::sync::Arc::new(provider);
                    sip.insert(name.clone(), provider.clone());
                    service.provider_arc(provider)
                }
            };
            builder = builder.service(service);
        }
        for (name, profile) in profiles {
            builder = builder.profile(name, profile);
        }
        let engine = builder
            .default_profile(self.default_profile.clone())
            .build()
            .await?;
        engine.set_default_route(default_route);
        for (class, app) in &self.routes.classes {
            engine.set_route(class, app)?;
        }
        tracing::info!(
            services = self.services.len(),
            profiles = self.profiles.len(),
            "engine started from configuration"
        );
        Ok(Running {
            engine,
            switches,
            networks,
            sip,
        })
    }
}

/// One `[services.NAME]` table, split into the common keys and the kind's settings.
struct ServiceSettings {
    display_name: Option<String>,
    max_sessions: Option<u32>,
    kind: Kind,
}

enum Kind {
    SimSwitch(SimSwitchSettings),
    ModemSim(ModemSimSettings),
    Modem(ModemSettings),
    Sip(SipProvider),
}

const KINDS: &str = "one of \"simswitch\", \"modem-sim\", \"modem\", \"sip\"";

impl ServiceSettings {
    fn parse(name: &str, table: &toml::Table) -> Result<Self, ConfigError> {
        let key = |k: &str| format!("services.{name}.{k}");
        let mut rest = table.clone();
        let kind = match rest.remove("kind") {
            Some(toml::Value::String(k)) => k,
            Some(_) => return Err(invalid(key("kind"), "must be a string")),
            None => {
                return Err(invalid(key("kind"), format!("missing: {KINDS}")));
            }
        };
        let display_name = match rest.remove("display_name") {
            None => None,
            Some(toml::Value::String(d)) => Some(d),
            Some(_) => return Err(invalid(key("display_name"), "must be a string")),
        };
        let max_sessions = match rest.remove("max_sessions") {
            None => None,
            Some(toml::Value::Integer(n)) if n >= 1 && n <= i64::from(u32::MAX) => Some(n as u32),
            Some(_) => return Err(invalid(key("max_sessions"), "must be a whole number ≥ 1")),
        };
        let settings = |e: toml::de::Error| ConfigError::Syntax(format!("services.{name}: {e}"));
        let rest = toml::Value::Table(rest);
        let kind = match kind.as_str() {
            "simswitch" => Kind::SimSwitch(rest.try_into().map_err(settings)?),
            "modem-sim" => Kind::ModemSim(rest.try_into().map_err(settings)?),
            "modem" => Kind::Modem(rest.try_into().map_err(settings)?),
            "sip" => {
                let s: SipServiceSettings = rest.try_into().map_err(settings)?;
                Kind::Sip(s.provider(name)?)
            }
            other => {
                return Err(invalid(
                    key("kind"),
                    format!("unknown kind {other:?}: {KINDS}"),
                ));
            }
        };
        Ok(Self {
            display_name,
            max_sessions,
            kind,
        })
    }
}

/// `kind = "simswitch"`: a simulated PBX.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimSwitchSettings {
    extensions: Vec<ExtensionSettings>,
    #[serde(default)]
    outside: Vec<OutsideSettings>,
    ring_period_secs: Option<u64>,
    no_answer_timeout_secs: Option<u64>,
    park_orbits: Option<Vec<String>>,
    park_timeout_secs: Option<u64>,
    #[serde(default)]
    pickup_groups: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtensionSettings {
    number: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutsideSettings {
    number: String,
    script: OutsideScript,
    #[serde(default)]
    after_rings: u32,
    name: Option<String>,
    hangs_up_after_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum OutsideScript {
    Answers,
    NeverAnswers,
    Busy,
    Rejects,
    Unreachable,
}

impl SimSwitchSettings {
    fn build(&self, name: &str) -> Result<SimSwitch, ConfigError> {
        let mut b = SimSwitch::builder();
        for e in &self.extensions {
            b = b.extension(e.number.clone(), e.name.clone());
        }
        for o in &self.outside {
            let mut far = match o.script {
                OutsideScript::Answers => FarEnd::answers_after_rings(o.after_rings),
                OutsideScript::NeverAnswers => FarEnd::never_answers(),
                OutsideScript::Busy => FarEnd::busy(),
                OutsideScript::Rejects => FarEnd::rejects(),
                OutsideScript::Unreachable => FarEnd::unreachable(),
            };
            if let Some(n) = &o.name {
                far = far.named(n.clone());
            }
            if let Some(s) = o.hangs_up_after_secs {
                far = far.hangs_up_after(Duration::from_secs(s));
            }
            b = b.far_end(o.number.clone(), far);
        }
        if let Some(s) = self.ring_period_secs {
            b = b.ring_period(Duration::from_secs(s.max(1)));
        }
        if let Some(s) = self.no_answer_timeout_secs {
            b = b.no_answer_timeout(Duration::from_secs(s));
        }
        if self.park_orbits.is_some() || self.park_timeout_secs.is_some() {
            let mut lot = ParkLot::default();
            if let Some(o) = &self.park_orbits {
                lot.orbits = o.clone();
            }
            if let Some(t) = self.park_timeout_secs {
                lot.timeout = Duration::from_secs(t);
            }
            b = b.park_lot(lot);
        }
        for (group, members) in &self.pickup_groups {
            b = b.pickup_group(group.clone(), members.iter().cloned());
        }
        b.build()
            .map_err(|e| invalid(format!("services.{name}"), e.to_string()))
    }
}

/// How a modem line answers incoming calls.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Incoming {
    #[default]
    Data,
    Voice,
}

impl Incoming {
    fn media(self) -> MediaModes {
        match self {
            Self::Data => MediaModes::DATA_MODEM,
            Self::Voice => MediaModes::INTERACTIVE_VOICE,
        }
    }
}

/// `kind = "modem-sim"`: simulated modems on a simulated network.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModemSimSettings {
    modems: Vec<SimModemSettings>,
    #[serde(default)]
    far_ends: Vec<ModemFarEndSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimModemSettings {
    number: String,
    #[serde(default = "yes")]
    voice: bool,
    #[serde(default)]
    incoming: Incoming,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModemFarEndSettings {
    number: String,
    script: ModemScript,
    #[serde(default)]
    after_rings: u32,
    #[serde(default)]
    presses: String,
    hangs_up_after_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ModemScript {
    Modem,
    Voice,
    Busy,
    NoAnswer,
    Unreachable,
}

impl ModemFarEndSettings {
    fn far_end(&self) -> ModemFarEnd {
        let mut f = match self.script {
            ModemScript::Modem => ModemFarEnd::modem_after_rings(self.after_rings),
            ModemScript::Voice => ModemFarEnd::voice_after_rings(self.after_rings),
            ModemScript::Busy => ModemFarEnd::busy(),
            ModemScript::NoAnswer => ModemFarEnd::no_answer(),
            ModemScript::Unreachable => ModemFarEnd::unreachable(),
        };
        if !self.presses.is_empty() {
            f = f.presses(self.presses.clone());
        }
        if let Some(s) = self.hangs_up_after_secs {
            f = f.hangs_up_after(Duration::from_secs(s));
        }
        f
    }
}

/// `kind = "modem"`: an AT modem on a serial port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModemSettings {
    port: PathBuf,
    number: Option<String>,
    #[serde(default)]
    incoming: Incoming,
}

/// `kind = "sip"`: tapir as the registrar and back-to-back user agent of SIP phones and a trunk.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SipServiceSettings {
    listen: String,
    lines: Vec<SipLineSettings>,
    trunk: Option<String>,
    realm: Option<String>,
    min_expires_secs: Option<u64>,
    max_expires_secs: Option<u64>,
    default_expires_secs: Option<u64>,
    no_answer_secs: Option<u64>,
    phone_answer_secs: Option<u64>,
    keepalive_secs: Option<u64>,
    #[serde(default)]
    park_orbits: Vec<String>,
    park_timeout_secs: Option<u64>,
    #[serde(default)]
    pickup_groups: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SipLineSettings {
    number: String,
    /// Shown for the line; its number when absent.
    name: Option<String>,
    password: Option<String>,
    contact: Option<String>,
    #[serde(default)]
    auto_answer: bool,
}

impl SipServiceSettings {
    fn provider(self, name: &str) -> Result<SipProvider, ConfigError> {
        let listen = self.listen.parse().map_err(|_| {
            invalid(
                format!("services.{name}.listen"),
                format!(
                    "{:?} is not an address and port (127.0.0.1:5060)",
                    self.listen
                ),
            )
        })?;
        let mut settings = SipSettings::new(listen);
        settings.name = name.to_owned();
        settings.trunk = self.trunk;
        if let Some(r) = self.realm {
            settings.realm = r;
        }
        let d = SipTiming::default();
        let secs = |v: Option<u64>, dflt: Duration| v.map(Duration::from_secs).unwrap_or(dflt);
        settings.timing = SipTiming {
            min_expires: secs(self.min_expires_secs, d.min_expires),
            max_expires: secs(self.max_expires_secs, d.max_expires),
            default_expires: secs(self.default_expires_secs, d.default_expires),
            no_answer: secs(self.no_answer_secs, d.no_answer),
            phone_answer: secs(self.phone_answer_secs, d.phone_answer),
            keepalive: secs(self.keepalive_secs, d.keepalive),
        };
        settings.park_orbits = self.park_orbits;
        if let Some(t) = self.park_timeout_secs {
            settings.park_timeout = Duration::from_secs(t);
        }
        settings.pickup_groups = self.pickup_groups;
        settings.lines = self
            .lines
            .into_iter()
            .map(|l| SipLine {
                name: l.name.unwrap_or_else(|| l.number.clone()),
                number: l.number,
                password: l.password,
                contact: l.contact,
                auto_answer: l.auto_answer,
            })
            .collect();
        SipProvider::new(settings)
            .map_err(|e| invalid(format!("services.{name}.{}", e.key), e.reason))
    }
}

/// Reads the file at `path`, or the embedded default when `path` is `None`.
pub async fn load_or_embedded(path: Option<&Path>) -> Result<Config, ConfigError> {
    match path {
        Some(p) => Config::load(p).await,
        None => Ok(Config::embedded()),
    }
}
