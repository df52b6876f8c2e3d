//! Shared helpers for the runnable examples in `examples/examples/`.

use std::collections::HashMap;

/// Installs a `tracing` subscriber that honours `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
}

/// Minimal `--flag value` / `--flag=value` / `--switch` parsing for the examples; arguments
/// that do not start with `-` are positional.
#[derive(Debug, Default)]
pub struct Flags {
    values: HashMap<String, String>,
    switches: Vec<String>,
    positional: Vec<String>,
}

impl Flags {
    /// Parses the process arguments; `valued` flags take a value, `switches` do not.
    pub fn parse(valued: &[&str], switches: &[&str]) -> Result<Self, String> {
        Self::parse_from(std::env::args().skip(1), valued, switches)
    }

    /// Parses `args` (without the program name).
    pub fn parse_from(
        args: impl IntoIterator<Item = String>,
        valued: &[&str],
        switches: &[&str],
    ) -> Result<Self, String> {
        let mut flags = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (arg.clone(), None),
            };
            if valued.contains(&name.as_str()) {
                let value = match inline {
                    Some(v) => v,
                    None => args.next().ok_or(format!("{name} needs a value"))?,
                };
                flags.values.insert(name, value);
            } else if switches.contains(&name.as_str()) && inline.is_none() {
                flags.switches.push(name);
            } else if !arg.starts_with('-') {
                flags.positional.push(arg);
            } else {
                let mut known: Vec<&str> = valued.to_vec();
                known.extend_from_slice(switches);
                return Err(format!(
                    "unknown argument {arg:?} (known: {})",
                    known.join(" ")
                ));
            }
        }
        Ok(flags)
    }

    /// The value of a flag, or `""`.
    pub fn value(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    /// Whether a switch was given.
    pub fn is_set(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    /// The positional arguments, in order.
    pub fn positional(&self) -> &[String] {
        &self.positional
    }
}
