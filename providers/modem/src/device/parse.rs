//! The body of an AT command line (what follows `AT`), split into commands.
//!
//! Pure and total: any byte string gives a list of commands, the last of which may be
//! [`Command::Invalid`]; execution stops there with `ERROR`. Range checks of values belong to execution,
//! so that the commands before a bad value still take effect.

/// One command of a command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A basic command: a letter, or a prefix (`&`, `\`, `%`) and a letter, with an optional number
    /// (`None` when no digits followed).
    Basic {
        /// `'E'`, `'V'`, `'&'`-prefixed commands as `('&', 'C')`, …
        prefix: Option<char>,
        /// The command letter, upper case.
        letter: char,
        /// The number after it.
        value: Option<u32>,
    },
    /// `D`: the rest of the line.
    Dial(String),
    /// `A`: answer (anything after it is ignored).
    Answer,
    /// `O`: back on line (anything after it is ignored).
    Online,
    /// `Z`: reset (anything after it is ignored).
    Reset,
    /// `Sn=v`.
    SetRegister(u32, u32),
    /// `Sn?`.
    ReadRegister(u32),
    /// `&Zn=number`: store a number (the rest of the line).
    StoreNumber(u32, String),
    /// An extended command: `+NAME`, `#NAME` with an operation.
    Extended {
        /// `+` or `#`.
        prefix: char,
        /// The name, upper case.
        name: String,
        /// What to do.
        op: ExtOp,
    },
    /// Not a command: execution stops here with `ERROR`.
    Invalid,
}

/// The operation of an extended command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtOp {
    /// `+NAME`.
    Execute,
    /// `+NAME?`.
    Read,
    /// `+NAME=?`.
    Test,
    /// `+NAME=value`.
    Set(String),
}

/// Largest number accepted in a command; more digits make the command invalid.
const MAX_NUMBER: u32 = 99_999;

