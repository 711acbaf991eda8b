//! What the administrative commands print on stdout: tables as the Kafka tools print them
//! (a header row, columns left-aligned and separated by at least two spaces), JSON lines, and
//! what a closed stdout means (the command ends quietly).

use std::io::{self, Write};

use serde::Serialize;

use crate::failure::Failure;

/// A table being filled.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub(crate) fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (as many cells as columns).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// The table as text, each line ending in a newline; no trailing spaces.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  "));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Prints `table`.
pub(crate) fn print_table(table: &Table) -> Result<(), Failure> {
    print_text(&table.render())
}

/// Prints each value as one line of JSON.
pub(crate) fn print_json_lines<T: Serialize>(values: &[T]) -> Result<(), Failure> {
    let mut text = Vec::new();
    for v in values {
        crate::bytes_json::write_line(&mut text, v);
    }
    print_text(&String::from_utf8_lossy(&text))
}

/// Prints `text` and flushes. A closed stdout ends the command quietly; other write errors
/// fail it.
pub(crate) fn print_text(text: &str) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::runtime(format!("cannot write to stdout: {e}"))),
    }
}

/// An optional number as a table cell: `-` when unknown.
pub(crate) fn cell(n: Option<i64>) -> String {
    n.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_without_trailing_spaces() {
        let mut t = Table::new(&["TOPIC", "PARTITION", "LAG"]);
        t.row(vec!["orders".into(), "0".into(), "12".into()]);
        t.row(vec!["a".into(), "10".into(), cell(None)]);
        assert_eq!(
            t.render(),
            "TOPIC   PARTITION  LAG\norders  0          12\na       10         -\n"
        );
    }
}
