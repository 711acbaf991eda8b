//! The README's configuration table, written from the tables of properties.

use std::fmt::Write;

use super::registry::{AnyProperty, DefaultValue};

/// `properties` (the tables kcon's builders take, concatenated) as a markdown table: name (and
/// aliases), default, what is allowed, the parts configured and what the property does, one
/// row per property. The README holds it between two marker comments; a test of the `kcon`
/// tool checks that it is this text.
pub fn markdown_table<'a>(properties: impl IntoIterator<Item = &'a dyn AnyProperty>) -> String {
    let mut out = String::from(
        "| property | default | allowed | parts | what it does |\n|---|---|---|---|---|\n",
    );
    for p in properties {
        let mut name = format!("`{}`", p.name());
        for alias in p.aliases() {
            // Invariant: writing to a String cannot fail.
            let _ = write!(name, " (also `{alias}`)");
        }
        let default = match p.default() {
            DefaultValue::Value(v) => format!("`{v}`"),
            DefaultValue::Unset => "unset".to_owned(),
            DefaultValue::Derived(words) => words.to_owned(),
        };
        let _ = writeln!(
            out,
            "| {name} | {default} | {} | {} | {} |",
            cell(p.allowed()),
            p.part_names(),
            cell(p.doc()),
        );
    }
    out
}

/// Text made safe for a table cell: a `|` would end the cell, `<` and `>` would be read as
/// HTML.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
