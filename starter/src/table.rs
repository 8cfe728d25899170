//! A small plain-text table formatter for the human output: a header row, a rule, and rows of
//! cells padded to the widest cell of each column (two spaces between columns). Width counts
//! `char`s, which is exact for the ASCII and Latin text the CLI prints.

/// How a column's cells are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Padded on the right (text).
    Left,
    /// Padded on the left (numbers).
    Right,
}

/// A table under construction.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    align: Vec<Align>,
    max_width: Vec<Option<usize>>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers, every column left-aligned and unbounded.
    pub fn new<I, S>(headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let headers: Vec<String> = headers.into_iter().map(Into::into).collect();
        let n = headers.len();
        Self { headers, align: vec![Align::Left; n], max_width: vec![None; n], rows: Vec::new() }
    }

    /// Right-aligns column `col` (0-based).
    pub fn right(mut self, col: usize) -> Self {
        if let Some(a) = self.align.get_mut(col) {
            *a = Align::Right;
        }
        self
    }

    /// Truncates the cells of column `col` to `width` characters (ending in `…`).
    pub fn max_width(mut self, col: usize, width: usize) -> Self {
        if let Some(w) = self.max_width.get_mut(col) {
            *w = Some(width.max(1));
        }
        self
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).take(self.headers.len()).collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
        self
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Renders the table; every line ends with `\n` and carries no trailing spaces.
    pub fn render(&self) -> String {
        let cell = |col: usize, text: &str| -> String {
            // Tables are one line per row: newlines inside a cell become spaces.
            let flat: String = text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
            match self.max_width[col] {
                Some(w) if flat.chars().count() > w => {
                    let mut s: String = flat.chars().take(w.saturating_sub(1)).collect();
                    s.push('…');
                    s
                }
                _ => flat,
            }
        };
        let rows: Vec<Vec<String>> =
            self.rows.iter().map(|r| r.iter().enumerate().map(|(i, c)| cell(i, c)).collect()).collect();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let mut out = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                let pad = widths[i] - c.chars().count();
                match self.align[i] {
                    Align::Left => {
                        out.push_str(c);
                        out.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        out.extend(std::iter::repeat_n(' ', pad));
                        out.push_str(c);
                    }
                }
            }
            let mut out = out.trim_end().to_owned();
            out.push('\n');
            out
        };
        let mut out = line(&self.headers);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&rule));
        for r in &rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// Renders `key  value` pairs with the keys padded to the same width (a two-column list
/// without header), one pair per line.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let indent = " ".repeat(width + 4);
    let mut out = String::new();
    for (k, v) in pairs {
        // Multi-line values continue under the first line's value column.
        let mut lines = v.lines();
        let first = lines.next().unwrap_or("");
        out.push_str(format!("  {k:<width$}  {first}").trim_end());
        out.push('\n');
        for l in lines {
            out.push_str(format!("{indent}{l}").trim_end());
            out.push('\n');
        }
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
             ---------  -----  ----\n\
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
