//! The CLI's tables, drawn by `comfy-table` in one house style: no borders, two spaces between
//! columns, a dashed rule under the header, one line per row, and no trailing spaces (the output
//! is read in terminals and pasted into tickets and chats alike). No terminal width is asked for,
//! so the output is the same on a terminal, in a pipe and in a test.

use comfy_table::{CellAlignment, ColumnConstraint, LineStyle, Row, TableStyle, Width};

/// Nothing but the rule under the header; columns are set apart by their padding.
const STYLE: TableStyle = TableStyle::new().header_separator(LineStyle::none().fill('-'));

/// Space after every column but the last.
const GAP: u16 = 2;

/// A table under construction.
#[derive(Debug, Clone)]
pub struct Table {
    inner: comfy_table::Table,
    columns: usize,
}

impl Table {
    /// A table with these column headers, every column left-aligned and unbounded.
    pub fn new<I, S>(headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let headers: Vec<String> = headers.into_iter().map(Into::into).collect();
        let columns = headers.len();
        let mut inner = comfy_table::Table::new();
        inner.load_style(STYLE).set_header(headers);
        for (i, c) in inner.column_iter_mut().enumerate() {
            c.set_padding((0, if i + 1 < columns { GAP } else { 0 }));
        }
        Self { inner, columns }
    }

    /// Right-aligns column `col` (0-based), for numbers.
    pub fn right(mut self, col: usize) -> Self {
        if let Some(c) = self.inner.column_mut(col) {
            c.set_cell_alignment(CellAlignment::Right);
        }
        self
    }

    /// Cuts the cells of column `col` to `width` characters, ending them in `…`.
    pub fn max_width(mut self, col: usize, width: u16) -> Self {
        if let Some(c) = self.inner.column_mut(col) {
            let gap = c.padding_width();
            c.set_constraint(ColumnConstraint::UpperBoundary(Width::Fixed(width.max(1) + gap)));
        }
        self
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        // One line per row: a line break inside a cell reads as a space, and a bounded column
        // is cut rather than wrapped.
        let mut cells: Vec<String> =
            cells.into_iter().take(self.columns).map(|c| c.into().replace(['\r', '\n'], " ")).collect();
        cells.resize(self.columns, String::new());
        let mut row = Row::from(cells);
        row.max_height(1);
        self.inner.add_row(row);
        self
    }

    /// Renders the table; every line ends with `\n`.
    pub fn render(&self) -> String {
        let mut out = self.inner.trim_fmt();
        out.push('\n');
        out
    }
}

/// Renders `key  value` pairs with the keys padded to the same width (a two-column list
/// without header), one pair per line, indented by two spaces; a value of several lines
/// continues under its first line.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(STYLE);
    for (k, v) in pairs {
        t.add_row([*k, v.as_str()]);
    }
    if let Some(c) = t.column_mut(0) {
        c.set_padding((0, GAP));
    }
    if let Some(c) = t.column_mut(1) {
        c.set_padding((0, 0));
    }
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(format!("  {line}").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let mut t = Table::new(["ID", "UNITS", "NOTE"]).right(1);
        t.row(["SPRING-26", "12", "ok"]);
        t.row(["X", "1200", ""]);
        assert_eq!(
            t.render(),
            "ID         UNITS  NOTE\n\
             ----------------------\n\
             SPRING-26     12  ok\n\
             X           1200\n"
        );
    }

    #[test]
    fn long_cells_are_truncated_and_newlines_flattened() {
        let mut t = Table::new(["A", "B"]).max_width(1, 5);
        t.row(["x", "abcdefgh"]);
        t.row(["y", "a\nb"]);
        t.row(["z"]);
        let text = t.render();
        assert!(text.contains("x  abcd…\n"), "{text}");
        assert!(text.contains("y  a b\n"), "{text}");
        assert!(text.ends_with("z\n"), "{text}");
    }

    #[test]
    fn fields_align_their_values() {
        assert_eq!(
            fields(&[("stage", "APPROVAL".into()), ("risk", "".into())]),
            "  stage  APPROVAL\n  risk\n"
        );
        assert_eq!(
            fields(&[("reason", "invalid (2 problems):\n  - a\n  - b".into())]),
            "  reason  invalid (2 problems):\n            - a\n            - b\n"
        );
    }
}
