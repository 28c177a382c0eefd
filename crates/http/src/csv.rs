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
        let mut csv = Csv { out: String::new() };
        let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
        csv.row(&header);
        csv
    }

    pub fn row(&mut self, fields: &[String]) {
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_field(&mut self.out, field);
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
        csv.row(&["plain".into(), "with, comma".into()]);
        csv.row(&["say \"hi\"".into(), "=HYPERLINK(\"x\")".into()]);
        csv.row(&["-3".into(), "-x".into()]);
        assert_eq!(
            csv.finish(),
            "a,b\r\nplain,\"with, comma\"\r\n\"say \"\"hi\"\"\",\"'=HYPERLINK(\"\"x\"\")\"\r\n-3,\"'-x\"\r\n"
        );
    }
}