/// Splits a command-line body into commands.
///
/// ```
/// use tapir_modem::device::parse::{parse, Command};
/// let cmds = parse(b"E0V1 S7=45");
/// assert_eq!(cmds.len(), 3);
/// assert_eq!(cmds[2], Command::SetRegister(7, 45));
/// ```
pub fn parse(body: &[u8]) -> Vec<Command> {
    // Spaces are not significant outside quoted strings; drop them first.
    let mut chars: Vec<char> = Vec::with_capacity(body.len());
    let mut quoted = false;
    for &b in body {
        let c = char::from(b);
        if c == '"' {
            quoted = !quoted;
        }
        if c == ' ' && !quoted {
            continue;
        }
        chars.push(c);
    }
    let mut p = Parser { chars, at: 0 };
    let mut out = Vec::new();
    while p.at < p.chars.len() {
        let cmd = p.command();
        let stop = matches!(
            cmd,
            Command::Invalid
                | Command::Dial(_)
                | Command::Answer
                | Command::Online
                | Command::Reset
                | Command::StoreNumber(..)
        );
        out.push(cmd);
        if stop {
            break;
        }
    }
    out
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.at += 1;
        }
        c
    }
    fn rest(&mut self) -> String {
        let s: String = self.chars[self.at..].iter().collect();
        self.at = self.chars.len();
        s
    }
    /// Decimal digits at the cursor; `Err` when there are too many.
    fn number(&mut self) -> Result<Option<u32>, ()> {
        let mut value: Option<u32> = None;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            self.at += 1;
            let v = value.unwrap_or(0) * 10 + d;
            if v > MAX_NUMBER {
                return Err(());
            }
            value = Some(v);
        }
        Ok(value)
    }

    fn command(&mut self) -> Command {
        let Some(c) = self.next() else {
            return Command::Invalid;
        };
        match c.to_ascii_uppercase() {
            ';' => self.command_after_separator(),
            'D' => Command::Dial(self.rest()),
            'A' => {
                self.rest();
                Command::Answer
            }
            'O' => {
                self.rest();
                Command::Online
            }
            'Z' => {
                self.rest();
                Command::Reset
            }
            'S' => self.register(),
            '+' | '#' => self.extended(c),
            p @ ('&' | '\\' | '%') => {
                let Some(letter) = self.next().map(|l| l.to_ascii_uppercase()) else {
                    return Command::Invalid;
                };
                if !letter.is_ascii_alphabetic() {
                    return Command::Invalid;
                }
                if p == '&' && letter == 'Z' {
                    return self.store_number();
                }
                self.basic(Some(p), letter)
            }
            l if l.is_ascii_alphabetic() => self.basic(None, l),
            _ => Command::Invalid,
        }
    }

    /// A `;` separates extended commands; it may also precede a basic one.
    fn command_after_separator(&mut self) -> Command {
        if self.peek().is_none() {
            return Command::Invalid;
        }
        self.command()
    }

    fn basic(&mut self, prefix: Option<char>, letter: char) -> Command {
        match self.number() {
            Ok(value) => Command::Basic {
                prefix,
                letter,
                value,
            },
            Err(()) => Command::Invalid,
        }
    }

    fn register(&mut self) -> Command {
        let Ok(reg) = self.number() else {
            return Command::Invalid;
        };
        let reg = reg.unwrap_or(0);
        match self.peek() {
            Some('?') => {
                self.at += 1;
                Command::ReadRegister(reg)
            }
            Some('=') => {
                self.at += 1;
                match self.number() {
                    Ok(v) => Command::SetRegister(reg, v.unwrap_or(0)),
                    Err(()) => Command::Invalid,
                }
            }
            // `Sn` alone selects a register on some modems; nothing to do.
            _ => Command::Basic {
                prefix: None,
                letter: 'S',
                value: Some(reg),
            },
        }
    }

    fn store_number(&mut self) -> Command {
        let Ok(slot) = self.number() else {
            return Command::Invalid;
        };
        if self.next() != Some('=') {
            return Command::Invalid;
        }
        Command::StoreNumber(slot.unwrap_or(0), self.rest())
    }

    fn extended(&mut self, prefix: char) -> Command {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_ascii_alphanumeric()) {
            self.at += 1;
            name.push(c.to_ascii_uppercase());
        }
        if name.is_empty() {
            return Command::Invalid;
        }
        let op = match self.peek() {
            Some('?') => {
                self.at += 1;
                ExtOp::Read
            }
            Some('=') => {
                self.at += 1;
                if self.peek() == Some('?') {
                    self.at += 1;
                    ExtOp::Test
                } else {
                    ExtOp::Set(self.value())
                }
            }
            _ => ExtOp::Execute,
        };
        match self.peek() {
            None => {}
            Some(';') => self.at += 1,
            // Another command must be separated by `;`.
            Some(_) => return Command::Invalid,
        }
        Command::Extended { prefix, name, op }
    }

    /// The value of an extended command: up to a `;` outside quotes.
    fn value(&mut self) -> String {
        let mut v = String::new();
        let mut quoted = false;
        while let Some(c) = self.peek() {
            if c == ';' && !quoted {
                break;
            }
            if c == '"' {
                quoted = !quoted;
            }
            v.push(c);
            self.at += 1;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(letter: char, value: Option<u32>) -> Command {
        Command::Basic {
            prefix: None,
            letter,
            value,
        }
    }

    #[test]
    fn concatenated_basic_commands_and_registers() {
        assert_eq!(
            parse(b"E0V1Q0X4&C1&D2S0=0"),
            vec![
                basic('E', Some(0)),
                basic('V', Some(1)),
                basic('Q', Some(0)),
                basic('X', Some(4)),
                Command::Basic {
                    prefix: Some('&'),
                    letter: 'C',
                    value: Some(1)
                },
                Command::Basic {
                    prefix: Some('&'),
                    letter: 'D',
                    value: Some(2)
                },
                Command::SetRegister(0, 0),
            ]
        );
    }

    #[test]
    fn extended_commands_are_separated_by_semicolons() {
        let cmds = parse(b"S7=65M1+ES=3,0,2;+DS=3;+IFC=2,2;X3");
        assert_eq!(cmds.len(), 6);
        assert_eq!(
            cmds[2],
            Command::Extended {
                prefix: '+',
                name: "ES".into(),
                op: ExtOp::Set("3,0,2".into())
            }
        );
        assert_eq!(cmds[5], basic('X', Some(3)));
        assert_eq!(
            parse(b"+FCLASS=?")[0],
            Command::Extended {
                prefix: '+',
                name: "FCLASS".into(),
                op: ExtOp::Test
            }
        );
        assert_eq!(
            parse(b"#cid=1")[0],
            Command::Extended {
                prefix: '#',
                name: "CID".into(),
                op: ExtOp::Set("1".into())
            }
        );
    }

    #[test]
    fn dial_takes_the_rest_of_the_line_and_a_missing_number_is_none() {
        assert_eq!(
            parse(b"X4DT555-1234;"),
            vec![basic('X', Some(4)), Command::Dial("T555-1234;".into())]
        );
        assert_eq!(parse(b"H"), vec![basic('H', None)]);
        assert_eq!(parse(b"ZE0"), vec![Command::Reset]);
    }

    #[test]
    fn garbage_stops_at_the_first_bad_command() {
        assert_eq!(parse(b"E0!V1"), vec![basic('E', Some(0)), Command::Invalid]);
        assert_eq!(parse(b"S7=9999999999"), vec![Command::Invalid]);
        assert_eq!(parse(b"+;"), vec![Command::Invalid]);
        assert_eq!(
            parse(b"+VCID=1E0").len(),
            1,
            "the value runs to the end of the line"
        );
    }
}
