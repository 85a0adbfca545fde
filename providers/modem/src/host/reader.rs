//! Splitting what a modem sends into lines and `<DLE>` events, and recognising result codes, rings and
//! caller ID.

/// `<DLE>`: starts a two-byte event in voice mode.
const DLE: u8 = 0x10;

/// Something a modem sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A final result code.
    Final(Final),
    /// `RING` (also `RING 1`, `RING A`).
    Ring,
    /// One caller-ID item, e.g. `("NMBR", "5551234")`, from either `NMBR=…` or `NMBR = …`.
    CallerId(String, String),
    /// A voice-mode event: `<DLE>` and its code.
    Dle(u8),
    /// The echo of a command.
    Echo(String),
    /// Any other line (information text).
    Info(String),
}

/// A final result code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Final {
    /// `OK` (also `VCON`, which ends a voice dial or answer like OK).
    Ok,
    /// `VCON`.
    Vcon,
    /// `CONNECT` with the rate if given.
    Connect(Option<u32>),
    /// `NO CARRIER`.
    NoCarrier,
    /// `ERROR`.
    Error,
    /// `NO DIALTONE` / `NO DIAL TONE`.
    NoDialTone,
    /// `BUSY`.
    Busy,
    /// `NO ANSWER`.
    NoAnswer,
}

/// Splits the modem's byte stream into [`Response`]s.
#[derive(Debug, Default)]
pub struct Reader {
    line: Vec<u8>,
    dle: bool,
}

/// The longest line kept; longer input is cut (a modem does not send such lines; data might).
const MAX_LINE: usize = 512;

impl Reader {
    /// Feeds bytes; returns the responses they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Response> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.dle {
                self.dle = false;
                if b != DLE {
                    out.push(Response::Dle(b));
                }
                continue;
            }
            match b {
                DLE => self.dle = true,
                b'\r' | b'\n' if !self.line.is_empty() => {
                    let line = String::from_utf8_lossy(&self.line).trim().to_owned();
                    self.line.clear();
                    if !line.is_empty() {
                        out.push(classify(&line));
                    }
                }
                b'\r' | b'\n' => {}
                _ if self.line.len() < MAX_LINE => self.line.push(b),
                _ => {}
            }
        }
        out
    }
}

/// Recognises one line.
pub fn classify(line: &str) -> Response {
    let upper = line.to_ascii_uppercase();
    let fin = match upper.as_str() {
        "OK" | "0" => Some(Final::Ok),
        "VCON" => Some(Final::Vcon),
        "CONNECT" | "1" => Some(Final::Connect(None)),
        "NO CARRIER" | "3" => Some(Final::NoCarrier),
        "ERROR" | "4" => Some(Final::Error),
        "NO DIALTONE" | "NO DIAL TONE" | "6" => Some(Final::NoDialTone),
        "BUSY" | "7" => Some(Final::Busy),
        "NO ANSWER" | "8" => Some(Final::NoAnswer),
        _ => None,
    };
    if let Some(f) = fin {
        return Response::Final(f);
    }
    if let Some(rest) = upper.strip_prefix("CONNECT ") {
        let rate = rest
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|r| r.parse().ok());
        return Response::Final(Final::Connect(rate));
    }
    if upper == "RING" || upper == "2" || upper.starts_with("RING ") || upper.starts_with("RING;") {
        return Response::Ring;
    }
    if upper.starts_with("AT") {
        return Response::Echo(line.to_owned());
    }
    if let Some((tag, value)) = line.split_once('=') {
        let tag = tag.trim().to_ascii_uppercase();
        if matches!(
            tag.as_str(),
            "DATE" | "TIME" | "NMBR" | "NAME" | "DDN_NMBR" | "MESG"
        ) {
            return Response::CallerId(tag, value.trim().to_owned());
        }
    }
    Response::Info(line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_dle_events_and_caller_id_in_both_forms() {
        let mut r = Reader::default();
        let mut got = r.feed(b"ATZ\r\r\nOK\r\n\r\nRING\r\n\r\nNMBR = 555");
        got.extend(r.feed(b"1234\r\n\r\nNAME=DOE JOHN\r\n\x105\x10b\r\nCONNECT 33600/ARQ\r\n0\r"));
        assert_eq!(
            got,
            vec![
                Response::Echo("ATZ".into()),
                Response::Final(Final::Ok),
                Response::Ring,
                Response::CallerId("NMBR".into(), "5551234".into()),
                Response::CallerId("NAME".into(), "DOE JOHN".into()),
                Response::Dle(b'5'),
                Response::Dle(b'b'),
                Response::Final(Final::Connect(Some(33600))),
                Response::Final(Final::Ok),
            ]
        );
    }

    #[test]
    fn result_code_variants() {
        assert_eq!(classify("NO DIAL TONE"), Response::Final(Final::NoDialTone));
        assert_eq!(classify("7"), Response::Final(Final::Busy));
        assert_eq!(classify("RING 1"), Response::Ring);
        assert_eq!(classify("0,8"), Response::Info("0,8".into()));
        assert_eq!(classify("CONNECT"), Response::Final(Final::Connect(None)));
    }
}
