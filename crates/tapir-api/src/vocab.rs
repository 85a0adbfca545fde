//! The words of the wire: each enum's names written once, here. Serde, `Display`, `FromStr` and the
//! OpenAPI document all read them from the same `name = "…"` list, so renaming a Rust variant cannot
//! change what goes over the network (and `tests` below pins every name).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A text that is none of an enum's names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {text:?}: expected {}", expected.join(", "))]
pub struct UnknownName {
    /// The enum's wire name, e.g. `digit_mode`.
    pub kind: &'static str,
    /// The text.
    pub text: String,
    /// The names it could have been.
    pub expected: &'static [&'static str],
}

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident as $kind:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        // Spelled here, not per variant from `$text`: the schema derive reads a container's
        // `rename_all` but not a `rename` whose value a macro substituted. Every name is its
        // variant in snake case, which `names_agree_everywhere` checks against `$text`.
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            /// Every value's name, in the same order.
            pub const NAMES: &'static [&'static str] = &[$($text,)+];

            /// The name on the wire.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| UnknownName {
                    kind: $kind,
                    text: s.to_owned(),
                    expected: Self::NAMES,
                })
            }
        }
    };
}

vocabulary! {
    /// How digits are signalled (`generate-digits`, `monitor-digits`, digit events).
    DigitMode as "digit_mode" {
        /// Dual-tone multi-frequency.
        Dtmf = "dtmf",
        /// Pulse (rotary) dialling.
        Pulse = "pulse",
    }
}

vocabulary! {
    /// How the switch should complete a call to a busy or unanswered party (`complete-call`).
    CompletionMode as "completion_mode" {
        /// Wait on the busy line, connecting when it is free.
        CampOn = "camp_on",
        /// Call back when the party is free.
        Callback = "callback",
        /// Intrude on the party's call.
        Intrude = "intrude",
        /// Leave a message.
        Message = "message",
    }
}

vocabulary! {
    /// When a forwarding rule applies.
    ForwardCondition as "condition" {
        /// Always.
        Unconditional = "unconditional",
        /// When the address is busy.
        Busy = "busy",
        /// When a call is not answered after `rings` rings.
        NoAnswer = "no_answer",
    }
}

vocabulary! {
    /// A session's privilege on a call.
    CallPrivilege as "privilege" {
        /// May control the call.
        Owner = "owner",
        /// May watch the call (and monitor its digits).
        Monitor = "monitor",
    }
}

vocabulary! {
    /// What a line open lets the session do with the line's calls.
    LinePrivilege as "privilege" {
        /// Receive offered calls and control them.
        Owner = "owner",
        /// Be told of every call on the line.
        Monitor = "monitor",
        /// Both.
        OwnerMonitor = "owner_monitor",
        /// Neither: make calls only.
        None = "none",
    }
}

vocabulary! {
    /// How a consultation call completes (`complete-transfer`).
    TransferMode as "transfer_mode" {
        /// The held call and the consultation call are joined; this line leaves.
        Transfer = "transfer",
        /// The three parties form a conference.
        Conference = "conference",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire's words, pinned: a renamed variant or a changed name fails here, not in a client.
    #[test]
    fn the_wire_vocabulary_is_what_clients_were_told() {
        assert_eq!(DigitMode::NAMES, ["dtmf", "pulse"]);
        assert_eq!(
            CompletionMode::NAMES,
            ["camp_on", "callback", "intrude", "message"]
        );
        assert_eq!(
            ForwardCondition::NAMES,
            ["unconditional", "busy", "no_answer"]
        );
        assert_eq!(CallPrivilege::NAMES, ["owner", "monitor"]);
        assert_eq!(
            LinePrivilege::NAMES,
            ["owner", "monitor", "owner_monitor", "none"]
        );
        assert_eq!(TransferMode::NAMES, ["transfer", "conference"]);
    }

    fn agree<T>(all: &[T])
    where
        T: Serialize
            + serde::de::DeserializeOwned
            + fmt::Display
            + FromStr
            + PartialEq
            + fmt::Debug,
        <T as FromStr>::Err: fmt::Debug,
    {
        for v in all {
            let json = serde_json::to_string(v).expect("json");
            assert_eq!(
                json,
                format!("\"{v}\""),
                "serde and the name table disagree"
            );
            assert_eq!(v.to_string().parse::<T>().ok().as_ref(), Some(v));
            assert_eq!(serde_json::from_str::<T>(&json).ok().as_ref(), Some(v));
        }
    }

    #[test]
    fn names_agree_everywhere() {
        agree(DigitMode::ALL);
        agree(CompletionMode::ALL);
        agree(ForwardCondition::ALL);
        agree(CallPrivilege::ALL);
        agree(LinePrivilege::ALL);
        agree(TransferMode::ALL);
        let e = "ring".parse::<DigitMode>().expect_err("no such mode");
        assert_eq!(e.to_string(), "digit_mode \"ring\": expected dtmf, pulse");
    }
}
