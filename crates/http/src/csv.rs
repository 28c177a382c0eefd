//! CSV output (RFC 4180) for exports opened in spreadsheets: fields quoted
//! when needed, and text that a spreadsheet would run as a formula (`=`, `+`,
//! `-`, `@`, tab or carriage return first) prefixed with `'` so a tracking note cannot become one.

/// A CSV document being written.
pub struct Csv {
    out: String,
}

impl Csv {
    /// Starts a document with its header line.
    pub fn new(header: &[&str]) -> Csv {
        Csv::with_capacity(header, 0)
    }

    /// Starts a document with its header line (none when `header` is
    /// empty: rows to join to another's), room made for `bytes`.
    pub fn with_capacity(header: &[&str], bytes: usize) -> Csv {
        let mut csv = Csv {
            out: String::with_capacity(bytes),
        };
        if !header.is_empty() {
            csv.row(header);
        }
        csv
    }

    /// Adds rows another `Csv` without a header wrote.
    pub fn rows_written(&mut self, rows: &str) {
        self.out.push_str(rows);
    }

    pub fn row<S: AsRef<str>>(&mut self, fields: impl IntoIterator<Item = S>) {
        for (i, field) in fields.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_field(&mut self.out, field.as_ref());
        }
        self.out.push_str("\r\n");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn push_field(out: &mut String, field: &str) {
    let formula = field.starts_with(['=', '+', '@', '\t', '\r'])
        || (field.starts_with('-') && field.parse::<f64>().is_err());
    let quote = formula || field.contains([',', '"', '\n', '\r']);
    if !quote {
        out.push_str(field);
        return;
    }
    out.push('"');
    if formula {
        out.push('\'');
    }
    out.push_str(&field.replace('"', "\"\""));
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        let mut csv = Csv::new(&["a", "b"]);
        csv.row(["plain", "with, comma"]);
        csv.row(["say \"hi\"", "=HYPERLINK(\"x\")"]);
        csv.row(["-3", "-x"]);
        assert_eq!(
            csv.finish(),
            "a,b\r\nplain,\"with, comma\"\r\n\"say \"\"hi\"\"\",\"'=HYPERLINK(\"\"x\"\")\"\r\n-3,\"'-x\"\r\n"
        );
    }
}
