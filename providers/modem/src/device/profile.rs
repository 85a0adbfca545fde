//! The settings a modem keeps (its profile) and how result codes are framed with them.

/// S-register numbers with a meaning in the simulator.
pub mod reg {
    /// Ring on which to answer (0 = never).
    pub const AUTO_ANSWER: usize = 0;
    /// Rings counted (read only).
    pub const RING_COUNT: usize = 1;
    /// The escape character.
    pub const ESCAPE: usize = 2;
    /// Line terminator (CR).
    pub const CR: usize = 3;
    /// Response formatting character (LF).
    pub const LF: usize = 4;
    /// Backspace.
    pub const BS: usize = 5;
    /// Wait before blind dialling, seconds.
    pub const BLIND_WAIT: usize = 6;
    /// Wait for carrier after dial or answer, seconds.
    pub const CARRIER_WAIT: usize = 7;
    /// Comma pause, seconds.
    pub const COMMA: usize = 8;
    /// DTMF tone length, milliseconds.
    pub const DTMF: usize = 11;
    /// Escape guard time, 1/50 s.
    pub const GUARD: usize = 12;
    /// How long DTR must be low, 1/100 s.
    pub const DTR_LOW: usize = 25;
    /// Hook flash length, 10 ms.
    pub const FLASH: usize = 29;
}

/// A modem's profile: what `&F` restores, `&W` stores and `Z` reloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// `E`: echo commands.
    pub echo: bool,
    /// `Q`: suppress result codes.
    pub quiet: bool,
    /// `V`: verbose (word) result codes.
    pub verbose: bool,
    /// `X`: which result codes may appear (0–4).
    pub x: u8,
    /// `&C`: DCD follows the carrier (else always on).
    pub dcd_follows_carrier: bool,
    /// `&D`: what DTR going low does (0–3).
    pub dtr_mode: u8,
    /// `T`/`P`: pulse dialling by default.
    pub pulse: bool,
    /// The S-registers.
    pub s: [u8; 256],
}

impl Default for Profile {
    /// The factory profile: E1 Q0 V1 X4 &C1 &D2 with the usual S-register defaults.
    fn default() -> Self {
        let mut s = [0u8; 256];
        for (r, v) in [
            (reg::ESCAPE, 43),
            (reg::CR, 13),
            (reg::LF, 10),
            (reg::BS, 8),
            (reg::BLIND_WAIT, 2),
            (reg::CARRIER_WAIT, 50),
            (reg::COMMA, 2),
            (9, 6),
            (10, 14),
            (reg::DTMF, 95),
            (reg::GUARD, 50),
            (reg::DTR_LOW, 5),
            (reg::FLASH, 70),
        ] {
            s[r] = v;
        }
        Self {
            echo: true,
            quiet: false,
            verbose: true,
            x: 4,
            dcd_follows_carrier: true,
            dtr_mode: 2,
            pulse: false,
            s,
        }
    }
}

/// A final or unsolicited result code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// `OK` (0).
    Ok,
    /// `CONNECT` (1) or `CONNECT <rate>`.
    Connect(Option<u32>),
    /// `RING` (2).
    Ring,
    /// `NO CARRIER` (3).
    NoCarrier,
    /// `ERROR` (4).
    Error,
    /// `NO DIALTONE` (6).
    NoDialTone,
    /// `BUSY` (7).
    Busy,
    /// `NO ANSWER` (8).
    NoAnswer,
    /// `VCON`: a voice call is connected (numeric form 0, as hosts treat it like OK).
    Vcon,
}

impl Code {
    /// The numeric form (V0). Rates without a code of their own report plain `CONNECT` (1).
    pub fn number(self) -> u32 {
        match self {
            Self::Ok | Self::Vcon => 0,
            Self::Connect(None) => 1,
            Self::Connect(Some(rate)) => match rate {
                1200 => 5,
                2400 => 10,
                4800 => 11,
                9600 => 12,
                14400 => 13,
                19200 => 14,
                57600 => 18,
                115_200 => 19,
                7200 => 24,
                12000 => 25,
                38400 => 28,
                _ => 1,
            },
            Self::Ring => 2,
            Self::NoCarrier => 3,
            Self::Error => 4,
            Self::NoDialTone => 6,
            Self::Busy => 7,
            Self::NoAnswer => 8,
        }
    }

    /// The verbose form (V1).
    pub fn text(self, no_dialtone: &str) -> String {
        match self {
            Self::Ok => "OK".into(),
            Self::Connect(None) => "CONNECT".into(),
            Self::Connect(Some(rate)) => format!("CONNECT {rate}"),
            Self::Ring => "RING".into(),
            Self::NoCarrier => "NO CARRIER".into(),
            Self::Error => "ERROR".into(),
            Self::NoDialTone => no_dialtone.into(),
            Self::Busy => "BUSY".into(),
            Self::NoAnswer => "NO ANSWER".into(),
            Self::Vcon => "VCON".into(),
        }
    }
}

impl Profile {
    /// Appends a result code to `out` as the profile frames it (nothing under `Q1`).
    pub fn frame_result(&self, code: Code, no_dialtone: &str, out: &mut Vec<u8>) {
        if self.quiet {
            return;
        }
        let (cr, lf) = (self.s[reg::CR], self.s[reg::LF]);
        if self.verbose {
            out.extend_from_slice(&[cr, lf]);
            out.extend_from_slice(code.text(no_dialtone).as_bytes());
            out.extend_from_slice(&[cr, lf]);
        } else {
            out.extend_from_slice(code.number().to_string().as_bytes());
            out.push(cr);
        }
    }

    /// Appends a line of information text (sent even under `Q1`).
    pub fn frame_info(&self, text: &str, out: &mut Vec<u8>) {
        let (cr, lf) = (self.s[reg::CR], self.s[reg::LF]);
        if self.verbose {
            out.extend_from_slice(&[cr, lf]);
        }
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&[cr, lf]);
    }
}
