//! `--name value` options.

use std::collections::HashMap;
use std::str::FromStr;

use crate::BoxError;

/// The options of one subcommand.
#[derive(Debug)]
pub struct Args {
    values: HashMap<String, String>,
}

impl Args {
    /// Reads `--name value` pairs; anything else is an error.
    pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, BoxError> {
        let mut values = HashMap::new();
        while let Some(flag) = argv.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --name, got {flag:?}"))?;
            let value = argv
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            values.insert(name.to_owned(), value);
        }
        Ok(Args { values })
    }

    /// The value of `--name`, which must be given.
    pub fn required(&self, name: &str) -> Result<&str, BoxError> {
        self.optional(name)
            .ok_or_else(|| format!("--{name} is required").into())
    }

    /// The value of `--name`, if given.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// `--name` parsed as a `T`.
    pub fn number<T: FromStr>(&self, name: &str) -> Result<T, BoxError>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.required(name)?;
        v.parse().map_err(|e| format!("--{name} {v:?}: {e}").into())
    }

    /// `--name` as comma-separated numbers.
    pub fn list(&self, name: &str) -> Result<Vec<i64>, BoxError> {
        self.required(name)?
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .map_err(|e| format!("--{name} {s:?}: {e}").into())
            })
            .collect()
    }
}
