//! The README's configuration table, written from the tables of properties.

use std::fmt::Write;

use super::registry::{AnyProperty, DefaultValue, Part};

/// `properties` (the tables kcon's builders take, concatenated) as a markdown table: name (and
/// aliases), default, what is allowed, the parts configured and what the property does, one
/// row per property, where its first entry is (a property in several tables is one row, with
/// the parts of all its entries). The README holds it between two marker comments; a test of
/// the `kcon` tool checks that it is this text.
pub fn markdown_table<'a>(properties: impl IntoIterator<Item = &'a dyn AnyProperty>) -> String {
    let mut out = String::from(
        "| property | default | allowed | parts | what it does |\n|---|---|---|---|---|\n",
    );
    let mut rows: Vec<(&dyn AnyProperty, Vec<Part>)> = Vec::new();
    for p in properties {
        match rows.iter_mut().find(|(first, _)| first.name() == p.name()) {
            Some((_, parts)) => {
                for part in p.parts() {
                    if !parts.contains(part) {
                        parts.push(*part);
                    }
                }
            }
            None => rows.push((p, p.parts().to_vec())),
        }
    }
    for (p, parts) in rows {
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
            parts
                .iter()
                .map(|part| part.name())
                .collect::<Vec<_>>()
                .join(", "),
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
